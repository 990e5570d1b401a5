package deployer_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/semalink/deploy-action/deployer/remote/remotetest"
)

// rabbitStack is a broker whose users live on a named volume, and the demo
// api talking AMQP to it with the password each deploy sets.
const rabbitStack = `
x-logging: &logging
  driver: json-file
  options:
    max-size: 1m

services:
  rabbitmq:
    image: deployer-demo/rabbitmq:3
    hostname: rabbit            # the node's name, and so its data directory, must not change
    restart: unless-stopped
    environment:
      RABBITMQ_NODENAME: rabbit@rabbit
      RABBITMQ_DEFAULT_USER: app
      RABBITMQ_DEFAULT_PASS: ${RABBITMQ_PASS:?}
    volumes:
      - rabbitmq_data:/var/lib/rabbitmq
    healthcheck:
      test: ["CMD", "rabbitmq-diagnostics", "-q", "check_running"]
      interval: 1s
      timeout: 10s
      retries: 60
    deploy:
      resources:
        limits:
          memory: 512m
    logging: *logging

  api:
    build: ./api
    restart: unless-stopped
    ports:
      - "127.0.0.1::3000"
    environment:
      RABBITMQ_URL: amqp://app:${RABBITMQ_PASS:?}@rabbitmq:5672
      FAIL_HEALTH: ${FAIL_HEALTH:-0}
    depends_on:
      rabbitmq:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "/api", "probe", "http://127.0.0.1:3000/health"]
      interval: 500ms
      timeout: 2s
      retries: 3
    deploy:
      resources:
        limits:
          memory: 64m
    logging: *logging

volumes:
  rabbitmq_data:
`

const rabbitMQImage = "deployer-demo/rabbitmq:3"

// TestRotateRabbitMQPassword follows the operations notes' story on one
// stack, over SSH: a deploy, a message queued, a rotated password that a
// plain deploy must refuse, then the rotation, which keeps the message.
func TestRotateRabbitMQPassword(t *testing.T) {
	host := sshConfig(t)
	hosts := []remote.Config{host}
	s := newRabbitStack(t)

	if !t.Run("nothing deployed", func(t *testing.T) {
		_, err := s.rotate(t.Context(), s.rabbitPlan(hosts, "first"), deployer.RotateOptions{})
		if err == nil || !strings.Contains(err.Error(), "a plain `deployer deploy` starts the broker with the new password") {
			t.Fatalf("rotate with nothing deployed: err = %v", err)
		}
	}) {
		return
	}

	start := time.Now()
	if _, err := s.deploy(t.Context(), s.rabbitPlan(hosts, "first")); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	t.Logf("first deploy, broker initialised: %s", time.Since(start).Round(time.Millisecond))
	if code, body := s.api(http.MethodPost, "/publish?queue=orders", "order 1"); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	s.wantQueue("orders", 1)

	if !t.Run("wipe-data needs a confirmation", func(t *testing.T) {
		_, err := s.rotate(t.Context(), s.rabbitPlan(hosts, "second"), deployer.RotateOptions{WipeData: true})
		if err == nil || !strings.Contains(err.Error(), "refusing without a confirmation") {
			t.Errorf("wipe-data without Confirm: err = %v", err)
		}
		asked := 0
		out, err := s.rotate(t.Context(), s.rabbitPlan(hosts, "second"), deployer.RotateOptions{WipeData: true, Confirm: func() bool { asked++; return false }})
		if err == nil || !strings.Contains(err.Error(), "not confirmed; nothing changed") || asked != 1 {
			t.Errorf("wipe-data, answered no: err = %v, asked %d times", err, asked)
		}
		if !strings.Contains(out, "every queued message") {
			t.Errorf("the question was asked without saying what would be lost")
		}
		s.wantQueue("orders", 1)
	}) {
		return
	}

	if !t.Run("a plain deploy refuses the new password", func(t *testing.T) {
		_, err := s.deploy(t.Context(), s.rabbitPlan(hosts, "second"))
		var cf *deployer.CheckFailed
		if !errors.As(err, &cf) || !slices.ContainsFunc(cf.Findings, func(f checks.Finding) bool { return f.Rule == "rabbitmq-password-drift" }) {
			t.Fatalf("deploy with a new RABBITMQ_DEFAULT_PASS: err = %v, want rabbitmq-password-drift", err)
		}
		if got := s.statuses(); got != "live" {
			t.Errorf("releases: %s, want the first one alone, live", got)
		}
		s.wantHealthy()
		s.wantQueue("orders", 1)
		if !s.brokerAccepts("app", "first") {
			t.Errorf("the broker no longer takes the first password")
		}
	}) {
		return
	}

	if !t.Run("dry run", func(t *testing.T) {
		dry := s.rabbitPlan(hosts, "second")
		dry.DryRun = true
		out, err := s.rotate(t.Context(), dry, deployer.RotateOptions{})
		if err != nil || !strings.Contains(out, "dry run: would change the password of user app in rabbitmq") {
			t.Fatalf("rotate --dry-run: err = %v", err)
		}
		if !s.brokerAccepts("app", "first") || s.statuses() != "live" {
			t.Errorf("the dry run changed something")
		}
	}) {
		return
	}

	if !t.Run("rotate", func(t *testing.T) {
		start := time.Now()
		out, err := s.rotate(t.Context(), s.rabbitPlan(hosts, "second"), deployer.RotateOptions{})
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		t.Logf("rotation and deploy: %s", time.Since(start).Round(time.Millisecond))
		if strings.Contains(out, "second") {
			t.Errorf("the new password reached the output:\n%s", out)
		}
		s.wantHealthy()
		s.wantQueue("orders", 1)
		if !s.brokerAccepts("app", "second") || s.brokerAccepts("app", "first") {
			t.Errorf("the broker does not take the second password alone")
		}
		if got := s.statuses(); got != "superseded live" {
			t.Errorf("releases: %s, want superseded live", got)
		}
		for _, r := range s.releases() {
			if h, ok := r.Secrets["rabbitmq/RABBITMQ_DEFAULT_PASS"]; !ok || !h.Matches("second") {
				t.Errorf("release %s (%s): the password's hash does not match the new one", r.ID, r.Status)
			}
		}
		if live := s.releases()[1]; live.Trigger != "rotate" {
			t.Errorf("the live release's trigger is %q, want rotate", live.Trigger)
		}
	}) {
		return
	}

	if !t.Run("a deploy that fails after the broker changed", func(t *testing.T) {
		// Left running rather than rolled back, which saves a broker
		// restart: rolling back cannot help anyway, as the previous
		// release's api has the old password.
		failing := s.rabbitPlan(hosts, "third", "FAIL_HEALTH=1")
		failing.NoRollback = true
		_, err := s.rotate(t.Context(), failing, deployer.RotateOptions{})
		var half *deployer.RotatedButNotDeployed
		if !errors.As(err, &half) || !strings.Contains(err.Error(), "already has the new password") || !strings.Contains(err.Error(), "run `deployer rotate rabbitmq-password` again") {
			t.Fatalf("rotate with a failing deploy: err = %v, want one saying the broker has the new password and what to do", err)
		}
		if !s.brokerAccepts("app", "third") {
			t.Errorf("the broker does not have the third password")
		}
		// As the error says: fix the cause and rotate again.
		out, err := s.rotate(t.Context(), s.rabbitPlan(hosts, "third"), deployer.RotateOptions{})
		if err != nil {
			t.Fatalf("rotate again: %v", err)
		}
		if !strings.Contains(out, "already uses this password; nothing to change in the broker") {
			t.Errorf("the second rotation did not say the broker was done")
		}
		s.wantHealthy()
		s.wantQueue("orders", 1)
	}) {
		return
	}

	t.Run("wipe-data", func(t *testing.T) {
		start := time.Now()
		_, err := s.rotate(t.Context(), s.rabbitPlan(hosts, "fourth"), deployer.RotateOptions{WipeData: true, Confirm: func() bool { return true }})
		if err != nil {
			t.Fatalf("rotate --wipe-data: %v", err)
		}
		t.Logf("wipe and deploy: %s", time.Since(start).Round(time.Millisecond))
		s.wantHealthy()
		if code, body := s.api(http.MethodGet, "/queue?name=orders", ""); code != http.StatusNotFound {
			t.Errorf("the queue survived the wipe: %d %s", code, body)
		}
		if !s.brokerAccepts("app", "fourth") {
			t.Errorf("the fresh broker does not take the fourth password")
		}
	})
}

// TestRotateRefusesBeforeConnecting covers what is wrong with the project
// itself: nothing is dialled.
func TestRotateRefusesBeforeConnecting(t *testing.T) {
	tests := []struct {
		name, compose, want string
	}{
		{"no broker", "services:\n  api:\n    image: busybox\n", "no service of rotate sets RABBITMQ_DEFAULT_PASS"},
		{"empty password", "services:\n  mq:\n    image: rabbitmq\n    environment:\n      RABBITMQ_DEFAULT_PASS: ''\n", "RABBITMQ_DEFAULT_PASS is empty"},
		{"padded password", "services:\n  mq:\n    image: rabbitmq\n    environment:\n      RABBITMQ_DEFAULT_PASS: ' x '\n", "white space, which rabbitmqctl would drop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "rotate")
			must(t, os.MkdirAll(dir, 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(tt.compose), 0o644))
			p, err := project.Load(t.Context(), project.Options{Files: []string{filepath.Join(dir, "compose.yaml")}})
			must(t, err)
			plan := &deployer.Plan{Project: p, Hosts: []remote.Config{{Addr: "192.0.2.1:22"}}}
			err = deployer.RotateRabbitMQPassword(t.Context(), plan, deployer.RotateOptions{}, &deployer.TextReporter{W: io.Discard})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func newRabbitStack(t *testing.T) *stack {
	t.Helper()
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", rabbitMQImage).CombinedOutput(); err != nil {
		remotetest.Need(t, "image %s is missing (%v: %s): run scripts/demo-images", rabbitMQImage, err, strings.TrimSpace(string(out)))
	}
	s := newStack(t)
	// Without a name: in the file, the project is deployed under a name
	// (s.name) other than the one it loads with, as with --project: the
	// drift check must still find the broker's volume.
	must(t, os.WriteFile(filepath.Join(s.dir, "compose.yaml"), []byte(rabbitStack), 0o644))
	return s
}

// rabbitPlan is the rabbit stack with RABBITMQ_PASS set, given the time a
// broker takes to boot.
func (s *stack) rabbitPlan(hosts []remote.Config, password string, vars ...string) *deployer.Plan {
	p := s.plan(hosts, append([]string{"RABBITMQ_PASS=" + password}, vars...)...)
	p.HealthTimeout = time.Minute
	return p
}

func (s *stack) rotate(ctx context.Context, p *deployer.Plan, opts deployer.RotateOptions) (string, error) {
	var out syncBuffer
	err := deployer.RotateRabbitMQPassword(ctx, p, opts, &deployer.TextReporter{W: &out})
	s.t.Logf("rotate %s:\n%s", s.name, out.String())
	if err != nil {
		s.t.Logf("rotate %s: %v", s.name, err)
	}
	return out.String(), err
}

// api sends a request to the running api and returns its status and body.
func (s *stack) api(method, path, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.published("api", 3000)+path, strings.NewReader(body))
	must(s.t, err)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		s.t.Fatalf("the api does not answer %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (s *stack) wantHealthy() {
	s.t.Helper()
	if code, body := s.api(http.MethodGet, "/health", ""); code != http.StatusOK {
		s.t.Errorf("api /health: %d %s", code, body)
	}
}

func (s *stack) wantQueue(name string, messages int) {
	s.t.Helper()
	code, body := s.api(http.MethodGet, "/queue?name="+name, "")
	var got struct{ Messages int }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Messages != messages {
		s.t.Errorf("queue %s: %d %s, want %d message(s)", name, code, body, messages)
	}
}

// brokerAccepts asks the running broker whether user's password is pass.
func (s *stack) brokerAccepts(user, pass string) bool {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), time.Minute)
	defer cancel()
	id, err := exec.CommandContext(ctx, "docker", "compose", "-p", s.name, "ps", "-q", "rabbitmq").Output()
	if err != nil || len(strings.TrimSpace(string(id))) == 0 {
		s.t.Fatalf("no rabbitmq container in %s: %v", s.name, err)
	}
	return exec.CommandContext(ctx, "docker", "exec", strings.TrimSpace(string(id)), "rabbitmqctl", "-q", "authenticate_user", user, pass).Run() == nil
}
