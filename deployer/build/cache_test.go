package build

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/system"
	bkclient "github.com/moby/buildkit/client"
)

func TestParseCache(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	type attrs = map[string]string
	for _, tc := range []struct {
		in      string
		to      bool
		want    bkclient.CacheOptionsEntry
		wantErr string
	}{
		{in: "type=local,src=/tmp/cache", want: entry("local", attrs{"src": "/tmp/cache"})},
		{in: "type=local,src=cache", want: entry("local", attrs{"src": filepath.Join(wd, "cache")})},
		{in: "type=local,dest=/tmp/cache,mode=max", to: true, want: entry("local", attrs{"dest": "/tmp/cache", "mode": "max"})},
		{in: " Type=local, DEST=/tmp/c", to: true, want: entry("local", attrs{"dest": "/tmp/c"})},
		{in: `type=local,"dest=/tmp/a,b"`, to: true, want: entry("local", attrs{"dest": "/tmp/a,b"})},
		{in: "type=gha,scope=api,mode=max", to: true, want: entry("gha", attrs{"scope": "api", "mode": "max"})},
		{in: "type=gha", want: entry("gha", attrs{})},
		{in: "type=registry,ref=ghcr.io/o/app:cache", want: entry("registry", attrs{"ref": "ghcr.io/o/app:cache"})},
		{in: "ghcr.io/o/app:cache", want: entry("registry", attrs{"ref": "ghcr.io/o/app:cache"})},
		{in: "type=inline", to: true, want: entry("inline", attrs{})},
		{in: "type=s3,region=eu-west-1,bucket=b,name=api", to: true, want: entry("s3", attrs{"region": "eu-west-1", "bucket": "b", "name": "api"})},
		{in: "type=registry,ref=x,image-manifest=true,oci-mediatypes=true", to: true,
			want: entry("registry", attrs{"ref": "x", "image-manifest": "true", "oci-mediatypes": "true"})},

		{in: "", wantErr: "--cache-from: empty value: want type=…,key=value"},
		{in: "src=/tmp/cache", wantErr: "--cache-from src=/tmp/cache: no type=: give one of azblob, gha, inline, local, registry, s3"},
		{in: "type=lcoal,src=/x", wantErr: `--cache-from type=lcoal,src=/x: unknown cache type "lcoal": want one of azblob, gha, inline, local, registry, s3`},
		{in: "type=local", wantErr: "--cache-from type=local: type=local needs src="},
		{in: "type=local,src=/x", to: true, wantErr: "--cache-to type=local,src=/x: type=local needs dest="},
		{in: "type=registry", to: true, wantErr: "--cache-to type=registry: type=registry needs ref="},
		{in: "type=inline", wantErr: "--cache-from type=inline: inline is only a --cache-to; to read an image's inline cache use type=registry,ref=IMAGE"},
		{in: "type=local,dest", to: true, wantErr: `--cache-to: "dest" is not key=value`},
		{in: `type=local,"dest=/x`, to: true, wantErr: "--cache-to type=local,\"dest=/x: parse error"},
		// A credential never reaches a message.
		{in: "type=gah,token=t0k3n", wantErr: `--cache-from type=gah,token=***: unknown cache type "gah"`},
		{in: "type=gha,token", wantErr: `--cache-from: "token" is not key=value`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			parse := ParseCacheFrom
			if tc.to {
				parse = ParseCacheTo
			}
			got, err := parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v\nwant %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "t0k3n") {
					t.Fatalf("the token is in the error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func entry(typ string, attrs map[string]string) bkclient.CacheOptionsEntry {
	return bkclient.CacheOptionsEntry{Type: typ, Attrs: attrs}
}

func TestFillGHA(t *testing.T) {
	type env = map[string]string
	runner := env{
		"ACTIONS_RUNTIME_TOKEN":    "t0k3n",
		"ACTIONS_RESULTS_URL":      "https://results-receiver.actions.githubusercontent.com/",
		"ACTIONS_CACHE_URL":        "https://artifactcache.actions.githubusercontent.com/x/",
		"ACTIONS_CACHE_SERVICE_V2": "true",
	}
	for _, tc := range []struct {
		name, in string
		env      env
		want     map[string]string
	}{
		{"v2 runner", "type=gha,scope=s", runner, map[string]string{
			"scope": "s", "token": "t0k3n",
			"url_v2": "https://results-receiver.actions.githubusercontent.com/",
			"url":    "https://artifactcache.actions.githubusercontent.com/x/",
		}},
		{"v1 runner", "type=gha", env{"ACTIONS_RUNTIME_TOKEN": "t0k3n", "ACTIONS_CACHE_URL": "https://cache/"},
			map[string]string{"token": "t0k3n", "url": "https://cache/"}},
		{"results url only", "type=gha", env{"ACTIONS_RUNTIME_TOKEN": "t0k3n", "ACTIONS_RESULTS_URL": "https://results/"},
			map[string]string{"token": "t0k3n", "url": "https://results/"}},
		{"given values win", "type=gha,token=mine,url=https://mine/,version=1", runner,
			map[string]string{"token": "mine", "url": "https://mine/", "version": "1"}},
		{"outside Actions", "type=gha", env{}, map[string]string{}},
		{"not gha", "type=local,src=/x", runner, map[string]string{"src": "/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := parseCache(tc.in, false)
			if err != nil {
				t.Fatal(err)
			}
			before := maps.Clone(e.Attrs)
			got := fillGHA(e, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if !reflect.DeepEqual(got.Attrs, tc.want) {
				t.Fatalf("attrs %v\nwant %v", got.Attrs, tc.want)
			}
			if !reflect.DeepEqual(e.Attrs, before) {
				t.Errorf("fillGHA changed its argument's attrs")
			}
			if s := got.String(); strings.Contains(s, "t0k3n") {
				t.Errorf("String shows the token: %s", s)
			}
		})
	}
}

func TestCacheForService(t *testing.T) {
	for _, tc := range []struct {
		in   string
		to   bool
		want map[string]string
	}{
		{"type=local,src=/c", false, map[string]string{"src": "/c/api"}},
		{"type=local,dest=/c,mode=max", true, map[string]string{"dest": "/c/api", "mode": "max"}},
		{"type=gha", true, map[string]string{"scope": "buildkit-api"}},
		{"type=gha,scope=main", false, map[string]string{"scope": "main-api"}},
		{"type=registry,ref=r/app:cache", true, map[string]string{"ref": "r/app:cache"}},
		{"type=inline", true, map[string]string{}},
	} {
		e, err := parseCache(tc.in, tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.forService("api").Attrs; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCacheSupport(t *testing.T) {
	classic := &Builder{name: "engine", caps: engineCaps(system.Info{ServerVersion: "20.10.24"})}
	containerd := &Builder{name: "engine", caps: engineCaps(system.Info{ServerVersion: "29.0.0", DriverStatus: [][2]string{{"driver-type", "io.containerd.snapshotter.v1"}}})}
	standalone := &Builder{name: "unix:///run/buildkit/buildkitd.sock", caps: standaloneCaps}
	gha := "type=gha,token=t0k3n,url=https://results/"
	for _, tc := range []struct {
		b        *Builder
		from, to []string
		want     string // the error; empty when supported
	}{
		{classic, nil, []string{"type=inline"}, ""},
		{classic, []string{"type=local,src=/c", "type=registry,ref=r/app"}, nil, ""},
		{classic, nil, []string{"type=local,dest=/c"}, `builder engine (the Docker Engine's built-in BuildKit, Engine 20.10.24 with the classic image store) cannot export a "local" cache (it can export: inline): use a standalone buildkitd (scripts/buildkitd start, then --builder unix:///…/buildkitd.sock), or --cache-to type=inline, or drop --cache-to type=local`},
		{classic, nil, []string{"type=registry,ref=r/app:cache"}, `cannot export a "registry" cache`},
		{classic, []string{gha}, nil, `cannot import a "gha" cache (it can import: local, registry): use a standalone buildkitd (scripts/buildkitd start, then --builder unix:///…/buildkitd.sock), or drop --cache-from type=gha`},
		{containerd, []string{gha}, []string{gha, "type=local,dest=/c"}, ""},
		{standalone, []string{gha, "type=local,src=/c"}, []string{gha, "type=local,dest=/c", "type=inline"}, ""},
		{standalone, nil, []string{"type=gha"}, "--cache-to type=gha has no token (ACTIONS_RUNTIME_TOKEN) and no url (ACTIONS_RESULTS_URL or ACTIONS_CACHE_URL): GitHub Actions gives these to JavaScript and container actions only"},
		{standalone, []string{"type=gha,token=x"}, nil, "--cache-from type=gha has no url (ACTIONS_RESULTS_URL or ACTIONS_CACHE_URL)"},
	} {
		t.Run(strings.Join(append(tc.from, tc.to...), " "), func(t *testing.T) {
			for _, k := range []string{"ACTIONS_RUNTIME_TOKEN", "ACTIONS_RESULTS_URL", "ACTIONS_CACHE_URL", "ACTIONS_CACHE_SERVICE_V2"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			_, _, err := tc.b.cacheOptions("api", Options{CacheFrom: tc.from, CacheTo: tc.to})
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v\nwant %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "t0k3n"):
				t.Fatalf("the token is in the error: %v", err)
			}
		})
	}
}

func TestSkipMissingLocal(t *testing.T) {
	have := t.TempDir()
	write(t, filepath.Join(have, "index.json"), "{}", 0o644)
	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "missing")
	var from []cacheEntry
	for _, s := range []string{"type=local,src=" + have, "type=local,src=" + empty, "type=local,src=" + missing, "type=registry,ref=r/app"} {
		e, err := parseCache(s, false)
		if err != nil {
			t.Fatal(err)
		}
		from = append(from, e)
	}
	var notes []string
	kept := skipMissingLocal(from, func(s string) { notes = append(notes, s) })
	if len(kept) != 2 || kept[0].Attrs["src"] != have || kept[1].Type != "registry" {
		t.Errorf("kept %v, want the cache in %s and the registry one", kept, have)
	}
	want := []string{
		"no local cache in " + empty + " yet: building without it",
		"no local cache in " + missing + " yet: building without it",
	}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %q\nwant %q", notes, want)
	}
}
