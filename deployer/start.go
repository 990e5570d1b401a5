package deployer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/semalink/deploy-action/deployer/health"
)

// upAndWait starts a release and waits until every long-running service is
// healthy (or, without a healthcheck, stays up). The wait runs alongside
// up, so that a service is seen healthy on its own event even while up
// still holds a dependent back for it (condition: service_healthy).
func (t *target) upAndWait(ctx context.Context, id string) error {
	rel, err := t.readRelease(ctx, id)
	if err != nil {
		return err
	}
	var services []health.Service
	for _, s := range rel.Services {
		services = append(services, health.Service{Name: s.Name, Healthcheck: s.Healthcheck, Replicas: s.Replicas})
	}
	t.swaps = nil
	if t.swaps, err = t.swapStartFirst(ctx, id, rel); err != nil {
		return err
	}
	w, err := health.Start(ctx, t.docker, t.plan.Name)
	if err != nil {
		return err
	}
	t.healthy, t.logs = map[string]time.Duration{}, nil
	defer w.Close()
	upStart := time.Now()
	upCtx, cancelUp := context.WithTimeout(ctx, upTimeout)
	defer cancelUp()
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	upDone := make(chan struct{})
	var upErr error
	go func() {
		defer close(upDone)
		if upErr = t.cli(id).Up(upCtx); upErr != nil {
			cancelWait()
		}
	}()
	_, err = w.Wait(waitCtx, services, health.Options{
		Timeout: t.plan.HealthTimeout,
		Settle:  t.plan.Settle,
		OnReady: func(r health.Result) {
			after := time.Since(upStart)
			t.healthy[r.Service] = after
			t.rep.Printf("%s healthy, %s after up began", r.Service, after.Round(time.Millisecond))
		},
		UpDone: upDone,
	})
	if err != nil {
		// A rollback may come next: up is given time to end on its own
		// (it sees a failed dependency within a second) rather than be cut
		// off halfway through replacing a container, but not the minutes
		// a crash-looping dependency, never "unhealthy" to it, would hold it.
		const upGrace = 10 * time.Second
		select {
		case <-upDone:
		case <-time.After(upGrace):
			cancelUp()
		}
	}
	<-upDone
	var unhealthy *health.UnhealthyError
	if upErr != nil && !errors.As(err, &unhealthy) {
		return upErr // the wait was cancelled, or found nothing more precise
	}
	if errors.As(err, &unhealthy) && len(unhealthy.Logs) > 0 {
		t.logs = unhealthy.Logs
		t.rep.Printf("last lines of %s:", unhealthy.Service)
		out := t.rep.Output()
		for _, l := range unhealthy.Logs {
			fmt.Fprintln(out, l)
		}
	}
	return err
}

func updateConfig(s types.ServiceConfig) *types.UpdateConfig {
	if s.Deploy == nil {
		return nil
	}
	return s.Deploy.UpdateConfig
}

// healthServices lists what to wait for: every service but one-off jobs,
// with whether it (or its image) has a healthcheck.
func (t *target) healthServices(ctx context.Context, images map[string]string) []ServiceCheck {
	var out []ServiceCheck
	p := t.plan.Project.Compose
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if name == t.plan.Migrate || s.Restart == types.RestartPolicyNo || s.GetScale() == 0 {
			continue
		}
		hc := s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 && s.HealthCheck.Test[0] != "NONE"
		if s.HealthCheck == nil {
			if img, err := t.docker.ImageInspect(ctx, images[name]); err == nil && img.Config != nil && img.Config.Healthcheck != nil {
				hc = len(img.Config.Healthcheck.Test) > 0 && img.Config.Healthcheck.Test[0] != "NONE"
			}
		}
		sc := ServiceCheck{Name: name, Healthcheck: hc, Replicas: s.GetScale()}
		if u := updateConfig(s); u != nil {
			sc.Order = u.Order
			if u.Parallelism != nil {
				sc.Parallelism = int(*u.Parallelism)
			}
		}
		out = append(out, sc)
	}
	return out
}
