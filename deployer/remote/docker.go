package remote

import (
	"context"
	"fmt"
	"net"

	"github.com/docker/docker/client"
)

// docker makes a Docker Engine client whose every connection, hijacked ones
// included (attach, BuildKit's /grpc and /session), is h.DialUnix to the
// Engine's socket, pings it and settles the API version.
func docker(ctx context.Context, h Host) (*client.Client, error) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return h.DialUnix(ctx, dockerSocket)
	}
	cli, err := client.NewClientWithOpts(
		client.WithHost("unix://"+dockerSocket), // before the dialer, which it would replace
		client.WithDialContext(dial),
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		return nil, fmt.Errorf("docker on %s: %w", h.Name(), err)
	}
	ping, err := cli.Ping(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker on %s: %w", h.Name(), err)
	}
	cli.NegotiateAPIVersionPing(ping)
	return cli, nil
}
