package deployer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	secrets := []string{"hunter22", "hunter22extra", "abc", "s3cr3t-token"}
	for _, tc := range []struct{ in, want string }{
		// Longest first: the longer secret is hidden whole, no tail left.
		{"pass=hunter22extra", "pass=***"},
		{"pass=hunter22 and hunter22extra", "pass=*** and ***"},
		{"short abc stays", "short abc stays"},
		{"url postgres://u:s3cr3t-token@db/x", "url postgres://u:***@db/x"},
		{"nothing here", "nothing here"},
	} {
		if got := Redact(tc.in, secrets); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// The pipeline's reporter hides by the same rule, in every channel.
	var out bytes.Buffer
	rep := redact(&TextReporter{W: &out}, secrets)
	rep.Printf("printf hunter22extra")
	rep.Warnf("warn %s", "hunter22")
	rep.Step("step hunter22extra")(errors.New("failed: hunter22extra"))
	w := rep.Output()
	w.Write([]byte("out hunt"))
	w.Write([]byte("er22extra split across writes\n"))
	if strings.Contains(out.String(), "hunter") || strings.Contains(out.String(), "extra") {
		t.Errorf("a secret or its tail got through:\n%s", out.String())
	}
	if n := strings.Count(out.String(), "***"); n != 6 {
		t.Errorf("%d secrets hidden, want 6:\n%s", n, out.String())
	}
}

// TestRedactMultiLineSecret: a key printed a line at a time, across
// writes, is hidden line by line.
func TestRedactMultiLineSecret(t *testing.T) {
	key := "-----BEGIN KEY-----\r\nAAAAsecretline1\nBBBBsecretline2\n-----END KEY-----"
	var out bytes.Buffer
	w := redact(&TextReporter{W: &out}, []string{key}).Output()
	w.Write([]byte("AAAAsecretline1\n"))
	w.Write([]byte("BBBBsecret"))
	w.Write([]byte("line2\n"))
	if strings.Contains(out.String(), "secretline") {
		t.Errorf("a line of the key got through:\n%s", out.String())
	}
}

// A command's last line that does not end in a newline is shown, redacted,
// once the command has ended.
func TestOutputFlushesTheLastLine(t *testing.T) {
	var b strings.Builder
	out := redact(&TextReporter{W: &b}, []string{"hunter22"}).Output()
	io.WriteString(out, "applying migrations\nfailed: password hunter22 refused")
	if strings.Contains(b.String(), "refused") {
		t.Fatalf("an unfinished line was written before the end:\n%s", b.String())
	}
	flush(out)
	if want := "    | applying migrations\n    | failed: password *** refused\n"; b.String() != want {
		t.Errorf("output %q, want %q", b.String(), want)
	}
}
