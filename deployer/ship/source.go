package ship

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// Archive is a Source backed by a `docker save` archive of one image, on
// disk: a build saved as a CI artifact ships without a Docker Engine on
// the machine that ships it. Its image ID is the digest of the image's
// config, as in the classic image store.
type Archive struct {
	file string
	img  image.InspectResponse
}

var _ Source = (*Archive)(nil)

// OpenArchive reads the manifest and config of the docker save archive at
// file. The archive must hold exactly one image.
func OpenArchive(file string) (*Archive, error) {
	a, err := openArchive(file)
	if err != nil {
		return nil, fmt.Errorf("open image archive %s: %w", file, err)
	}
	return a, nil
}

func openArchive(file string) (*Archive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	manifest, err := findEntry(f, manifestFile)
	if err != nil {
		return nil, err
	}
	var ms []manifestEntry
	if err := json.Unmarshal(manifest, &ms); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("it holds %d images, want one: save one image per archive", len(ms))
	}
	m := ms[0]
	config, err := findEntry(f, path.Clean(m.Config))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(config)
	id := "sha256:" + hex.EncodeToString(sum[:])
	var c struct {
		Architecture string    `json:"architecture"`
		OS           string    `json:"os"`
		Variant      string    `json:"variant"`
		Created      time.Time `json:"created"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("image config %s: %w", m.Config, err)
	}
	if len(c.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest.json lists %d layers, the config %d", len(m.Layers), len(c.RootFS.DiffIDs))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	l, err := scan(f, id, len(m.Layers))
	if err != nil {
		return nil, err
	}
	var size int64
	sizes := map[string]int64{}
	for _, e := range l.entries {
		sizes[e.name] = e.size
	}
	for _, d := range uniq(l.data) {
		size += sizes[d]
	}
	img := image.InspectResponse{
		ID:           id,
		RepoTags:     m.RepoTags,
		Architecture: c.Architecture,
		Os:           c.OS,
		Variant:      c.Variant,
		Size:         size,
		RootFS:       image.RootFS{Type: c.RootFS.Type, Layers: c.RootFS.DiffIDs},
	}
	if !c.Created.IsZero() {
		img.Created = c.Created.Format(time.RFC3339Nano)
	}
	return &Archive{file: file, img: img}, nil
}

// findEntry returns the content of the regular file name in the archive.
func findEntry(f *os.File, name string) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("no %s in the archive: not docker save format", name)
		}
		if err != nil {
			return nil, err
		}
		if path.Clean(h.Name) == name && h.Typeflag == tar.TypeReg {
			return readMeta(tr, h)
		}
	}
}

// ID is the image's ID.
func (a *Archive) ID() string { return a.img.ID }

// ImageInspect describes the archive's image if ref names it: its ID, an
// ID prefix of 12 digits or more, or one of the names it was saved under.
func (a *Archive) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if !a.names(ref) {
		return image.InspectResponse{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no such image %s in %s", ref, a.file))
	}
	return a.img, nil
}

// ImageSave opens the archive, which holds the one image asked for.
func (a *Archive) ImageSave(_ context.Context, refs []string, _ ...client.ImageSaveOption) (io.ReadCloser, error) {
	if len(refs) != 1 || !a.names(refs[0]) {
		return nil, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("%s holds image %s only, not %s", a.file, short(a.img.ID), strings.Join(refs, ", ")))
	}
	return os.Open(a.file)
}

func (a *Archive) names(ref string) bool {
	if isID(ref, a.img.ID) {
		return true
	}
	if !strings.Contains(path.Base(ref), ":") {
		ref += ":latest"
	}
	return slices.Contains(a.img.RepoTags, ref)
}

func uniq(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}
