package remote

import (
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/internal/costtest"
)

func TestQuote(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{""}, "''"},
		{[]string{"docker", "compose", "-f", "/srv/deployer/app/releases/42/compose.yaml", "up", "-d"}, "docker compose -f /srv/deployer/app/releases/42/compose.yaml up -d"},
		{[]string{"user@host:22", "50%", "a+b,c", "_x-y."}, "user@host:22 50% a+b,c _x-y."},
		{[]string{"with space"}, "'with space'"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{"'"}, `''\'''`},
		{[]string{"$(reboot)", "`reboot`", "a;b", "a&b", "a|b", "a>b"}, "'$(reboot)' '`reboot`' 'a;b' 'a&b' 'a|b' 'a>b'"},
		{[]string{"FOO=bar", "~", "~root", "*", "?", "[a]", "{a,b}", "#x", "!x"}, "'FOO=bar' '~' '~root' '*' '?' '[a]' '{a,b}' '#x' '!x'"},
		{[]string{"line\nbreak", "tab\t", `back\slash`, `"q"`, "ü"}, "'line\nbreak' 'tab\t' 'back\\slash' '\"q\"' 'ü'"},
	} {
		if got := Quote(tt.args...); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.args, got, tt.want)
		}
	}
}

// TestQuoteRoundTrip is the property that matters: the shell splits
// Quote(args) back into exactly args, whatever bytes they hold (but NUL).
func TestQuoteRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{
		"'\"\\$`;&|<>(){}[]*?~!#=% \t\n\r-ab",
		"aé✓\u00a0\u2028",
	}
	randomArg := func() string {
		var b strings.Builder
		for range r.IntN(12) {
			switch r.IntN(3) {
			case 0: // any byte but NUL, valid UTF-8 or not
				b.WriteByte(byte(1 + r.IntN(255)))
			default:
				a := []rune(alphabets[r.IntN(len(alphabets))])
				b.WriteRune(a[r.IntN(len(a))])
			}
		}
		return b.String()
	}
	for _, shell := range []string{"sh", "bash", "dash"} {
		if _, err := exec.LookPath(shell); err != nil {
			continue
		}
		t.Run(shell, func(t *testing.T) {
			for range 50 {
				args := make([]string, 1+r.IntN(8))
				for i := range args {
					args[i] = randomArg()
				}
				line := Quote(append([]string{"sh", "-c", `printf '%s\n' "$#" "$@"`, "sh"}, args...)...)
				out, err := exec.Command(shell, "-c", line).Output()
				if err != nil {
					t.Fatalf("%s -c %q: %v", shell, line, err)
				}
				want := strconv.Itoa(len(args)) + "\n" + strings.Join(args, "\n") + "\n"
				if string(out) != want {
					t.Fatalf("%s split %s into\n%q\nwant\n%q", shell, line, out, want)
				}
			}
		})
	}
}

// FuzzQuote: sh splits Quote(args) back into exactly args, the line grows
// at most four bytes per byte (a ' becomes '\”), and quoting costs a
// linear bound.
func FuzzQuote(f *testing.F) {
	f.Add("it's", "$(reboot)")
	f.Add("", "a\nb")
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.ContainsRune(a+b, 0) {
			return // no command line can hold a NUL byte
		}
		var line string
		costtest.Linear(t, "Quote", len(a)+len(b), 64, 64<<10, func() { line = Quote(a, b) })
		if len(line) > 4*(len(a)+len(b))+5 {
			t.Fatalf("Quote grew %d bytes into %d", len(a)+len(b), len(line))
		}
		got, err := exec.Command("sh", "-c", `eval "set -- $1"; printf '%s\0' "$@"`, "sh", line).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if want := a + "\x00" + b + "\x00"; string(got) != want {
			t.Fatalf("sh split %q into %q, want %q", line, got, want)
		}
	})
}
