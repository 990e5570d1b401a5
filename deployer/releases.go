package deployer

import "context"

// HostReleases is the release history of one host, oldest first.
type HostReleases struct {
	Host     string    `json:"host"`
	Current  string    `json:"current"`
	Releases []Release `json:"releases"`
}

// Releases reads the release history of each of the plan's hosts. It
// changes nothing and takes no lock.
func Releases(ctx context.Context, plan *Plan, rep Reporter) ([]HostReleases, error) {
	p := plan.withDefaults()
	if err := p.validateTarget(); err != nil {
		return nil, err
	}
	var out []HostReleases
	err := eachHost(ctx, p, rep, nil, func(h Host) error {
		t := &target{plan: p, host: h, rep: rep}
		cur, err := t.current(ctx)
		if err != nil {
			return err
		}
		ids, err := t.releaseIDs(ctx)
		if err != nil {
			return err
		}
		hr := HostReleases{Host: h.Name(), Current: cur}
		// Errors are stored redacted; those of releases written before
		// that are redacted here, by the releases' own .env.
		secrets := append(t.releaseSecrets(ctx, ids...), p.Secrets...)
		for _, id := range ids {
			rel, err := t.readRelease(ctx, id)
			if err != nil {
				rel = &Release{ID: id, Status: "unreadable", Error: err.Error()}
			}
			rel.Error = Redact(rel.Error, secrets)
			hr.Releases = append(hr.Releases, *rel)
		}
		out = append(out, hr)
		return nil
	})
	return out, err
}
