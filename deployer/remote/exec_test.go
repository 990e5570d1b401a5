package remote

import (
	"bytes"
	"strings"
	"testing"
)

// TestGroupWriter feeds groupWriter what a login shell and a command may
// print, in every split: the process group is read from the marker line
// alone, and only what follows it is the command's output.
func TestGroupWriter(t *testing.T) {
	m := groupMarker
	for _, tc := range []struct {
		name, in string
		pgid     int // 0: no marker line found
		out      string
	}{
		{"Plain", m + "1234\nhello\n", 1234, "hello\n"},
		{"Banner", "Welcome to the droplet!\nno newline" + m + "77\nout", 77, "out"},
		{"LongNoise", strings.Repeat("x", 100_000) + m + "5\n", 5, ""},
		{"MarkerInTheOutput", m + "9\n" + m + "10\n", 9, m + "10\n"},
		{"NotANumberFirst", m + "abc\n" + m + "42\nok", 42, "ok"},
		{"TooLongFirst", m + strings.Repeat("9", 100) + "\n" + m + "1234\nok", 1234, "ok"},
		{"GroupOne", m + "1\n" + m + "8\nok", 8, "ok"},
		{"None", "a shell that never starts the command\n", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{len(tc.in), 1, 3, 7} { // one write, and split
				var out bytes.Buffer
				g := newGroupWriter(&out)
				for rest := tc.in; rest != ""; {
					n := min(size, len(rest))
					if k, err := g.Write([]byte(rest[:n])); k != n || err != nil {
						t.Fatalf("Write = %d, %v", k, err)
					}
					rest = rest[n:]
				}
				select {
				case <-g.known:
					if g.pgid != tc.pgid {
						t.Errorf("writes of %d: group %d, want %d", size, g.pgid, tc.pgid)
					}
				default:
					if tc.pgid != 0 {
						t.Errorf("writes of %d: no group read, want %d", size, tc.pgid)
					}
				}
				if out.String() != tc.out {
					t.Errorf("writes of %d: output %q, want %q", size, out.String(), tc.out)
				}
			}
		})
	}
}
