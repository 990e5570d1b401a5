package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/semalink/deploy-action/server"
)

// What sign prints or sends verifies as the server verifies it.
func TestSign(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	t.Setenv("HOOK_SECRET", secret)
	body := `{"action":"redeploy","project":"demo"}`
	var got error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, got = server.VerifyStandard([]string{secret}, r.Header, b, time.Now())
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"d1"}`)
	}))
	defer srv.Close()
	code, stdout, stderr := run(t, "", "sign", "--scheme", "standard", "--secret-env", "HOOK_SECRET", "--data", body, "--url", srv.URL)
	if code != exitOK || got != nil || !strings.Contains(stdout, "202 Accepted") {
		t.Errorf("sent: exit %d, verified %v\n%s%s", code, got, stdout, stderr)
	}
	code, stdout, _ = run(t, "", "sign", "--scheme", "github", "--secret-env", "HOOK_SECRET", "--data", body)
	if code != exitOK || !strings.Contains(stdout, "X-Hub-Signature-256: sha256=") || strings.Contains(stdout, secret) {
		t.Errorf("printed: exit %d\n%s", code, stdout)
	}
	// A redirect is an answer: the signed request goes nowhere else.
	var elsewhere bool
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere = true }))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	if code, stdout, _ := run(t, "", "sign", "--scheme", "standard", "--secret-env", "HOOK_SECRET", "--data", body, "--url", redirect.URL); code != exitFailed || elsewhere || !strings.Contains(stdout, "307") {
		t.Errorf("redirected: exit %d, followed %v\n%s", code, elsewhere, stdout)
	}
	for _, args := range [][]string{
		{"sign", "--scheme", "gitlab", "--secret-env", "HOOK_SECRET", "--data", "{}"},
		{"sign", "--scheme", "github", "--secret-env", "UNSET_SECRET_VAR", "--data", "{}"},
	} {
		if code, _, stderr := run(t, "", args...); code != exitConfig || stderr == "" {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
}

func TestServeCheckConfig(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"compose.yaml": "services:\n  api:\n    image: registry.example/api:1\n",
		"server.yaml": "projects:\n  demo:\n    compose-files: [" + dir + "/compose.yaml]\nhooks:\n" +
			"  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [demo], actions: [redeploy]}\n",
	})
	t.Setenv("DEPLOY_HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	code, stdout, stderr := run(t, "", "serve", "--config", dir+"/server.yaml", "--check-config")
	if code != exitOK || !strings.Contains(stdout, "configuration OK: listen 127.0.0.1:9000, 1 project(s), hooks standard") {
		t.Errorf("check-config: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Setenv("DEPLOY_HOOK_SECRET", "whsec_c2hvcnQ=")
	if code, _, stderr := run(t, "", "serve", "--config", dir+"/server.yaml", "--check-config"); code != exitConfig || !strings.Contains(stderr, "line 5: hooks.standard secret env:DEPLOY_HOOK_SECRET: 5 bytes, fewer than 16") {
		t.Errorf("a short secret: exit %d, %s", code, stderr)
	}
}

// TestServeAndStop: deployer serve answers a request that deployer sign
// sends, and a SIGTERM stops it cleanly.
func TestServeAndStop(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"compose.yaml": "services:\n  api:\n    image: registry.example/api:1\n",
		"server.yaml": "listen: 127.0.0.1:0\nstate: " + dir + "/state\nroot: " + dir + "/root\nprojects:\n  demo:\n    compose-files: [" + dir + "/compose.yaml]\nhooks:\n" +
			"  standard: {secrets: [env:DEPLOY_HOOK_SECRET], projects: [demo], actions: [redeploy]}\n",
	})
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	t.Setenv("DEPLOY_HOOK_SECRET", secret)
	cmd := exec.Command(deployerBinary(t), "serve", "--config", dir+"/server.yaml")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "DEPLOY_HOOK_SECRET=" + secret}
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	var addr, log strings.Builder
	for addr.Len() == 0 && lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if _, a, ok := strings.Cut(lines.Text(), "msg=serving listen="); ok {
			addr.WriteString(strings.Fields(a)[0])
		}
	}
	if addr.Len() == 0 {
		t.Fatalf("no address in the log:\n%s", log.String())
	}
	url := "http://" + addr.String()
	code, stdout, _ := run(t, "", "sign", "--scheme", "standard", "--secret-env", "DEPLOY_HOOK_SECRET", "--data", `{"action":"redeploy","project":"demo"}`, "--url", url+"/hooks/standard")
	if code != exitOK || !strings.Contains(stdout, "202 Accepted") || !strings.Contains(stdout, `"id"`) {
		t.Errorf("a signed request: exit %d\n%s", code, stdout)
	}
	resp, err := http.Get(url + "/deploys")
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"action": "redeploy"`) {
		t.Errorf("GET /deploys: %s", b)
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	go io.Copy(&log, stderr)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, log.String())
	}
	if strings.Contains(log.String(), secret) {
		t.Errorf("the log holds the secret")
	}
}
