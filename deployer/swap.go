package deployer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// Swap is how a service of a release was replaced start-first.
type Swap struct {
	Service string `json:"service"`
	Order   string `json:"order"` // start-first
	// Overlap is how long old and new containers both answered to the
	// service's name: from the first new one joining it to the last old
	// one stopped.
	Overlap time.Duration `json:"overlap_ns,omitempty"`
}

// swapPoll is how often a new container's health is read during a swap.
const swapPoll = 250 * time.Millisecond

// swapStartFirst replaces the release's start-first services that up would
// recreate, before up: their new containers start beside the old ones,
// off the service's DNS name (docs/architecture.md), and join it once
// healthy; then the old ones stop, with their grace period, and go. A new
// container that does not turn healthy is removed: it never had a
// request, and the old ones still serve. Up then finds these services as
// the release wants them and leaves them be.
func (t *target) swapStartFirst(ctx context.Context, id string, rel *Release) ([]Swap, error) {
	var swaps []Swap
	for _, s := range rel.Services {
		if s.Order != "start-first" {
			continue
		}
		old, err := t.serviceContainers(ctx, s.Name, false)
		if err != nil {
			return swaps, err
		}
		if len(old) == 0 {
			continue // nothing to keep serving: up starts it
		}
		cli := t.cli(id)
		if !composeCanSwap(cli.Version) {
			t.rep.Warnf("%s asks for start-first, which needs Compose 2.16 or later (this host has %s): up replaces it stop-first", s.Name, cli.Version)
			continue
		}
		want, err := cli.ConfigHash(ctx, s.Name)
		if err != nil {
			return swaps, err
		}
		stale := slices.DeleteFunc(slices.Clone(old), func(c container.Summary) bool { return c.Labels["com.docker.compose.config-hash"] == want })
		if len(stale) == 0 {
			continue // unchanged: up leaves it be
		}
		done := t.rep.Step("swap " + s.Name + " (start-first)")
		overlap, err := t.swap(ctx, id, s, len(old), stale)
		done(err)
		if overlap > 0 || err == nil {
			swaps = append(swaps, Swap{Service: s.Name, Order: "start-first", Overlap: overlap})
		}
		if err != nil {
			return swaps, err
		}
	}
	return swaps, nil
}

// swapBudget is how long swapping a release's start-first services back
// may take: for each batch, its health wait and a stop.
func (t *target) swapBudget(id string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), hostStepTimeout)
	defer cancel()
	rel, err := t.readRelease(ctx, id)
	if err != nil {
		return 0
	}
	var d time.Duration
	for _, s := range rel.Services {
		if s.Order != "start-first" {
			continue
		}
		batches := 1
		if s.Parallelism > 0 {
			batches = (max(s.Replicas, 1) + s.Parallelism - 1) / s.Parallelism
		}
		d += time.Duration(batches) * (t.plan.HealthTimeout + upTimeout + 2*hostStepTimeout)
	}
	return d
}

// composeCanSwap: create --scale came with Compose 2.16.
func composeCanSwap(version string) bool {
	major, rest, _ := strings.Cut(version, ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	return err1 == nil && err2 == nil && (ma > 2 || ma == 2 && mi >= 16)
}

// swap replaces the stale of a service's running containers, a batch of
// parallelism (or all) at a time.
func (t *target) swap(ctx context.Context, id string, s ServiceCheck, running int, stale []container.Summary) (time.Duration, error) {
	// What a cancelled swap left (created or stopped containers) would be
	// started by compose, or kept by up in place of a serving one.
	if err := t.removeLeftovers(ctx, s.Name); err != nil {
		return 0, err
	}
	batch := s.Parallelism
	if batch <= 0 || batch > len(stale) {
		batch = len(stale)
	}
	var first time.Time
	overlap := func() time.Duration {
		if first.IsZero() {
			return 0
		}
		return time.Since(first)
	}
	for len(stale) > 0 {
		n := min(batch, len(stale))
		before, err := t.serviceContainerIDs(ctx, s.Name)
		if err != nil {
			return overlap(), err
		}
		cctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
		err = t.cli(id).Create(cctx, s.Name, running+n)
		cancel()
		if err != nil {
			return overlap(), err
		}
		after, err := t.serviceContainerIDs(ctx, s.Name)
		if err != nil {
			return overlap(), err
		}
		fresh := slices.DeleteFunc(after, func(c string) bool { return slices.Contains(before, c) })
		if len(fresh) == 0 {
			return overlap(), fmt.Errorf("swap %s: compose created no new container", s.Name)
		}
		if err := t.startHidden(ctx, id, s, fresh); err != nil {
			t.removeContainers(fresh)
			return overlap(), fmt.Errorf("%w; the old %s containers still serve", err, s.Name)
		}
		if first.IsZero() {
			first = time.Now()
		}
		// Once the new ones answer to the name, the old ones leave even
		// if the deploy is cancelled now: both serve meanwhile.
		for _, c := range stale[:n] {
			t.rep.Printf("stopping the old %s %s", s.Name, shortID(c.ID))
			if err := t.retire(ctx, c.ID); err != nil {
				return overlap(), fmt.Errorf("retire the old %s: %w", s.Name, err)
			}
		}
		stale = stale[n:]
	}
	return overlap(), nil
}

// retire stops an old container, with its own stop signal and grace
// period, and removes it with its anonymous volumes.
func (t *target) retire(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostStepTimeout)
	defer cancel()
	if err := t.docker.ContainerStop(ctx, id, container.StopOptions{}); err != nil {
		return err
	}
	return t.docker.ContainerRemove(ctx, id, container.RemoveOptions{RemoveVolumes: true})
}

// removeLeftovers removes a service's containers that do not run.
func (t *target) removeLeftovers(ctx context.Context, service string) error {
	all, err := t.serviceContainers(ctx, service, true)
	if err != nil {
		return err
	}
	for _, c := range all {
		if c.State == "running" {
			continue
		}
		t.rep.Printf("removing %s %s, left %s by an interrupted deploy", service, shortID(c.ID), c.State)
		if err := t.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			return fmt.Errorf("remove a leftover %s container: %w", service, err)
		}
	}
	return nil
}

// startHidden starts the new containers without the service's aliases on
// their networks, waits for them to be healthy, then gives the aliases
// back: from then on the service's name answers with them too. Giving
// them back reconnects each container to its networks, which cuts the
// connections it opened on them once, before it takes any request.
func (t *target) startHidden(ctx context.Context, id string, s ServiceCheck, ids []string) error {
	aliases := map[string]map[string]*network.EndpointSettings{} // container → network → endpoint
	for _, c := range ids {
		ins, err := t.docker.ContainerInspect(ctx, c)
		if err != nil {
			return err
		}
		aliases[c] = map[string]*network.EndpointSettings{}
		if ins.NetworkSettings == nil {
			continue
		}
		for net, ep := range ins.NetworkSettings.Networks {
			if ep == nil || !userNetwork(ins, net) {
				continue
			}
			aliases[c][net] = ep
			own := slices.DeleteFunc(slices.Clone(ep.Aliases), func(a string) bool { return a != strings.TrimPrefix(ins.Name, "/") })
			if err := t.reconnect(ctx, net, c, ep, own); err != nil {
				return err
			}
		}
	}
	// compose start starts what the service depends on that the release
	// added (created with it), copies its configs and secrets in, and
	// waits for the dependencies' conditions.
	sctx, cancel := context.WithTimeout(ctx, upTimeout)
	err := t.cli(id).Start(sctx, s.Name)
	cancel()
	if err != nil {
		return fmt.Errorf("start the new %s: %w", s.Name, err)
	}
	start := time.Now()
	for _, c := range ids {
		if err := t.waitHealthy(ctx, s, c, start); err != nil {
			return err
		}
	}
	for _, c := range ids {
		for net, ep := range aliases[c] {
			if err := t.reconnect(ctx, net, c, ep, ep.Aliases); err != nil {
				return err
			}
		}
	}
	t.rep.Printf("%s: %d new container(s) healthy and in the service's name, %s after they started", s.Name, len(ids), time.Since(start).Round(time.Millisecond))
	return nil
}

// userNetwork: a network a container can be disconnected from (not the
// host's, none, or another container's).
func userNetwork(c container.InspectResponse, net string) bool {
	mode := ""
	if c.HostConfig != nil {
		mode = string(c.HostConfig.NetworkMode)
	}
	return net != "host" && net != "none" && !strings.HasPrefix(mode, "container:") && mode != "host" && mode != "none"
}

// reconnect connects a container to a network again, with these aliases
// and its other endpoint settings. It is not cut short by a cancelled
// deploy: a container left off its network would serve nobody.
func (t *target) reconnect(ctx context.Context, net, id string, ep *network.EndpointSettings, aliases []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostStepTimeout)
	defer cancel()
	if err := t.docker.NetworkDisconnect(ctx, net, id, true); err != nil {
		return fmt.Errorf("network %s: %w", net, err)
	}
	settings := ep.Copy()
	settings.Aliases = slices.Clone(aliases)
	// What the Engine fills in when it connects.
	settings.NetworkID, settings.EndpointID, settings.Gateway, settings.IPAddress, settings.IPPrefixLen = "", "", "", "", 0
	settings.IPv6Gateway, settings.GlobalIPv6Address, settings.GlobalIPv6PrefixLen, settings.DNSNames = "", "", 0, nil
	if err := t.docker.NetworkConnect(ctx, net, id, settings); err != nil {
		return fmt.Errorf("network %s: %w", net, err)
	}
	return nil
}

// waitHealthy waits for a new container's healthcheck to pass (or, without
// one, for it to stay up for the settle time), up to the health timeout.
// A container that restarts has failed.
func (t *target) waitHealthy(ctx context.Context, s ServiceCheck, id string, start time.Time) error {
	deadline := start.Add(t.plan.HealthTimeout)
	for {
		c, err := t.docker.ContainerInspect(ctx, id)
		if err != nil {
			return err
		}
		st := c.State
		switch {
		case st == nil:
		case st.Status == "exited" || st.Status == "dead":
			return fmt.Errorf("the new %s exited (code %d) before it was healthy", s.Name, st.ExitCode)
		case st.Restarting || c.RestartCount > 0:
			return fmt.Errorf("the new %s restarted (exit code %d) before it was healthy", s.Name, st.ExitCode)
		case st.Health != nil && st.Health.Status == container.Healthy:
			return nil
		case st.Health != nil && st.Health.Status == container.Unhealthy:
			return fmt.Errorf("the new %s is unhealthy: %s", s.Name, lastProbe(st.Health))
		case !s.Healthcheck && st.Running && settled(st.StartedAt, t.plan.Settle):
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the new %s was not healthy within %s", s.Name, t.plan.HealthTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(swapPoll):
		}
	}
}

// settled: a container started at startedAt (RFC 3339) has run for d.
func settled(startedAt string, d time.Duration) bool {
	at, err := time.Parse(time.RFC3339Nano, startedAt)
	return err == nil && time.Since(at) >= d
}

func lastProbe(h *container.Health) string {
	if len(h.Log) == 0 {
		return "no check ran"
	}
	return strings.TrimSpace(h.Log[len(h.Log)-1].Output)
}

// removeContainers removes new containers that will not serve.
func (t *target) removeContainers(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), hostStepTimeout)
	defer cancel()
	for _, id := range ids {
		if err := t.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.rep.Warnf("remove the new container %s: %v", shortID(id), err)
		}
	}
}

// serviceContainerIDs are the IDs of all of a service's containers,
// created and stopped ones included.
func (t *target) serviceContainerIDs(ctx context.Context, service string) ([]string, error) {
	cs, err := t.serviceContainers(ctx, service, true)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids, nil
}
