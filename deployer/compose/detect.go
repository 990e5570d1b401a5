package compose

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// Detect finds the host's compose command: the v2 plugin (`docker
// compose`), or else a `docker-compose` binary. A docker-compose 1.x comes
// with a warning to show the user; when neither runs, the error says how to
// install the plugin.
func Detect(ctx context.Context, r Runner) (command []string, version string, warning string, err error) {
	v2 := []string{"docker", "compose"}
	version, errV2 := shortVersion(ctx, r, v2)
	if errV2 == nil {
		return v2, version, "", nil
	}
	if ctx.Err() != nil {
		return nil, "", "", fmt.Errorf("detect docker compose: %w", ctx.Err())
	}
	standalone := []string{"docker-compose"}
	version, errV1 := shortVersion(ctx, r, standalone)
	if errV1 != nil {
		if ctx.Err() != nil {
			return nil, "", "", fmt.Errorf("detect docker compose: %w", ctx.Err())
		}
		return nil, "", "", fmt.Errorf("detect docker compose: neither `docker compose` nor `docker-compose` runs on the host (%v; %v); "+
			"install the Compose plugin there: apt-get install docker-compose-plugin from Docker's apt repository, "+
			"see https://docs.docker.com/compose/install/linux/", errV2, errV1)
	}
	if strings.HasPrefix(version, "1.") {
		warning = fmt.Sprintf("the host has docker-compose %s (Compose v1, no longer maintained) and no `docker compose` plugin; "+
			"deploying with v1 for now: install the Compose plugin (apt-get install docker-compose-plugin) to use v2", version)
	}
	return standalone, version, warning, nil
}

// shortVersion runs `COMMAND version --short`: "2.40.3" from v2, "1.29.2"
// from v1.
func shortVersion(ctx context.Context, r Runner, command []string) (string, error) {
	var out bytes.Buffer
	c := CLI{Runner: r, Command: command}
	if err := c.run(ctx, "version", []string{"version", "--short"}, &out, nil); err != nil {
		return "", err
	}
	v := strings.TrimPrefix(strings.TrimSpace(out.String()), "v")
	if v == "" {
		return "", fmt.Errorf("%s version --short printed nothing", strings.Join(command, " "))
	}
	return v, nil
}
