package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
