package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	bkclient "github.com/moby/buildkit/client"
)

// ImageLoader is the part of the Docker Engine API that EngineLoad uses;
// *client.Client has it.
type ImageLoader interface {
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
}

// EngineLoad loads image tarballs into a Docker Engine (docker load): the
// usual LoadFunc for a standalone buildkitd.
func EngineLoad(docker ImageLoader) LoadFunc {
	return func(ctx context.Context, tarball io.Reader) error {
		resp, err := docker.ImageLoad(ctx, tarball, client.ImageLoadWithQuiet(true))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if !resp.JSON {
			_, err := io.Copy(io.Discard, resp.Body)
			return err
		}
		// The Engine answers 200 and then tells a failure in the stream.
		dec := json.NewDecoder(resp.Body)
		for {
			var m struct {
				Error       string `json:"error"`
				ErrorDetail struct {
					Message string `json:"message"`
				} `json:"errorDetail"`
			}
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return fmt.Errorf("read the Engine's answer: %w", err)
			}
			msg := m.Error
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			if msg = strings.TrimSpace(msg); msg != "" {
				return errors.New(msg)
			}
		}
	}
}

// loader runs a LoadFunc on the tarball BuildKit's docker exporter
// writes, while it writes it.
type loader struct {
	ctx  context.Context
	load LoadFunc
	mu   sync.Mutex
	pw   *io.PipeWriter
	done chan error
}

func newLoader(ctx context.Context, load LoadFunc) *loader {
	return &loader{ctx: ctx, load: load, done: make(chan error, 1)}
}

// export is the docker exporter whose output goes to the loader.
func (l *loader) export(tag string) bkclient.ExportEntry {
	attrs := map[string]string{}
	if tag != "" {
		attrs["name"] = tag
	}
	return bkclient.ExportEntry{Type: bkclient.ExporterDocker, Attrs: attrs, Output: l.output}
}

func (l *loader) output(map[string]string) (io.WriteCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pw != nil {
		return nil, errors.New("the builder exported the image twice")
	}
	pr, pw := io.Pipe()
	l.pw = pw
	go func() {
		err := l.load(l.ctx, pr)
		if err != nil {
			pr.CloseWithError(err) // the exporter's next write fails, and the build with it
		} else {
			_, _ = io.Copy(io.Discard, pr) // what the Engine did not read: tar padding
		}
		l.done <- err
	}()
	return pw, nil
}

// wait returns the load's error once the build has ended with solveErr:
// when the build failed, only a load that failed first (and so made the
// build fail) has an error worth telling.
func (l *loader) wait(solveErr error) error {
	l.mu.Lock()
	pw := l.pw
	l.mu.Unlock()
	switch {
	case pw == nil && solveErr == nil:
		return errors.New("the builder exported no image")
	case pw == nil:
		return nil
	case solveErr == nil:
		return <-l.done
	}
	select {
	case err := <-l.done:
		return err
	default:
	}
	pw.CloseWithError(solveErr)
	<-l.done
	return nil
}
