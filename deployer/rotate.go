package deployer

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

var _ execer = (*client.Client)(nil)

// RotateOptions say how RotateRabbitMQPassword brings the broker to the
// new password.
type RotateOptions struct {
	// WipeData stops and removes the broker's container and deletes its
	// data volume instead of changing the password inside it: the broker
	// starts empty with the new password, and every queued message, user
	// and definition is lost.
	WipeData bool
	// Confirm asks the user whether to wipe, once what would be deleted
	// has been reported. Nil refuses.
	Confirm func() bool
}

// Step timeouts of a rotation.
const (
	rabbitmqctlTimeout = time.Minute
	wipeTimeout        = 2 * time.Minute
	brokerStopTimeout  = 30 // seconds: a clean shutdown, as `docker compose stop` allows
)

// RotateRabbitMQPassword changes the password of the RabbitMQ service (the
// one whose environment sets RABBITMQ_DEFAULT_PASS) to the value in the
// plan's project, then deploys the plan so that its clients use it.
//
// RABBITMQ_DEFAULT_PASS only takes effect when the broker initialises an
// empty data directory, so a plain deploy of a new value would lock the
// clients out. On each host in turn, under the deploy lock, this runs
// `rabbitmqctl change_password` inside the running broker (queues and
// messages are kept) and records the new password's hash in the live
// release, then deploys as Run does. With opts.WipeData it deletes the
// broker's data instead, once opts.Confirm agrees.
func RotateRabbitMQPassword(ctx context.Context, plan *Plan, opts RotateOptions, rep Reporter) error {
	p := plan.withDefaults()
	p.Trigger = "rotate"
	if err := p.validate(); err != nil {
		return err
	}
	brokers, err := rabbitMQServices(p.Project.Compose)
	if err != nil {
		return err
	}
	if opts.WipeData && opts.Confirm == nil {
		return errors.New("--wipe-data deletes the broker's data volume and every message queued in it: refusing without a confirmation (answer the prompt, or pass --yes)")
	}
	secrets := slices.Clone(p.Secrets)
	for _, b := range brokers {
		secrets = append(secrets, b.password)
	}
	rep = redact(rep, secrets)
	c := newChecker(p)
	return eachHost(ctx, p, rep, nil, func(h Host) error {
		r := &brokerRotation{brokers: brokers, opts: opts}
		err := deployTo(ctx, p, c, h, rep, &Result{}, r)
		if err != nil && r.applied && !opts.WipeData {
			return &RotatedButNotDeployed{Host: h.Name(), Brokers: brokers, Err: err}
		}
		return err
	})
}

// RotatedButNotDeployed is a rotation whose broker has the new password
// but whose deploy failed: the clients still running use the old one.
type RotatedButNotDeployed struct {
	Host    string
	Brokers []RabbitMQ
	Err     error
}

func (e *RotatedButNotDeployed) Error() string {
	var users []string
	for _, b := range e.Brokers {
		users = append(users, fmt.Sprintf("user %s of %s", b.User, b.Service))
	}
	return fmt.Sprintf("deploy after the rotation: %v\n"+
		"the broker on %s already has the new password (%s); clients still on the old one get ACCESS_REFUSED.\n"+
		"  fix what failed and run `deployer rotate rabbitmq-password` again: it finds the broker done and only deploys;\n"+
		"  or go back: put the old password in the env file and run `deployer rotate rabbitmq-password`",
		e.Err, e.Host, strings.Join(users, ", "))
}

func (e *RotatedButNotDeployed) Unwrap() error { return e.Err }

// RabbitMQ is a service of the project that runs RabbitMQ, found by its
// RABBITMQ_DEFAULT_PASS.
type RabbitMQ struct {
	Service  string
	User     string // RABBITMQ_DEFAULT_USER, default guest
	password string
	config   types.ServiceConfig
}

// rabbitMQServices finds the services whose password can be rotated.
func rabbitMQServices(p *types.Project) ([]RabbitMQ, error) {
	var out []RabbitMQ
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		pass, ok := s.Environment[rabbitMQPassKey]
		if !ok {
			continue
		}
		switch {
		case pass == nil || *pass == "":
			return nil, fmt.Errorf("service %s: %s is empty: set the new password (in the env file) first", name, rabbitMQPassKey)
		case strings.TrimSpace(*pass) != *pass:
			// rabbitmqctl reads the password as a trimmed line.
			return nil, fmt.Errorf("service %s: the new %s starts or ends with white space, which rabbitmqctl would drop: choose another password", name, rabbitMQPassKey)
		}
		user := "guest"
		if u := s.Environment["RABBITMQ_DEFAULT_USER"]; u != nil && *u != "" {
			user = *u
		}
		out = append(out, RabbitMQ{Service: name, User: user, password: *pass, config: s})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no service of %s sets %s: there is no RabbitMQ password to rotate", p.Name, rabbitMQPassKey)
	}
	return out, nil
}

// brokerRotation brings each broker on a host to its new password: it
// checks that it can and asks before the build (prepare), and changes it
// under the deploy's lock (apply).
type brokerRotation struct {
	brokers []RabbitMQ
	opts    RotateOptions
	applied bool // a broker was changed or wiped
}

func (r *brokerRotation) prepare(ctx context.Context, t *target) error { return r.each(ctx, t, false) }
func (r *brokerRotation) apply(ctx context.Context, t *target) error   { return r.each(ctx, t, true) }

func (r *brokerRotation) each(ctx context.Context, t *target, apply bool) error {
	live, err := t.current(ctx)
	if err != nil {
		return err
	}
	var rel *Release
	if live != "" {
		if rel, err = t.readRelease(ctx, live); err != nil {
			return err
		}
	}
	for _, b := range r.brokers {
		if r.opts.WipeData {
			err = t.wipeBroker(ctx, b, r.opts.Confirm, apply)
		} else {
			err = t.changePassword(ctx, b, rel, apply)
		}
		if err != nil {
			return fmt.Errorf("service %s: %w", b.Service, err)
		}
		r.applied = r.applied || apply
	}
	return nil
}

// changePassword runs `rabbitmqctl change_password` in the broker's
// running container and records the new password's hash in the live
// release, so that the deploy's drift check knows the broker has it.
// Without apply it only checks that it can (and in a dry run says what
// it would do).
func (t *target) changePassword(ctx context.Context, b RabbitMQ, rel *Release, apply bool) error {
	key := b.Service + "/" + rabbitMQPassKey
	if rel != nil {
		if old, ok := rel.Secrets[key]; ok && old.Matches(b.password) {
			if !apply {
				t.rep.Printf("%s: the live release %s already uses this password; nothing to change in the broker", b.Service, rel.ID)
			}
			return nil
		}
	}
	running, err := t.serviceContainers(ctx, b.Service, false)
	if err != nil {
		return err
	}
	if len(running) == 0 {
		if vol := t.dataVolume(ctx, b.config); vol != "" {
			return fmt.Errorf("no running container on %s, so the password cannot be changed inside the broker, and volume %s still holds the old one: start the broker again (`deployer rollback`, or `docker compose up -d %s` in the live release's directory) and rerun, or use --wipe-data", t.host.Name(), vol, b.Service)
		}
		return fmt.Errorf("no RabbitMQ of %s runs on %s and no data volume holds an old password: nothing to rotate; a plain `deployer deploy` starts the broker with the new password", t.plan.Name, t.host.Name())
	}
	if !apply {
		if t.plan.DryRun {
			t.rep.Printf("dry run: would change the password of user %s in %s (container %s), then deploy; nothing changed", b.User, b.Service, shortID(running[0].ID))
		}
		return nil
	}

	done := t.rep.Step(fmt.Sprintf("change the password of user %s in %s", b.User, b.Service))
	err = t.rabbitmqctl(ctx, running[0].ID, b.password, "change_password", b.User)
	done(err)
	if err != nil {
		return fmt.Errorf("%w; nothing changed", err)
	}
	if rel == nil {
		t.rep.Warnf("%s: no live release to record the new password in", b.Service)
		return nil
	}
	done = t.rep.Step("record the new password in release " + rel.ID)
	if rel.Secrets == nil {
		rel.Secrets = map[string]SecretHash{}
	}
	rel.Secrets[key] = HashSecret(b.password)
	err = t.writeRelease(ctx, rel)
	done(err)
	if err != nil {
		return fmt.Errorf("the broker has the new password, but %w: rerun the rotation to record it", err)
	}
	return nil
}

// wipeBroker is the operations notes' procedure: stop and remove the
// broker's containers and delete its data volume, so that the next up
// initialises an empty broker with the new password.
//
// Without apply it says what will be lost and asks (before the build, so
// that the question does not wait behind it); with apply, under the lock,
// it removes what is there then.
func (t *target) wipeBroker(ctx context.Context, b RabbitMQ, confirm func() bool, apply bool) error {
	ctx, cancel := context.WithTimeout(ctx, wipeTimeout)
	defer cancel()
	all, err := t.serviceContainers(ctx, b.Service, true)
	if err != nil {
		return err
	}
	vol := t.dataVolume(ctx, b.config)
	switch {
	case apply && len(all) == 0 && vol == "":
		return nil // gone since the question
	case len(all) == 0 && vol == "":
		return fmt.Errorf("no RabbitMQ of %s on %s and no data volume: nothing to wipe; a plain `deployer deploy` starts the broker with the new password", t.plan.Name, t.host.Name())
	case apply:
		return t.removeBroker(ctx, b, all, vol)
	}
	what := "its container (which holds its data: it has no named volume)"
	if vol != "" {
		what = "volume " + vol
	}
	t.rep.Warnf("--wipe-data stops and removes %s on %s and deletes %s: every queued message, user, vhost and definition in it is lost; the broker starts empty with the new password", b.Service, t.host.Name(), what)
	if t.plan.DryRun {
		t.rep.Printf("dry run: nothing changed")
		return nil
	}
	if !confirm() {
		return errors.New("wiping the broker's data was not confirmed; nothing changed")
	}
	return nil
}

// removeBroker stops and removes the broker's containers and deletes its
// data volume.
func (t *target) removeBroker(ctx context.Context, b RabbitMQ, all []container.Summary, vol string) error {
	done := t.rep.Step("remove " + b.Service)
	err := func() error {
		stop := brokerStopTimeout
		for _, c := range all {
			if err := t.docker.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &stop}); err != nil {
				return fmt.Errorf("stop container %s: %w", shortID(c.ID), err)
			}
			if err := t.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{RemoveVolumes: true}); err != nil {
				return fmt.Errorf("remove container %s: %w", shortID(c.ID), err)
			}
		}
		return nil
	}()
	done(err)
	if err != nil || vol == "" {
		return err
	}
	done = t.rep.Step("delete volume " + vol)
	err = t.docker.VolumeRemove(ctx, vol, false)
	done(err)
	if err != nil {
		return fmt.Errorf("delete volume %s: %w (the broker is stopped: a deploy starts it again)", vol, err)
	}
	return nil
}

// serviceContainers lists the containers compose made for a service of
// the project, one-off runs left out; all includes stopped ones.
func (t *target) serviceContainers(ctx context.Context, service string, all bool) ([]container.Summary, error) {
	list, err := t.docker.ContainerList(ctx, container.ListOptions{All: all, Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.compose.project="+t.plan.Name),
		filters.Arg("label", "com.docker.compose.service="+service),
		filters.Arg("label", "com.docker.compose.oneoff=False"),
	)})
	if err != nil {
		return nil, fmt.Errorf("list the containers of %s: %w", service, err)
	}
	return list, nil
}

// execer is the part of the Engine API that runs a command in a container.
type execer interface {
	ContainerExecCreate(ctx context.Context, container string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, config container.ExecAttachOptions) (dockertypes.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
}

// rabbitmqctl runs rabbitmqctl with args in a container, with secret as
// its standard input: rabbitmqctl (3.7.17 and later) reads a password it
// is not given as an argument from there, so it never appears in a
// process list, an exec's recorded command or a log. Its output is shown,
// without the secret, only when it fails.
func (t *target) rabbitmqctl(ctx context.Context, id, secret string, args ...string) error {
	out, code, err := execWithStdin(ctx, t.docker, id, secret+"\n", append([]string{"rabbitmqctl"}, args...))
	if err != nil {
		return fmt.Errorf("rabbitmqctl %s: %w", args[0], err)
	}
	if code == 0 {
		return nil
	}
	out = Redact(out, []string{secret})
	if len(out) > 0 {
		t.rep.Printf("rabbitmqctl said:")
		fmt.Fprintln(t.rep.Output(), strings.TrimRight(out, "\n"))
	}
	hint := ""
	switch code {
	case 64: // EX_USAGE
		hint = ": this rabbitmqctl may be older than 3.7.17, which cannot read a password from standard input; upgrade RabbitMQ first"
	case 67: // EX_NOUSER
		hint = ": the user does not exist in the broker; set RABBITMQ_DEFAULT_USER to the user the broker was initialised with"
	}
	return fmt.Errorf("rabbitmqctl %s %s exited with status %d%s", args[0], strings.Join(args[1:], " "), code, hint)
}

// execWithStdin runs cmd in a container, writes stdin to it, and returns
// its combined output (at most 64 KiB) and exit code.
func execWithStdin(ctx context.Context, eng execer, id, stdin string, cmd []string) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, rabbitmqctlTimeout)
	defer cancel()
	exec, err := eng.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdin: true, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", 0, fmt.Errorf("exec in %s: %w", shortID(id), err)
	}
	resp, err := eng.ContainerExecAttach(ctx, exec.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("exec in %s: %w", shortID(id), err)
	}
	defer resp.Close()
	// The hijacked connection does not watch ctx.
	defer context.AfterFunc(ctx, resp.Close)()
	if _, err := io.WriteString(resp.Conn, stdin); err != nil {
		return "", 0, fmt.Errorf("exec in %s: write its input: %w", shortID(id), err)
	}
	_ = resp.CloseWrite()
	var out bytes.Buffer
	w := &capped{buf: &out, left: 64 << 10}
	if _, err := stdcopy.StdCopy(w, w, resp.Reader); err != nil {
		return "", 0, fmt.Errorf("exec in %s: %w", shortID(id), cmp.Or(ctx.Err(), err))
	}
	// The stream ends as the process does; the Engine records its exit
	// code a moment later.
	for {
		ins, err := eng.ContainerExecInspect(ctx, exec.ID)
		if err != nil {
			return out.String(), 0, fmt.Errorf("exec in %s: %w", shortID(id), err)
		}
		if !ins.Running {
			return out.String(), ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return out.String(), 0, fmt.Errorf("exec in %s: still running after %s", shortID(id), rabbitmqctlTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// capped keeps the first bytes written to it and drops the rest.
type capped struct {
	buf  *bytes.Buffer
	left int
}

func (c *capped) Write(p []byte) (int, error) {
	n := min(len(p), c.left)
	c.buf.Write(p[:n])
	c.left -= n
	return len(p), nil
}

func shortID(id string) string { return id[:min(len(id), 12)] }
