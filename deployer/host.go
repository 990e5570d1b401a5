package deployer

import (
	"context"
	"io"
	"io/fs"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/semalink/deploy-action/deployer/build"
	"github.com/semalink/deploy-action/deployer/health"
	"github.com/semalink/deploy-action/deployer/remote"
	"github.com/semalink/deploy-action/deployer/ship"
)

// Host is what the pipeline needs of a machine it deploys to: files,
// commands (compose's among them), the deploy lock and its Engine.
// A droplet over SSH and this machine have it (see connect); the tests'
// fakes do too.
type Host interface {
	Name() string
	Run(ctx context.Context, c remote.Cmd) error
	Output(ctx context.Context, args ...string) ([]byte, error)
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
	ReadFile(ctx context.Context, path string) ([]byte, error)
	Lock(ctx context.Context, path string, holder []byte, wait time.Duration, waiting func(holder []byte)) (remote.Unlocker, error)
	// Engine connects the host's Docker Engine; the caller closes it.
	Engine(ctx context.Context) (Engine, error)
}

// Engine is the part of the Docker Engine API the pipeline uses: the
// parts that health, ship and build need, and what the steps here call.
// *client.Client has it.
type Engine interface {
	health.Engine
	ship.Engine
	build.Docker
	execer
	imageRemover
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
	NetworkDisconnect(ctx context.Context, networkID, containerID string, force bool) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	VolumeInspect(ctx context.Context, volumeID string) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	Close() error
}

var _ Engine = (*client.Client)(nil)

// machine is a remote.Host (an SSH client, or this machine) as a Host.
type machine struct{ remote.Host }

func (m machine) Engine(ctx context.Context) (Engine, error) {
	c, err := m.Docker(ctx)
	if err != nil {
		return nil, err // not a nil *client.Client in an Engine
	}
	return c, nil
}

// connect reaches one of the plan's hosts: over SSH, or this machine with
// Local. Tests replace it through Plan.connect.
func connect(ctx context.Context, cfg remote.Config) (Host, func() error, error) {
	c, err := remote.Dial(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return machine{c}, c.Close, nil
}
