package ship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

// Source is where an image comes from: the Engine that built it, or an
// Archive. *client.Client has it.
type Source interface {
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageSave(ctx context.Context, images []string, opts ...client.ImageSaveOption) (io.ReadCloser, error)
}

// Engine is the part of the Docker Engine API that shipping needs from the
// destination; *client.Client has it.
type Engine interface {
	Source
	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	Info(ctx context.Context) (system.Info, error)
}

var _ Engine = (*client.Client)(nil)

// Options tunes Ship. The zero value is ready to use.
type Options struct {
	// Progress, if set, is called as the archive goes out: at the start,
	// at most four times a second, and once at the end. It runs on the
	// sending goroutine and must return quickly.
	Progress func(Progress)
	// Retries is how many times a load whose connection dropped is tried
	// again, asking the destination anew what it has: 0 means 2, a
	// negative number none.
	Retries int
	// Host names the destination in errors, e.g. "root@203.0.113.7:22"
	// (default: the host name its Engine reports).
	Host string
}

// Progress is how far a Ship is. Sent counts compressed bytes handed to
// the destination's connection, over every attempt, so it never goes
// down. Total is what Sent is expected to reach: before the first byte it
// is the uncompressed size of what will be sent (an upper bound, as gzip
// only shrinks image layers), then Sent plus what is left at the
// compression ratio seen so far, and in the last report it equals Sent.
// Rate is Sent per second since the transfer began; Left is the time the
// rest should take at the current pace (0 in the last report).
type Progress struct {
	Image       string
	Sent, Total int64
	Rate        float64
	Left        time.Duration
}

// Stats is what a Ship did.
type Stats struct {
	Image     string
	ID        string // the image ID on the source (and, once verified, on the destination)
	Sent      int64  // compressed archive bytes sent, over all attempts; 0 if the destination had the image
	ImageSize int64  // the image's size on the source, uncompressed
	Layers    int    // layers in the image
	Skipped   int    // layers the destination had, left out of the archive
	Took      time.Duration
	// Full is set when the whole image was sent, whatever the destination
	// had, because its image store cannot take a partial archive;
	// FullReason says why.
	Full       bool
	FullReason string
	Retries    int // loads tried again after a dropped connection
}

const (
	defaultRetries = 2
	retryPause     = 500 * time.Millisecond // times the attempt number
	// containerdStore is the driver-type that `docker info` shows when the
	// Engine keeps images in containerd (the snapshotter image store).
	containerdStore = "io.containerd.snapshotter.v1"
	fullReason      = "the host's Docker keeps images in containerd (driver-type " + containerdStore +
		"), whose docker load imports every layer file the archive's manifest names and refuses an archive without them"
)

// Ship makes the image named ref (a name, name:tag or ID on src) exist on
// dst with the same ID and, when ref is a name, tagged ref there. It sends
// only the layers dst lacks; if dst already has the image it sends
// nothing and just tags it.
func Ship(ctx context.Context, src Source, dst Engine, ref string, o Options) (Stats, error) {
	start := time.Now()
	s := &shipment{src: src, dst: dst, ref: ref, o: o, host: o.Host, chains: map[string][]string{}}
	s.st.Image = ref
	err := s.run(ctx)
	s.st.Took = time.Since(start)
	if s.meter != nil {
		s.st.Sent = s.meter.total()
	}
	if err != nil {
		return s.st, fmt.Errorf("ship %s to %s: %w", ref, s.hostName(), err)
	}
	return s.st, nil
}

// shipment is one Ship call.
type shipment struct {
	src  Source
	dst  Engine
	ref  string
	o    Options
	host string
	st   Stats

	img        image.InspectResponse // on the source
	containerd bool                  // dst keeps images in containerd
	chains     map[string][]string   // dst image ID → its layer chain IDs; image IDs never change
	layout     *layout               // the source archive, once scanned
	meter      *meter
}

func (s *shipment) hostName() string {
	if s.host != "" {
		return s.host
	}
	return "the host"
}

func (s *shipment) run(ctx context.Context) error {
	img, err := s.src.ImageInspect(ctx, s.ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("no such image where it was built: %w: build it first, or check the image name", err)
		}
		return fmt.Errorf("inspect it where it was built: %w", err)
	}
	if img.RootFS.Type != "" && img.RootFS.Type != "layers" || len(img.RootFS.Layers) == 0 {
		return fmt.Errorf("image %s has no layers to ship (rootfs type %q)", img.ID, img.RootFS.Type)
	}
	s.img = img
	s.st.ID, s.st.ImageSize, s.st.Layers = img.ID, img.Size, len(img.RootFS.Layers)

	info, err := s.dst.Info(ctx)
	if err != nil {
		return fmt.Errorf("ask the host's Docker about its image store: %w: check that Docker runs on the host (systemctl status docker)", err)
	}
	if s.host == "" && info.Name != "" {
		s.host = info.Name
	}
	s.containerd = usesContainerd(info)

	retries := s.o.Retries
	if retries == 0 {
		retries = defaultRetries
	}
	s.meter = newMeter(s.ref, s.o.Progress)
	for attempt := 0; ; attempt++ {
		err := s.attempt(ctx)
		if err == nil {
			s.meter.finish()
			return nil
		}
		if ctx.Err() != nil || !dropped(err) {
			return err
		}
		if sshLost(err) {
			return fmt.Errorf("%w: the SSH connection to the host is gone, and the deploy lock with it: deploy again; layers the host has by then are not sent again", err)
		}
		if attempt >= retries {
			return fmt.Errorf("%w: gave up after %s: check that the host is reachable and its Docker runs, then deploy again; layers the host has by then are not sent again", err, plural(attempt+1, "attempt"))
		}
		s.st.Retries++
		select {
		case <-time.After(time.Duration(attempt+1) * retryPause):
		case <-ctx.Done():
			return fmt.Errorf("%w (while waiting to retry: %w)", err, ctx.Err())
		}
	}
}

// attempt asks the destination what it has, sends what it lacks, checks
// the result and tags it.
func (s *shipment) attempt(ctx context.Context) error {
	id := s.img.ID
	if have, err := s.has(ctx, id); err != nil {
		return err
	} else if have {
		s.st.Skipped = s.st.Layers
		return s.tag(ctx, id)
	}

	present := make([]bool, len(s.img.RootFS.Layers))
	if !s.containerd {
		have, err := s.inventory(ctx)
		if err != nil {
			return err
		}
		for i, c := range chainIDs(s.img.RootFS.Layers) {
			present[i] = have[c]
		}
	}
	// With the containerd store what it has is not asked: the whole image
	// goes regardless.
	skipped := count(present)
	if s.containerd {
		s.st.Full, s.st.FullReason = true, fullReason
	}

	var drop map[string]bool
	if skipped > 0 {
		// Which file of the archive holds which layer is only known from
		// the manifest, which comes last: read the archive once to learn it.
		if s.layout == nil {
			l, err := s.scan(ctx)
			if err != nil {
				return err
			}
			s.layout = l
		}
		drop = s.layout.drop(present)
	}
	s.st.Skipped = skipped

	loaded, err := s.send(ctx, drop)
	if err != nil {
		return err
	}
	return s.verifyAndTag(ctx, loaded)
}

// has reports whether the destination already has the image.
func (s *shipment) has(ctx context.Context, id string) (bool, error) {
	got, err := s.dst.ImageInspect(ctx, id)
	switch {
	case cerrdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("inspect image %s on the host: %w", short(id), err)
	}
	return got.ID == id || s.containerd && slices.Equal(got.RootFS.Layers, s.img.RootFS.Layers), nil
}

// inventory is the set of layer chain IDs that the destination's images
// have. Image IDs already inspected during this Ship are not asked again.
func (s *shipment) inventory(ctx context.Context) (map[string]bool, error) {
	list, err := s.dst.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list the host's images: %w", err)
	}
	var ids []string
	for _, sum := range list {
		if _, done := s.chains[sum.ID]; !done && !slices.Contains(ids, sum.ID) {
			ids = append(ids, sum.ID)
		}
	}
	found, err := inspectAll(ctx, s.dst, ids)
	if err != nil {
		return nil, err
	}
	for id, layers := range found {
		s.chains[id] = chainIDs(layers)
	}
	have := map[string]bool{}
	for _, sum := range list {
		for _, c := range s.chains[sum.ID] {
			have[c] = true
		}
	}
	return have, nil
}

// scan reads the source's archive through once, to learn where each layer is.
func (s *shipment) scan(ctx context.Context) (*layout, error) {
	rc, err := s.src.ImageSave(ctx, []string{s.img.ID})
	if err != nil {
		return nil, &sourceError{fmt.Errorf("save image %s where it was built: %w", short(s.img.ID), err)}
	}
	defer rc.Close()
	l, err := scan(rc, s.img.ID, len(s.img.RootFS.Layers))
	if err != nil {
		return nil, &sourceError{fmt.Errorf("read the saved image %s: %w", short(s.img.ID), err)}
	}
	return l, nil
}

// send streams the rewritten archive into the destination's docker load
// and returns what the load says it loaded.
func (s *shipment) send(ctx context.Context, drop map[string]bool) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := s.src.ImageSave(ctx, []string{s.img.ID})
	if err != nil {
		return nil, &sourceError{fmt.Errorf("save image %s where it was built: %w", short(s.img.ID), err)}
	}
	defer rc.Close()

	estimate := s.img.Size + 64<<10
	if s.layout != nil {
		estimate = s.layout.size(drop)
	}
	s.meter.begin(estimate)

	pr, pw := io.Pipe()
	var stopped atomic.Bool
	written := make(chan error, 1)
	go func() {
		err := write(s.meter.writer(pw), rc, s.img.ID, drop, s.layout, s.meter.uncompressed)
		if stopped.Load() {
			err = nil // the load ended first; its error is the one that counts
		}
		pw.CloseWithError(err)
		written <- err
	}()

	loaded, lerr := s.load(ctx, pr)
	stopped.Store(true)
	pr.CloseWithError(errLoadEnded)
	rc.Close()
	werr := <-written

	if werr != nil && !errors.Is(werr, errLoadEnded) && !errors.Is(werr, io.ErrClosedPipe) {
		// The archive could not be read or rewritten: the load failed
		// because of it, not on its own.
		return nil, &sourceError{fmt.Errorf("read the saved image %s: %w", short(s.img.ID), werr)}
	}
	if lerr != nil {
		return nil, lerr
	}
	return loaded, nil
}

func (s *shipment) load(ctx context.Context, archive io.Reader) ([]string, error) {
	resp, err := s.dst.ImageLoad(ctx, archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		return nil, fmt.Errorf("docker load on the host: %w", err)
	}
	defer resp.Body.Close()
	loaded, err := readLoad(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("docker load on the host: %w", err)
	}
	return loaded, nil
}

// verifyAndTag checks that the destination now has the source's image and
// only then tags it.
func (s *shipment) verifyAndTag(ctx context.Context, loaded []string) error {
	id := s.img.ID
	if s.containerd && len(loaded) == 1 && loaded[0] != id {
		// The containerd store names an image by the digest of the manifest
		// that its import wrote, not by the config's digest.
		got, err := s.dst.ImageInspect(ctx, loaded[0])
		if err != nil {
			return fmt.Errorf("inspect the loaded image %s on the host: %w", short(loaded[0]), err)
		}
		if !slices.Equal(got.RootFS.Layers, s.img.RootFS.Layers) || got.Created != s.img.Created {
			return s.mismatch(loaded[0], "its layers or creation time differ from the built image's")
		}
		return s.tag(ctx, loaded[0])
	}
	got, err := s.dst.ImageInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		what := "nothing"
		if len(loaded) > 0 {
			what = strings.Join(loaded, ", ")
		}
		return s.mismatch(what, "the host does not have image "+short(id))
	}
	if err != nil {
		return fmt.Errorf("inspect the loaded image %s on the host: %w", short(id), err)
	}
	if got.ID != id {
		return s.mismatch(got.ID, "its ID differs from the built image's")
	}
	return s.tag(ctx, id)
}

func (s *shipment) mismatch(got, why string) error {
	return fmt.Errorf("docker load on the host loaded %s, want image %s: %s; it was not tagged: "+
		"deploy again, and if it happens again compare `docker image inspect` on both machines", got, s.img.ID, why)
}

// tag names the image ref on the destination, unless ref is an ID.
func (s *shipment) tag(ctx context.Context, id string) error {
	if isID(s.ref, s.img.ID) {
		return nil
	}
	if err := s.dst.ImageTag(ctx, id, s.ref); err != nil {
		return fmt.Errorf("tag image %s as %s on the host: %w", short(id), s.ref, err)
	}
	return nil
}

// usesContainerd reports whether the Engine keeps images in containerd.
func usesContainerd(info system.Info) bool {
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == containerdStore {
			return true
		}
	}
	return false
}

// isID reports whether ref names the image by its ID (whole or a prefix).
func isID(ref, id string) bool {
	hex := strings.TrimPrefix(id, "sha256:")
	r := strings.TrimPrefix(ref, "sha256:")
	return len(r) >= 12 && strings.HasPrefix(hex, r)
}

func short(id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 {
		return hex[:12]
	}
	return hex
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
