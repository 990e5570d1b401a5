package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/system"
	"github.com/semalink/deploy-action/deployer/compose"
	"github.com/semalink/deploy-action/deployer/remote"
)

// inspect connects the Engine API and compose on the host and reads the
// host's facts. Close the target when done.
func inspect(ctx context.Context, p *Plan, h Host, rep Reporter) (*target, error) {
	done := rep.Step("inspect " + h.Name())
	t, err := func() (*target, error) {
		ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
		defer cancel()
		docker, err := h.Engine(ctx)
		if err != nil {
			return nil, err
		}
		info, err := docker.Info(ctx)
		if err != nil {
			docker.Close()
			return nil, fmt.Errorf("docker info: %w", err)
		}
		command, version, warning, err := compose.Detect(ctx, h)
		if err != nil {
			docker.Close()
			return nil, err
		}
		if warning != "" {
			rep.Warnf("%s", warning)
		}
		rep.Printf("Docker %s, Compose %s, %s memory, storage %s", info.ServerVersion, version, FormatBytes(info.MemTotal), info.Driver)
		return &target{plan: p, host: h, docker: docker, rep: rep, memory: info.MemTotal, platform: platform(info),
			compose: compose.CLI{Runner: h, Command: command, Version: version, Project: p.Name}}, nil
	}()
	done(err)
	return t, err
}

// platform is the os/arch images must be built for to run on an Engine
// (linux/amd64, linux/arm64, linux/arm/v7), "" when it does not say.
func platform(info system.Info) string {
	arch, ok := map[string]string{"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
		"armv7l": "arm/v7", "armhf": "arm/v7", "s390x": "s390x", "ppc64le": "ppc64le", "riscv64": "riscv64"}[info.Architecture]
	if !ok || info.OSType == "" {
		return ""
	}
	return info.OSType + "/" + arch
}

// close ends the target's Engine connections.
func (t *target) close() {
	t.docker.Close()
	if t.local != nil {
		t.local.Close()
	}
}

// session inspects the host and takes the project's deploy lock; end
// releases the lock and the Engine connection. The context it returns is
// cancelled, with errLockLost as its cause, if the lock is lost before
// end: whatever the session does from then on stops.
func session(ctx context.Context, p *Plan, h Host, rep Reporter) (_ context.Context, t *target, end func(), err error) {
	if t, err = inspect(ctx, p, h, rep); err != nil {
		return ctx, nil, nil, err
	}
	ctx, unlock, err := t.lock(ctx)
	if err != nil {
		t.close()
		return ctx, nil, nil, err
	}
	return ctx, t, func() { unlock(); t.close() }, nil
}

// errLockLost is why a session's context ends when its lock is lost.
var errLockLost = errors.New("deploy lock lost: its process on the host ended before the deploy did (it was killed, or its connection dropped), " +
	"so another deploy may hold the lock now; stopped without changing more. See what runs with `deployer releases`")

// lockLost is errLockLost when ctx ended because its session's lock was lost.
func lockLost(ctx context.Context) error {
	if err := context.Cause(ctx); errors.Is(err, errLockLost) {
		return err
	}
	return nil
}

// lock takes the project's deploy lock on the host, waiting for another
// deploy up to the plan's lock timeout, and watches it: the context it
// returns ends if the lock is lost.
func (t *target) lock(ctx context.Context) (context.Context, func(), error) {
	p, rep := t.plan, t.rep
	done := rep.Step("lock")
	holder, _ := json.Marshal(map[string]any{"host": hostname(), "trigger": p.Trigger, "commit": p.Commit, "since": p.Now().UTC()})
	lock, err := t.host.Lock(ctx, path.Join(p.projectDir(), "deploy.lock"), holder, p.LockTimeout, func(by []byte) {
		rep.Printf("another deploy holds the lock: %s; waiting up to %s", describeHolder(by), p.LockTimeout)
	})
	done(err)
	if err != nil {
		return ctx, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	unlocking := make(chan struct{})
	go func() {
		select {
		case <-lock.Lost():
			cancel(errLockLost)
		case <-unlocking:
		}
	}()
	if err := t.markInterrupted(ctx); err != nil {
		rep.Warnf("%v", err)
	}
	// A migration that an interrupted deploy ran may still run: the lock
	// is ours, so it is nobody's.
	if n, err := t.removeOneOffs(ctx); err != nil {
		rep.Warnf("%v", err)
	} else if n > 0 {
		rep.Printf("removed %d migration container(s) left by an interrupted deploy", n)
	}
	if t.plan.Project != nil {
		t.removeStaleBuildTags(ctx)
	}
	return ctx, func() {
		close(unlocking)
		cancel(nil)
		if err := lock.Unlock(); err != nil && lockLost(ctx) == nil {
			rep.Warnf("release the deploy lock: %v", err)
		}
	}, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func describeHolder(b []byte) string {
	if bytes.Equal(b, remote.EndingHolder) {
		return string(b)
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || len(m) == 0 {
		return "unknown holder"
	}
	var parts []string
	for _, k := range []string{"release", "trigger", "commit", "host", "since"} {
		if v, ok := m[k]; ok && fmt.Sprint(v) != "" {
			parts = append(parts, fmt.Sprintf("%s %v", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// removeOneOffs removes the project's one-off containers that a deploy
// ran (compose.RunLabel), running or not, and says how many there were.
// Those someone ran by hand are left alone.
func (t *target) removeOneOffs(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	list, err := t.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+t.plan.Name),
		filters.Arg("label", compose.RunLabel),
	)})
	if err != nil {
		return 0, fmt.Errorf("list the deploy's one-off containers: %w", err)
	}
	for _, c := range list {
		if err := t.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return 0, fmt.Errorf("remove the one-off container %s of %s: %w", c.ID[:12], c.Labels["com.docker.compose.service"], err)
		}
	}
	return len(list), nil
}

// markInterrupted records releases whose deploy never finished: the lock
// is ours, so nobody is still working on them.
func (t *target) markInterrupted(ctx context.Context) error {
	ids, err := t.releaseIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		rel, err := t.readRelease(ctx, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && rel.Status == StatusPending {
			t.finish(ctx, rel, StatusInterrupted, errors.New("the deploy stopped before it finished"))
		}
	}
	return nil
}
