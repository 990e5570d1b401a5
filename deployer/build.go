package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/moby/go-archive"
	"github.com/moby/patternmatcher/ignorefile"
)

// engine is the part of the Docker Engine API the image steps use.
type engine interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
}

// pinImages makes sure every service's image is on the host and returns
// the reference each service will run: a built image by a tag derived from
// its content, a pulled image by its digest. A reference that only changes
// when the content does keeps a no-op redeploy from recreating anything,
// and lets a rollback run exactly what ran before.
func pinImages(ctx context.Context, eng engine, p *types.Project, name, releaseID string, rep Reporter) (map[string]string, error) {
	pinned := map[string]string{}
	built := map[string]string{} // the same build (a migrate target of the api's context) runs once
	for _, svc := range p.ServiceNames() {
		s := p.Services[svc]
		var (
			id  string
			err error
		)
		if s.Build != nil {
			key, _ := json.Marshal(s.Build)
			if id = built[string(key)]; id == "" {
				id, err = buildImage(ctx, eng, name, svc, releaseID, s.Build, rep)
				built[string(key)] = id
			}
		} else {
			id, err = ensureImage(ctx, eng, s.Image, rep)
		}
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc, err)
		}
		ref, err := pin(ctx, eng, name, svc, id)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc, err)
		}
		pinned[svc] = ref
		rep.Printf("%s: %s", svc, ref)
	}
	return pinned, nil
}

// pin returns a stable reference for image id: <project>-<service>:<12 hex
// of the ID>, tagged now.
func pin(ctx context.Context, eng engine, project, service, id string) (string, error) {
	ref := fmt.Sprintf("%s-%s:%s", project, strings.ToLower(service), strings.TrimPrefix(id, "sha256:")[:12])
	if err := eng.ImageTag(ctx, id, ref); err != nil {
		return "", fmt.Errorf("tag %s: %w", ref, err)
	}
	return ref, nil
}

// ensureImage returns the ID of ref on the host, pulling it when missing.
func ensureImage(ctx context.Context, eng engine, ref string, rep Reporter) (string, error) {
	if ref == "" {
		return "", errors.New("no image and no build: give the service image: or build:")
	}
	if img, err := eng.ImageInspect(ctx, ref); err == nil {
		return img.ID, nil
	}
	rep.Printf("pulling %s", ref)
	rc, err := eng.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return "", fmt.Errorf("pull %s: %w (the host must reach the registry; for a private one run docker login on the host)", ref, err)
	}
	defer rc.Close()
	if err := readBuildStream(rc, io.Discard); err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := eng.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	return img.ID, nil
}

// buildImage builds a service on the host's Engine and returns the image ID.
func buildImage(ctx context.Context, eng engine, project, service, releaseID string, b *types.BuildConfig, rep Reporter) (string, error) {
	if strings.Contains(b.Context, "://") {
		return "", fmt.Errorf("build context %s: remote contexts are not supported; check the source out in CI and build from the directory", b.Context)
	}
	excludes, err := dockerignore(b.Context)
	if err != nil {
		return "", err
	}
	tar, err := archive.TarWithOptions(b.Context, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		return "", fmt.Errorf("pack build context %s: %w", b.Context, err)
	}
	defer tar.Close()
	dockerfile := b.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	tag := fmt.Sprintf("%s-%s:build-%s", project, strings.ToLower(service), releaseID)
	resp, err := eng.ImageBuild(ctx, tar, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: filepath.ToSlash(dockerfile), Target: b.Target,
		BuildArgs: b.Args, Labels: b.Labels, NoCache: b.NoCache, Remove: true, ForceRemove: true,
	})
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	defer resp.Body.Close()
	// The build's own output is shown when it fails, where it explains why.
	var log bytes.Buffer
	if err := readBuildStream(resp.Body, &log); err != nil {
		lines := strings.Split(strings.TrimSpace(log.String()), "\n")
		rep.Output().Write([]byte(strings.Join(lines[max(0, len(lines)-30):], "\n") + "\n"))
		return "", fmt.Errorf("build: %w (fix the Dockerfile and try again; nothing was deployed)", err)
	}
	img, err := eng.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("build: inspect the result: %w", err)
	}
	return img.ID, nil
}

func dockerignore(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	return ignorefile.ReadAll(f)
}

// readBuildStream reads the Engine's JSON message stream, copying the
// build's output to w and returning the error it ends with, if any.
func readBuildStream(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(strings.TrimSpace(m.Error))
		}
		if m.Stream != "" {
			io.WriteString(w, m.Stream)
		}
	}
}

// removeImage drops a pinned tag no kept release uses. An image still in
// use by a container stays: the Engine refuses, and that is what we want.
func removeImage(ctx context.Context, eng interface {
	ImageRemove(ctx context.Context, image string, options image.RemoveOptions) ([]image.DeleteResponse, error)
}, ref string) {
	_, _ = eng.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true})
}
