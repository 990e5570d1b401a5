package build

import (
	"encoding/csv"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/system"
	bkclient "github.com/moby/buildkit/client"
)

// cacheTypes are the cache backends BuildKit knows, for --cache-from and
// --cache-to.
var cacheTypes = []string{"azblob", "gha", "inline", "local", "registry", "s3"}

// ParseCacheFrom parses one --cache-from value in BuildKit's syntax:
// comma-separated key=value pairs with a type (type=local,src=DIR;
// type=gha,scope=…; type=registry,ref=…), values CSV-quoted when they hold
// a comma. A value with no "=" is a registry reference, as in buildx.
func ParseCacheFrom(s string) (bkclient.CacheOptionsEntry, error) {
	e, err := parseCache(s, false)
	return e.entry(), err
}

// ParseCacheTo parses one --cache-to value in BuildKit's syntax
// (type=local,dest=DIR,mode=max; type=inline; type=gha,…).
func ParseCacheTo(s string) (bkclient.CacheOptionsEntry, error) {
	e, err := parseCache(s, true)
	return e.entry(), err
}

// cacheEntry is one parsed cache option. Its String hides credentials.
type cacheEntry struct {
	Type  string
	Attrs map[string]string
	to    bool // a --cache-to
}

func parseCache(s string, to bool) (cacheEntry, error) {
	flag := "--cache-from"
	if to {
		flag = "--cache-to"
	}
	e := cacheEntry{Attrs: map[string]string{}, to: to}
	s = strings.TrimSpace(s)
	if s == "" {
		return e, fmt.Errorf("%s: empty value: want type=…,key=value", flag)
	}
	if !strings.Contains(s, "=") {
		e.Type, e.Attrs["ref"] = "registry", s
	} else {
		r := csv.NewReader(strings.NewReader(s))
		r.TrimLeadingSpace = true
		fields, err := r.Read()
		if err != nil {
			return e, fmt.Errorf("%s %s: %w", flag, redactValue(s), err)
		}
		for _, f := range fields {
			k, v, ok := strings.Cut(f, "=")
			k = strings.ToLower(strings.TrimSpace(k))
			if !ok || k == "" {
				return e, fmt.Errorf("%s: %q is not key=value", flag, redactField(f))
			}
			if k == "type" {
				e.Type = strings.TrimSpace(v)
			} else {
				e.Attrs[k] = v
			}
		}
	}
	if e.Type == "" {
		return e, fmt.Errorf("%s %s: no type=: give one of %s", flag, redactValue(s), strings.Join(cacheTypes, ", "))
	}
	if !slices.Contains(cacheTypes, e.Type) {
		return e, fmt.Errorf("%s %s: unknown cache type %q: want one of %s", flag, redactValue(s), e.Type, strings.Join(cacheTypes, ", "))
	}
	need := ""
	switch {
	case e.Type == "local" && to:
		need = "dest"
	case e.Type == "local":
		need = "src"
	case e.Type == "registry":
		need = "ref"
	case e.Type == "inline" && !to:
		return e, fmt.Errorf("--cache-from %s: inline is only a --cache-to; to read an image's inline cache use type=registry,ref=IMAGE", redactValue(s))
	}
	if need != "" && e.Attrs[need] == "" {
		return e, fmt.Errorf("%s %s: type=%s needs %s=", flag, redactValue(s), e.Type, need)
	}
	if e.Type == "local" {
		abs, err := filepath.Abs(e.Attrs[need])
		if err != nil {
			return e, fmt.Errorf("%s %s: %w", flag, redactValue(s), err)
		}
		e.Attrs[need] = abs
	}
	return e, nil
}

func (e cacheEntry) entry() bkclient.CacheOptionsEntry {
	return bkclient.CacheOptionsEntry{Type: e.Type, Attrs: maps.Clone(e.Attrs)}
}

// with returns a copy of e with attribute k set to v.
func (e cacheEntry) with(k, v string) cacheEntry {
	e.Attrs = maps.Clone(e.Attrs)
	e.Attrs[k] = v
	return e
}

// String is e in BuildKit's syntax, credentials hidden.
func (e cacheEntry) String() string {
	parts := []string{"type=" + e.Type}
	keys := slices.Sorted(maps.Keys(e.Attrs))
	for _, k := range keys {
		v := e.Attrs[k]
		if secretAttr(k) {
			v = "***"
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// secretAttr tells the cache attributes that hold credentials: gha's
// token and ghtoken, s3's and azblob's keys.
func secretAttr(k string) bool {
	return strings.Contains(k, "token") || strings.Contains(k, "secret") || strings.Contains(k, "password")
}

func redactField(f string) string {
	if k, _, ok := strings.Cut(f, "="); ok && secretAttr(strings.ToLower(k)) {
		return k + "=***"
	}
	return f
}

func redactValue(s string) string {
	fields := strings.Split(s, ",")
	for i, f := range fields {
		fields[i] = redactField(f)
	}
	return strings.Join(fields, ",")
}

// fillGHA gives a gha cache what buildx gives it inside GitHub Actions:
// the runtime token and the cache service's URL from the environment the
// runner sets for actions, unless the value says otherwise.
func fillGHA(e cacheEntry, getenv func(string) (string, bool)) cacheEntry {
	if e.Type != "gha" {
		return e
	}
	e.Attrs = maps.Clone(e.Attrs)
	version := e.Attrs["version"]
	if version == "" {
		if v, ok := getenv("ACTIONS_CACHE_SERVICE_V2"); ok {
			if b, err := strconv.ParseBool(v); err == nil && b {
				version = "2"
			}
		}
	}
	if _, ok := e.Attrs["token"]; !ok {
		if v, ok := getenv("ACTIONS_RUNTIME_TOKEN"); ok {
			e.Attrs["token"] = v
		}
	}
	if _, ok := e.Attrs["url_v2"]; !ok && version == "2" {
		if v, ok := getenv("ACTIONS_RESULTS_URL"); ok {
			e.Attrs["url_v2"] = v
		}
	}
	if _, ok := e.Attrs["url"]; !ok {
		if v, ok := getenv("ACTIONS_CACHE_URL"); ok {
			e.Attrs["url"] = v
		} else if v, ok := getenv("ACTIONS_RESULTS_URL"); ok {
			e.Attrs["url"] = v
		}
	}
	return e
}

// forService keeps one service's cache apart from the others' when every
// service is built with the same options: a local cache lives in a
// directory named after the service under the one given, a gha cache in a
// scope that ends with the service's name. Without this the services would
// overwrite each other's cache (and with the local swap, throw it away).
func (e cacheEntry) forService(service string) cacheEntry {
	switch e.Type {
	case "local":
		k := "src"
		if e.to {
			k = "dest"
		}
		return e.with(k, filepath.Join(e.Attrs[k], service))
	case "gha":
		scope := e.Attrs["scope"]
		if scope == "" {
			scope = "buildkit" // BuildKit's default
		}
		return e.with("scope", scope+"-"+service)
	}
	return e
}

// caps are the cache types a builder can import and export.
type caps struct {
	what            string // how messages describe the builder
	from, to        []string
	containerdStore bool // the Engine keeps images in containerd's store
}

var standaloneCaps = caps{
	what: "a standalone buildkitd",
	from: []string{"azblob", "gha", "local", "registry", "s3"},
	to:   []string{"azblob", "gha", "inline", "local", "registry", "s3"},
}

// engineCaps are what the Engine's built-in BuildKit can do with the
// cache. With the classic image store (the only one of Engine 20.10, and
// the default of most later ones) it exports only an inline cache, and
// imports local caches and registry images; with the containerd image
// store it has BuildKit's own cache backends (moby's
// builder/builder-next/controller.go).
func engineCaps(info system.Info) caps {
	for _, kv := range info.DriverStatus {
		if len(kv) == 2 && kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			return caps{
				what: fmt.Sprintf("the Docker Engine's built-in BuildKit, Engine %s with the containerd image store", info.ServerVersion),
				from: []string{"gha", "local", "registry"},
				to:   []string{"gha", "inline", "local", "registry"},

				containerdStore: true,
			}
		}
	}
	return caps{
		what: fmt.Sprintf("the Docker Engine's built-in BuildKit, Engine %s with the classic image store", info.ServerVersion),
		from: []string{"local", "registry"},
		to:   []string{"inline"},
	}
}

// cacheOptions parses o's cache options for one service's build, fills in
// what the environment gives, and refuses what the builder cannot do.
func (b *Builder) cacheOptions(service string, o Options) (from, to []cacheEntry, err error) {
	for _, s := range o.CacheFrom {
		e, err := parseCache(s, false)
		if err != nil {
			return nil, nil, err
		}
		from = append(from, fillGHA(e.forService(service), os.LookupEnv))
	}
	for _, s := range o.CacheTo {
		e, err := parseCache(s, true)
		if err != nil {
			return nil, nil, err
		}
		to = append(to, fillGHA(e.forService(service), os.LookupEnv))
	}
	for _, e := range slices.Concat(from, to) {
		if err := b.supports(e); err != nil {
			return nil, nil, err
		}
	}
	return from, to, nil
}

// supports says, before anything is built, why the builder cannot use e.
func (b *Builder) supports(e cacheEntry) error {
	flag, verb, list := "--cache-from", "import", b.caps.from
	if e.to {
		flag, verb, list = "--cache-to", "export", b.caps.to
	}
	if !slices.Contains(list, e.Type) {
		fix := fmt.Sprintf("use a standalone buildkitd (scripts/buildkitd start, then --builder unix:///…/buildkitd.sock), or drop %s type=%s", flag, e.Type)
		if e.to && slices.Contains(list, "inline") {
			fix = fmt.Sprintf("use a standalone buildkitd (scripts/buildkitd start, then --builder unix:///…/buildkitd.sock), or --cache-to type=inline, or drop --cache-to type=%s", e.Type)
		}
		return fmt.Errorf("builder %s (%s) cannot %s a %q cache (it can %s: %s): %s",
			b.name, b.caps.what, verb, e.Type, verb, strings.Join(list, ", "), fix)
	}
	if e.Type == "gha" {
		var missing []string
		if e.Attrs["token"] == "" {
			missing = append(missing, "token (ACTIONS_RUNTIME_TOKEN)")
		}
		if e.Attrs["url"] == "" && e.Attrs["url_v2"] == "" {
			missing = append(missing, "url (ACTIONS_RESULTS_URL or ACTIONS_CACHE_URL)")
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s type=gha has no %s: GitHub Actions gives these to JavaScript and container actions only, not to run: steps or composite actions: add a step that exports them (uses: crazy-max/ghaction-github-runtime@v3) before the deploy, or give them in the value", flag, strings.Join(missing, " and no "))
		}
	}
	return nil
}

// skipMissingLocal drops local cache imports whose directory does not
// exist yet (the first build, or a cache the CI's cache step did not
// restore): a cache is an optimisation, its absence no error.
func skipMissingLocal(from []cacheEntry, notef func(string)) []cacheEntry {
	kept := from[:0:0]
	for _, e := range from {
		if e.Type == "local" {
			if _, err := os.Stat(filepath.Join(e.Attrs["src"], "index.json")); err != nil {
				notef(fmt.Sprintf("no local cache in %s yet: building without it", e.Attrs["src"]))
				continue
			}
		}
		kept = append(kept, e)
	}
	return kept
}
