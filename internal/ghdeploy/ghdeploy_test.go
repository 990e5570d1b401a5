package ghdeploy_test

import (
	"strings"
	"testing"

	"github.com/semalink/deploy-action/internal/ghdeploy"
	"github.com/semalink/deploy-action/internal/ghdeploy/ghdeploytest"
)

func TestDeploymentAndStatuses(t *testing.T) {
	srv := ghdeploytest.New(t, "ghs_test", "semalink/shop")
	c, err := ghdeploy.New("ghs_test", srv.URL, "semalink/shop")
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Start(t.Context(), "3f2a9c1d", "staging", "deploy", "https://github.com/semalink/shop/actions/runs/42")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Status(t.Context(), id, ghdeploy.Success, "https://shop.example", "https://github.com/semalink/shop/actions/runs/42", "release 20261202-1"); err != nil {
		t.Fatal(err)
	}
	calls := srv.Calls()
	if len(calls) != 3 || calls[0].State != "created" || calls[1].State != "in_progress" || calls[2].State != "success" || calls[2].Deployment != id {
		t.Fatalf("calls %+v, want created, in_progress, success on %d", calls, id)
	}
	if b := calls[0].Body; b["ref"] != "3f2a9c1d" || b["environment"] != "staging" || b["task"] != "deploy" {
		t.Errorf("deployment body %v", b)
	}
	if b := calls[2].Body; b["environment_url"] != "https://shop.example" || b["log_url"] != "https://github.com/semalink/shop/actions/runs/42" || b["auto_inactive"] != true {
		t.Errorf("status body %v", b)
	}
}

func TestErrorsSayWhatToChange(t *testing.T) {
	srv := ghdeploytest.New(t, "ghs_test", "semalink/shop")
	srv.Forbid = true
	c, _ := ghdeploy.New("ghs_test", srv.URL, "semalink/shop")
	if _, err := c.Start(t.Context(), "3f2a9c1d", "staging", "deploy", ""); err == nil || !strings.Contains(err.Error(), "permissions: deployments: write") {
		t.Errorf("403: %v, want the permission named", err)
	}
	bad, _ := ghdeploy.New("wrong", srv.URL, "semalink/shop")
	if _, err := bad.Start(t.Context(), "3f2a9c1d", "staging", "deploy", ""); err == nil || !strings.Contains(err.Error(), "not a valid token") {
		t.Errorf("401: %v", err)
	}
	for _, repo := range []string{"", "shop", "a/b/c"} {
		if _, err := ghdeploy.New("t", "", repo); err == nil {
			t.Errorf("repository %q accepted", repo)
		}
	}
	if _, err := ghdeploy.New("t", "ftp://example.com", "a/b"); err == nil {
		t.Errorf("an ftp API URL was accepted")
	}
}
