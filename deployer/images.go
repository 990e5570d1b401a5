package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/deployer/build"
	"github.com/semalink/deploy-action/deployer/ship"
)

// Where images are built (Plan.Builder).
const (
	BuilderHost  = "host"  // the host Engine's BuildKit: its cache persists there; nothing to ship
	BuilderLocal = "local" // this machine's Engine's BuildKit, then only the missing layers are shipped
	// Anything else is a standalone buildkitd address: unix://, tcp://,
	// docker-container://NAME; its images go through this machine's Engine.
)

// images makes sure every service's image is on the host, pins it and
// sets rel.Images to the reference each will run: built ones by a tag
// derived from their content, pulled ones by theirs. A reference that only
// changes when the content does keeps a no-op redeploy from recreating
// anything, and lets a rollback run exactly what ran before.
//
// Pinning happens under the lock, where prune cannot remove a tag before
// the release that uses it is written.
func (t *target) images(ctx context.Context, rel *Release) (map[string]Image, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	p := t.plan.Project.Compose
	rel.Images = map[string]string{}
	out := map[string]Image{}
	for _, svc := range p.ServiceNames() {
		var img image.InspectResponse
		var err error
		if id, ok := t.built[svc]; ok {
			img, err = t.docker.ImageInspect(ctx, id)
		} else {
			img, err = ensureImage(ctx, t.docker, p.Services[svc].Image, t.rep)
		}
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc, err)
		}
		ref := fmt.Sprintf("%s-%s:%s", t.plan.Name, strings.ToLower(svc), strings.TrimPrefix(img.ID, "sha256:")[:12])
		if err := t.docker.ImageTag(ctx, img.ID, ref); err != nil {
			return nil, fmt.Errorf("service %s: tag %s: %w", svc, ref, err)
		}
		rel.Images[svc] = ref
		out[svc] = Image{Ref: ref, ID: img.ID, Size: img.Size}
		t.rep.Printf("%s: %s (%s)", svc, ref, FormatBytes(img.Size))
	}
	// The builds' own tags have served once the pinned ones keep the images.
	t.dropBuildTags(ctx)
	return out, nil
}

// builtTag is a tag a build left on an Engine, removed once the image is
// pinned (or the deploy ends).
type builtTag struct {
	eng imageRemover
	ref string
}

func (t *target) dropBuildTags(ctx context.Context) {
	for _, b := range t.buildTags {
		_, _ = b.eng.ImageRemove(ctx, b.ref, image.RemoveOptions{})
	}
	t.buildTags = nil
}

// buildTag is what a build names its result until it is pinned; build
// is unique to the deploy, so two deploys never share one.
func buildTag(project, service, build string) string {
	return fmt.Sprintf("%s-%s:build-%s", project, strings.ToLower(service), build)
}

// removeStaleBuildTags removes the build tags of deploys that ended
// before pinning them (killed, or cut off): under the lock, those older
// than any deploy still building or waiting for the lock can be.
func (t *target) removeStaleBuildTags(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, hostStepTimeout)
	defer cancel()
	p := t.plan.Project.Compose
	stale := t.plan.Now().Add(-(buildTimeout + t.plan.LockTimeout + time.Hour)) // an hour for clocks that differ
	for _, svc := range p.ServiceNames() {
		if p.Services[svc].Build == nil {
			continue
		}
		list, err := t.docker.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", buildTag(t.plan.Name, svc, "*")))})
		if err != nil {
			t.rep.Warnf("list old build tags: %v", err)
			return
		}
		for _, img := range list {
			for _, ref := range img.RepoTags {
				_, tag, _ := strings.Cut(ref, ":build-")
				if len(tag) < len(releaseIDTime) {
					continue
				}
				if at, err := time.Parse(releaseIDTime, tag[:len(releaseIDTime)]); err == nil && at.Before(stale) {
					_, _ = t.docker.ImageRemove(ctx, ref, image.RemoveOptions{})
				}
			}
		}
	}
}

// buildAll builds every service with build: where the plan says and ships
// the results to the host when they were built elsewhere, before the
// deploy lock: a long build does not hold other deploys back, and what it
// adds to the host (images) changes nothing that runs. Services with the
// same build (an api and its migrate target of one context) are built
// once.
func (t *target) buildAll(ctx context.Context) error {
	p := t.plan.Project.Compose
	var services []string
	for _, svc := range p.ServiceNames() {
		if p.Services[svc].Build != nil {
			services = append(services, svc)
		}
	}
	if len(services) == 0 {
		return nil
	}
	done := t.rep.Step("build")
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	err := t.build(ctx, services)
	done(err)
	return err
}

func (t *target) build(ctx context.Context, services []string) error {
	p := t.plan.Project.Compose
	b, local, err := t.builder(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	if local != nil {
		t.local = local // until the deploy ends: its build tags go once pinned
		if t.platform == "" && !t.plan.Local {
			t.rep.Warnf("the host's Engine names an os/arch deployer does not know: images are built for the builder's own; if the host's differs, build with --builder host")
		}
	}
	opts := build.Options{CacheFrom: t.plan.CacheFrom, CacheTo: t.plan.CacheTo, Progress: t.rep.Output(), Mode: "plain"}
	if t.plan.Progress != nil {
		// A terminal's progress redraws lines: redacted write by write.
		opts.Progress, opts.Mode = redactWrites(t.plan.Progress, t.plan.Secrets), "auto"
	}
	defer flush(opts.Progress)
	buildID := newReleaseID(t.plan.Now(), t.plan.Commit)
	t.built = map[string]string{}
	done := map[string]string{} // build config → image ID on the host
	for _, svc := range services {
		key, _ := json.Marshal(p.Services[svc].Build)
		if id, ok := done[string(key)]; ok {
			t.built[svc] = id
			continue
		}
		tag := buildTag(t.plan.Name, svc, buildID)
		req, err := buildRequest(t.plan.Project, svc, tag)
		if err != nil {
			return err
		}
		if local != nil && !t.plan.Local {
			req.Platform = t.platform // an amd64 runner building for an arm64 droplet
		}
		res, err := b.Build(ctx, req, opts)
		if err != nil {
			return err
		}
		imageID := res.ImageID
		if local == nil || t.plan.Local {
			t.buildTags = append(t.buildTags, builtTag{t.docker, tag})
		} else {
			t.buildTags = append(t.buildTags, builtTag{local, tag})
			if imageID, err = t.ship(ctx, local, tag); err != nil {
				return fmt.Errorf("ship %s: %w", svc, err)
			}
			t.buildTags = append(t.buildTags, builtTag{t.docker, tag})
		}
		t.built[svc], done[string(key)] = imageID, imageID
	}
	return nil
}

// builder connects the BuildKit the plan names. For a builder other than
// the host's, it also returns this machine's Engine, where the images land
// before they are shipped.
func (t *target) builder(ctx context.Context) (*build.Builder, Engine, error) {
	switch t.plan.Builder {
	case "", BuilderHost:
		b, err := build.Engine(ctx, t.docker, build.WithName("the BuildKit of "+t.host.Name()))
		return b, nil, err
	}
	local, err := localEngine()
	if err != nil {
		return nil, nil, err
	}
	var b *build.Builder
	if t.plan.Builder == BuilderLocal {
		b, err = build.Engine(ctx, local, build.WithName("this machine's BuildKit"))
	} else {
		b, err = build.Dial(ctx, t.plan.Builder, build.WithLoad(build.EngineLoad(local)))
	}
	if err != nil {
		local.Close()
		return nil, nil, err
	}
	return b, local, nil
}

// ship sends an image built on this machine to the host: only the layers
// the host lacks cross the connection.
func (t *target) ship(ctx context.Context, local Engine, ref string) (string, error) {
	var last time.Time
	stats, err := ship.Ship(ctx, local, t.docker, ref, ship.Options{Progress: func(p ship.Progress) {
		if time.Since(last) < 2*time.Second {
			return
		}
		last = time.Now()
		t.rep.Printf("%s: sent %s of about %s, %s/s, %s left", ref, FormatBytes(p.Sent), FormatBytes(p.Total), FormatBytes(int64(p.Rate)), p.Left.Round(time.Second))
	}})
	t.shipped += stats.Sent
	if err != nil {
		return "", err
	}
	t.rep.Printf("%s: sent %s of %s (%d of %d layers were on the host already) in %s",
		ref, FormatBytes(stats.Sent), FormatBytes(stats.ImageSize), stats.Skipped, stats.Layers, stats.Took.Round(1e6))
	img, err := t.docker.ImageInspect(ctx, ref)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// buildRequest turns a service's build: section into a build request. Its
// secrets are read here, never by the builder from where it likes: a file
// must be a file of the project, and an environment: secret comes from the
// project's environment (what interpolation sees), never from this
// process's own variables.
func buildRequest(proj *project.Project, svc, tag string) (build.Request, error) {
	p := proj.Compose
	b := p.Services[svc].Build
	if strings.Contains(b.Context, "://") {
		return build.Request{}, fmt.Errorf("service %s: build context %s: remote contexts are not supported; check the source out in CI and build from the directory", svc, b.Context)
	}
	req := build.Request{
		Service: svc, Context: b.Context, Dockerfile: b.Dockerfile, Target: b.Target,
		Labels: b.Labels, Tag: tag, NoCache: b.NoCache,
		Args: map[string]string{}, Secrets: map[string][]byte{},
	}
	for _, k := range slices.Sorted(maps.Keys(b.Args)) {
		if v := b.Args[k]; v != nil {
			req.Args[k] = *v
		}
	}
	for _, s := range b.Secrets {
		def, ok := p.Secrets[s.Source]
		id := s.Source
		if s.Target != "" {
			id = s.Target
		}
		switch {
		case !ok:
			return req, fmt.Errorf("service %s: build secret %s is not declared under the top-level secrets:", svc, s.Source)
		case def.Environment != "":
			v, set := p.Environment[def.Environment]
			if !set {
				return req, fmt.Errorf("service %s: build secret %s comes from the variable %s, which is not set: give it in an env file or the env input (the deployer's own variables and the runner's are not passed to a project)", svc, s.Source, def.Environment)
			}
			req.Secrets[id] = []byte(v)
		case def.File != "":
			data, err := proj.Dir.ReadFile(def.File, project.MaxFileSize)
			if err != nil {
				return req, fmt.Errorf("service %s: build secret %s: %w (write the file inside the project before the deploy)", svc, s.Source, err)
			}
			req.Secrets[id] = data
		default:
			return req, fmt.Errorf("service %s: build secret %s has neither file: nor environment:", svc, s.Source)
		}
	}
	return req, nil
}

// ensureImage returns ref as the host has it, pulling it when missing.
func ensureImage(ctx context.Context, eng Engine, ref string, rep Reporter) (image.InspectResponse, error) {
	if ref == "" {
		return image.InspectResponse{}, errors.New("no image and no build: give the service image: or build:")
	}
	if img, err := eng.ImageInspect(ctx, ref); err == nil {
		return img, nil
	}
	rep.Printf("pulling %s", ref)
	rc, err := eng.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return image.InspectResponse{}, fmt.Errorf("pull %s: %w (the host must reach the registry; for a private one run docker login on the host)", ref, err)
	}
	defer rc.Close()
	if err := readStream(rc); err != nil {
		return image.InspectResponse{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := eng.ImageInspect(ctx, ref)
	if err != nil {
		return image.InspectResponse{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

// readStream reads the Engine's JSON message stream to its end, returning
// the error it ends with, if any.
func readStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(strings.TrimSpace(m.Error))
		}
	}
}

type imageRemover interface {
	ImageRemove(ctx context.Context, image string, options image.RemoveOptions) ([]image.DeleteResponse, error)
}

// removeImage drops a pinned tag no kept release uses. An image still in
// use by a container stays: the Engine refuses, and that is what we want.
func removeImage(ctx context.Context, eng imageRemover, ref string) {
	_, _ = eng.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true})
}

// FormatBytes writes a size as people read it: 9.9 MiB, 512 B.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
