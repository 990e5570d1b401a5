package deployer

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// A release's .env is what compose on the host reads its variables from.
// Values come from env files and may hold anything (a pull request can
// choose some of them), so the file is written in the one form compose's
// parser reads back unchanged for any bytes, and checked with that parser:
// a value must never end its quotes early and add a variable of its own
// (COMPOSE_PROFILES=… would start the migration service inside up).

const envFileHeader = "# Written by deployer for this release. Mode 0600: it holds secrets.\n"

// envKey is a name compose's env file parser takes whole.
var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]*$`)

// envEscaper escapes a value for double quotes: there compose's parser
// undoes \\ \" \$ \n \r, and nothing else is special.
var envEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "\n", `\n`, "\r", `\r`)

// releaseEnv is what a release's .env carries: the env files' variables,
// less those that would configure compose itself on the host
// (COMPOSE_PROFILES would start the migration service inside up;
// COMPOSE_ENV_FILES, COMPOSE_FILE… would change what it reads) or the
// Docker client. The rendered compose.yaml is interpolated already and
// needs none of them.
func releaseEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "COMPOSE_") && !strings.HasPrefix(k, "DOCKER_") {
			out = append(out, kv)
		}
	}
	return out
}

// envFile writes KEY=VALUE pairs as an env file.
func envFile(env []string) ([]byte, error) {
	var b strings.Builder
	b.WriteString(envFileHeader)
	want := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if !envKey.MatchString(k) {
			return nil, fmt.Errorf("variable name %q cannot be written to the release's .env: use letters, digits and _", k)
		}
		fmt.Fprintf(&b, "%s=\"%s\"\n", k, envEscaper.Replace(v))
		want[k] = v
	}
	got, err := readEnvFile([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("the release's .env does not read back: %w", err)
	}
	if !maps.Equal(got, want) {
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if g, ok := got[k]; !ok || g != want[k] {
				return nil, fmt.Errorf("the value of %s cannot be written to the release's .env so that compose reads it back unchanged", k)
			}
		}
		return nil, fmt.Errorf("the release's .env reads back with variables that were not written")
	}
	return []byte(b.String()), nil
}

// readEnvFile parses an env file as compose does, without looking up
// anything in this process's environment.
func readEnvFile(data []byte) (map[string]string, error) {
	return dotenv.UnmarshalBytesWithLookup(data, func(string) (string, bool) { return "", false })
}
