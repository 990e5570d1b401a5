package deployer

import (
	"errors"
	"io"
	"testing"
	"time"
)

func TestRecorder(t *testing.T) {
	var res Result
	clock := time.Unix(0, 0)
	r := &recorder{Reporter: &TextReporter{W: io.Discard}, res: &res, secrets: []string{"hunter22"},
		now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	r.Step("lock")(nil)
	r.Step("migrate (migrate)")(errors.New("migration failed: password hunter22 refused"))
	r.Step("roll back")(errors.New("also failed"))
	r.Step("migrate (hunter22)")(nil)
	if len(res.Steps) != 4 || res.Steps[3].Name != "migrate (***)" || res.Steps[0].Name != "lock" || res.Steps[0].Duration != time.Second || res.Steps[0].Error != "" {
		t.Fatalf("steps %+v", res.Steps)
	}
	if res.FailedStep != "migrate (migrate)" {
		t.Errorf("failed step %q, want the first that failed", res.FailedStep)
	}
	if got := res.Steps[1].Error; got != "migration failed: password *** refused" {
		t.Errorf("step error %q, want the secret redacted", got)
	}
}
