package deployer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// Swap is how a service of a release was replaced.
type Swap struct {
	Service string `json:"service"`
	Order   string `json:"order"` // start-first, or stop-first (compose up's own)
	// Overlap is how long old and new containers ran side by side: from
	// the first new one starting to the last old one stopped.
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
		want, err := t.cli(id).ConfigHash(ctx, s.Name)
		if err != nil {
			return swaps, err
		}
		if !slices.ContainsFunc(old, func(c container.Summary) bool { return c.Labels["com.docker.compose.config-hash"] != want }) {
			continue // unchanged: up leaves it be
		}
		done := t.rep.Step("swap " + s.Name + " (start-first)")
		overlap, err := t.swap(ctx, id, s, old)
		done(err)
		if err != nil {
			return swaps, err
		}
		swaps = append(swaps, Swap{Service: s.Name, Order: "start-first", Overlap: overlap})
	}
	return swaps, nil
}

// swap replaces old, a batch of parallelism (or all) at a time.
func (t *target) swap(ctx context.Context, id string, s ServiceCheck, old []container.Summary) (time.Duration, error) {
	batch := s.Parallelism
	if batch <= 0 || batch > len(old) {
		batch = len(old)
	}
	var first time.Time
	for len(old) > 0 {
		n := min(batch, len(old))
		before, err := t.serviceContainerIDs(ctx, s.Name)
		if err != nil {
			return 0, err
		}
		if err := t.cli(id).Create(ctx, s.Name, len(before)+n); err != nil {
			return 0, err
		}
		after, err := t.serviceContainerIDs(ctx, s.Name)
		if err != nil {
			return 0, err
		}
		var fresh []string
		for _, c := range after {
			if !slices.Contains(before, c) {
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 {
			return 0, fmt.Errorf("swap %s: compose created no new container", s.Name)
		}
		if first.IsZero() {
			first = time.Now()
		}
		if err := t.startHidden(ctx, s, fresh); err != nil {
			t.removeContainers(fresh)
			return 0, fmt.Errorf("%w; the old %s containers still serve", err, s.Name)
		}
		for _, c := range old[:n] {
			t.rep.Printf("stopping the old %s (%s)", strings.TrimPrefix(c.Names[0], "/"), c.ID[:12])
			if err := t.docker.ContainerStop(ctx, c.ID, container.StopOptions{}); err != nil {
				return 0, fmt.Errorf("stop the old %s: %w", s.Name, err)
			}
			if err := t.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil {
				return 0, fmt.Errorf("remove the old %s: %w", s.Name, err)
			}
		}
		old = old[n:]
	}
	return time.Since(first), nil
}

// startHidden starts the new containers without the service's aliases on
// their networks, waits for them to be healthy, then gives the aliases
// back: from then on the service's name answers with them too.
func (t *target) startHidden(ctx context.Context, s ServiceCheck, ids []string) error {
	aliases := map[string]map[string][]string{} // container → network → aliases
	for _, id := range ids {
		c, err := t.docker.ContainerInspect(ctx, id)
		if err != nil {
			return err
		}
		aliases[id] = map[string][]string{}
		for net, ep := range c.NetworkSettings.Networks {
			aliases[id][net] = ep.Aliases
			own := slices.DeleteFunc(slices.Clone(ep.Aliases), func(a string) bool { return a != strings.TrimPrefix(c.Name, "/") })
			if err := t.reconnect(ctx, net, id, ep, own); err != nil {
				return err
			}
		}
		if err := t.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return fmt.Errorf("start the new %s: %w", s.Name, err)
		}
	}
	start := time.Now()
	for _, id := range ids {
		if err := t.waitHealthy(ctx, s, id, start); err != nil {
			return err
		}
	}
	for _, id := range ids {
		c, err := t.docker.ContainerInspect(ctx, id)
		if err != nil {
			return err
		}
		for net, ep := range c.NetworkSettings.Networks {
			if err := t.reconnect(ctx, net, id, ep, aliases[id][net]); err != nil {
				return err
			}
		}
	}
	t.rep.Printf("%s: %d new container(s) healthy and in the service's name, %s after they started", s.Name, len(ids), time.Since(start).Round(time.Millisecond))
	return nil
}

// reconnect connects a container to a network again, with these aliases.
func (t *target) reconnect(ctx context.Context, net, id string, ep *network.EndpointSettings, aliases []string) error {
	if err := t.docker.NetworkDisconnect(ctx, net, id, true); err != nil {
		return fmt.Errorf("network %s: %w", net, err)
	}
	settings := &network.EndpointSettings{Aliases: aliases, IPAMConfig: ep.IPAMConfig, Links: ep.Links, DriverOpts: ep.DriverOpts}
	if err := t.docker.NetworkConnect(ctx, net, id, settings); err != nil {
		return fmt.Errorf("network %s: %w", net, err)
	}
	return nil
}

// waitHealthy waits for a new container's healthcheck to pass (or, without
// one, for it to stay up for the settle time), up to the health timeout.
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
		case st.Health != nil && st.Health.Status == container.Healthy:
			return nil
		case st.Health != nil && st.Health.Status == container.Unhealthy:
			return fmt.Errorf("the new %s is unhealthy: %s", s.Name, lastProbe(st.Health))
		case !s.Healthcheck && st.Running && time.Since(start) >= t.plan.Settle:
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
		if err := t.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil {
			t.rep.Warnf("remove the new container %s: %v", id[:min(12, len(id))], err)
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
