package deployer

import (
	"context"
	"errors"
	"fmt"
)

// liveImages takes the images of the services with build: from the live
// release instead of building them (Plan.Redeploy): after a host reboot or
// a changed secret, the same code runs with the plan's configuration. The
// new release records the live one's commit: its code is what runs.
func (t *target) liveImages(ctx context.Context, live string) error {
	if live == "" {
		return errors.New("nothing to redeploy: no release is live on this host; deploy first")
	}
	rel, err := t.readRelease(ctx, live)
	if err != nil {
		return err
	}
	p := t.plan.Project.Compose
	t.built = map[string]string{}
	for _, svc := range p.ServiceNames() {
		if p.Services[svc].Build == nil {
			continue
		}
		ref, ok := rel.Images[svc]
		if !ok {
			return fmt.Errorf("service %s has no image in the live release %s (it is new since): deploy to build it", svc, live)
		}
		img, err := t.docker.ImageInspect(ctx, ref)
		if err != nil {
			return fmt.Errorf("service %s: image %s of the live release: %w; deploy to build it again", svc, ref, err)
		}
		t.built[svc] = img.ID
	}
	t.rep.Printf("redeploying the images of release %s", live)
	t.source = rel.Commit // what the images were built from
	return nil
}
