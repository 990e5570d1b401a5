package deployer

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/internal/costtest"
)

func TestEnvFileRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		// A value ending in a backslash, then one with a line break: in
		// single quotes the backslash escaped the closing quote and the
		// second value became a variable of its own.
		{"BackslashThenNewline", []string{`A=abc\`, "B=x\nCOMPOSE_PROFILES=deployer-migrate\n"}},
		{"Quotes", []string{`A='single'`, `B="double"`, `C=it's "both"`, `D=\'`, `E=\"`}},
		{"Dollars", []string{"A=$HOME", "B=${PATH}", "C=$$", "D=\\$x", "E=$"}},
		{"Escapes", []string{`A=\n`, `B=\\n`, `C=\0123`, `D=\t\r`, "E=tab\there", "F=cr\rlf\r\n"}},
		{"Comments", []string{"A=#not a comment", "B=x #nor this", "C= spaced "}},
		{"Bytes", []string{"A=\x00nul", "B=\xff\xfe not utf-8", "C=ünïcødé ✓", "D="}},
		{"Export", []string{"A=export B=1", "B=\nexport C=2"}},
	} {
		t.Run(tc.name, func(t *testing.T) { roundTrip(t, tc.env) })
	}
}

// TestEnvFileRandomValues writes 10,000 random values, printable and not.
func TestEnvFileRandomValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab$\\\"'\n\r\t #={}`;&|\x00\x7f\xc3\xa9\xff")
	env := make([]string, 0, 100)
	for i := range 10_000 {
		v := make([]byte, rng.IntN(24))
		for j := range v {
			if rng.IntN(4) == 0 {
				v[j] = byte(rng.IntN(256))
			} else {
				v[j] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		env = append(env, "V"+strings.Repeat("X", i%3)+"_"+string(rune('A'+i%26))+"="+string(v))
		if len(env) == 100 {
			roundTrip(t, env)
			env = env[:0]
		}
	}
}

func roundTrip(t *testing.T, env []string) {
	t.Helper()
	data, err := envFile(env)
	if err != nil {
		t.Fatalf("envFile: %v", err)
	}
	got, err := readEnvFile(data)
	if err != nil {
		t.Fatalf("compose's parser: %v\n%s", err, data)
	}
	want := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		want[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s read back as %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s read back, but was never written", k)
		}
	}
}

func TestEnvFileRefusesBadNames(t *testing.T) {
	for _, kv := range []string{"=x", "A B=x", "A\nB=x", "1A=x"} {
		if _, err := envFile([]string{kv}); err == nil {
			t.Errorf("envFile(%q) succeeded", kv)
		}
	}
}

// FuzzEnvFile: whatever two values are, compose reads back exactly them;
// the file grows at most four bytes per byte, and writing it (compose's
// parser reading it back included: about 140 bytes allocated per byte,
// 45 KiB at least) costs a linear bound.
func FuzzEnvFile(f *testing.F) {
	f.Add(`abc\`, "x\nCOMPOSE_PROFILES=deployer-migrate")
	f.Add(`'"$\`, "\r\n\x00")
	f.Add(strings.Repeat(`\"$`, 1000), strings.Repeat("\n", 1000))
	f.Fuzz(func(t *testing.T, a, b string) {
		env := []string{"A=" + a, "B=" + b}
		n := len(a) + len(b)
		var data []byte
		costtest.Linear(t, "envFile", n, 512, 64<<10, func() { data, _ = envFile(env) })
		if len(data) > len(envFileHeader)+4*n+16 {
			t.Fatalf("envFile wrote %d bytes for %d bytes of values", len(data), n)
		}
		roundTrip(t, env)
	})
}

func TestReleaseEnvLeavesComposeAlone(t *testing.T) {
	got := releaseEnv([]string{"DB_URL=x", "COMPOSE_PROFILES=deployer-migrate", "COMPOSE_ENV_FILES=/etc/shadow", "DOCKER_HOST=tcp://evil:2375", "RELEASE=v1"})
	if strings.Join(got, " ") != "DB_URL=x RELEASE=v1" {
		t.Errorf("releaseEnv kept %q", got)
	}
}
