package remote

import "strings"

// Quote joins args into one POSIX sh command line that the shell splits back
// into exactly args, with no expansion of any kind. It is the only way a
// command line is built in this package. Arguments made only of letters,
// digits and @%+:,./_- are left as they are; any other is single-quoted,
// with each ' written as '\”. An argument cannot hold a NUL byte (no
// command line can); Quote does not check for it.
func Quote(args ...string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if plain(a) {
			b.WriteString(a)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// plain tells whether a needs no quotes. '=' is not plain, so that an
// argument is never taken for a variable assignment, nor '~' for a home
// directory.
func plain(a string) bool {
	if a == "" {
		return false
	}
	for _, c := range []byte(a) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("@%+:,./_-", c) >= 0:
		default:
			return false
		}
	}
	return true
}
