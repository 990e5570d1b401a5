package ship

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
)

// inspectors bounds the image inspections in flight at once: a host with
// hundreds of images answers in a few round trips instead of hundreds.
const inspectors = 4

// chainIDs turns an image's layer diff IDs into the chain ID of each
// prefix: the ID under which the classic image store keeps that layer on
// top of its parents. The first is the first diff ID; each next one is
// sha256 of "<previous chain ID> <diff ID>".
func chainIDs(diffIDs []string) []string {
	chains := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			chains[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(chains[i-1] + " " + d))
		chains[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return chains
}

// inspectAll returns the layer diff IDs of each image, a few at a time.
// An image removed since it was listed is left out.
func inspectAll(ctx context.Context, e Engine, ids []string) (map[string][]string, error) {
	var (
		mu    sync.Mutex
		found = map[string][]string{}
		first error
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(inspectors, len(ids)) {
		wg.Go(func() {
			for id := range next {
				img, err := e.ImageInspect(ctx, id)
				mu.Lock()
				switch {
				case cerrdefs.IsNotFound(err):
				case err != nil:
					if first == nil {
						first = fmt.Errorf("inspect the host's image %s: %w", short(id), err)
						cancel()
					}
				default:
					found[id] = img.RootFS.Layers
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, id := range ids {
		select {
		case next <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return found, nil
}
