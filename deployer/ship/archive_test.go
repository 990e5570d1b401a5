package ship

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestChainIDs(t *testing.T) {
	// From an Engine's layerdb: the layer whose parent chain is e703… and
	// whose diff is 639d… is kept under chain ID 084b….
	got := chainIDs([]string{
		"sha256:e703a9f793192164ff61b1cbbef9e2391739cdd169270a3170ca2d4ff48dfdd5",
		"sha256:639d9d48dbfc8d803bc1caca699fb8198b6dbc5a92c4284cfe92bd9ae56bc232",
	})
	want := []string{
		"sha256:e703a9f793192164ff61b1cbbef9e2391739cdd169270a3170ca2d4ff48dfdd5",
		"sha256:084bb9c505487e6ef558d19c215a9996e3b1c49e58c0a73b7e346e184a419fcb",
	}
	if !slices.Equal(got, want) {
		t.Errorf("chainIDs = %v, want %v", got, want)
	}
}

// saved is a docker save archive made here, laid out as Engine 20.10 lays
// it out: a directory per layer, the config, manifest.json, repositories.
// Layer 2 repeats layer 0, so its layer.tar is a symlink to layer 0's.
type saved struct {
	data   []byte
	id     string
	layers []string // the manifest's layer paths
}

func makeSaved(t *testing.T) saved {
	t.Helper()
	layer := func(s string) []byte { return bytes.Repeat([]byte(s), 4096) }
	contents := [][]byte{layer("a"), layer("b"), layer("a")}
	var diffIDs []string
	for _, c := range contents {
		sum := sha256.Sum256(c)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(sum[:]))
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05.123456789Z",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	sum := sha256.Sum256(config)
	hexID := hex.EncodeToString(sum[:])
	dirs := []string{"1111", "2222", "3333"}
	var paths []string
	for _, d := range dirs {
		paths = append(paths, d+"/layer.tar")
	}
	manifest, _ := json.Marshal([]manifestEntry{{Config: hexID + ".json", RepoTags: []string{"app:1"}, Layers: paths}})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.Mode, h.ModTime = 0o644, time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	for i, d := range dirs {
		add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir}, nil)
		add(&tar.Header{Name: d + "/VERSION"}, []byte("1.0"))
		add(&tar.Header{Name: d + "/json"}, []byte(`{"id":"`+d+`"}`))
		if i == 2 {
			add(&tar.Header{Name: d + "/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../1111/layer.tar"}, nil)
		} else {
			add(&tar.Header{Name: d + "/layer.tar"}, contents[i])
		}
	}
	add(&tar.Header{Name: hexID + ".json"}, config)
	add(&tar.Header{Name: "manifest.json"}, manifest)
	add(&tar.Header{Name: "repositories"}, []byte(`{"app":{"1":"3333"}}`))
	tw.Close()
	return saved{data: buf.Bytes(), id: "sha256:" + hexID, layers: paths}
}

// entries lists a gzipped archive's regular files and symlinks, and
// returns its manifest.json.
func entries(t *testing.T, gz []byte) (names []string, manifest []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, manifest
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		names = append(names, path.Clean(h.Name))
		if h.Name == manifestFile {
			manifest, _ = io.ReadAll(tr)
		}
	}
}

func TestRewrite(t *testing.T) {
	s := makeSaved(t)
	l, err := scan(bytes.NewReader(s.data), s.id, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1111/layer.tar", "2222/layer.tar", "1111/layer.tar"}; !slices.Equal(l.data, want) {
		t.Fatalf("layer files %v, want %v (symlink followed)", l.data, want)
	}

	tests := []struct {
		name    string
		present []bool
		gone    []string // layer entries left out
	}{
		{name: "NonePresent", present: []bool{false, false, false}},
		{name: "BasePresent", present: []bool{true, false, false}}, // layer 2 still needs 1111's file
		{name: "TwoPresent", present: []bool{true, true, false}, gone: []string{"2222/layer.tar"}},
		{name: "AllPresent", present: []bool{true, true, true}, gone: []string{"1111/layer.tar", "2222/layer.tar", "3333/layer.tar"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drop := l.drop(tt.present)
			var out bytes.Buffer
			var in int
			if err := write(&out, bytes.NewReader(s.data), s.id, drop, l, func(n int) { in += n }); err != nil {
				t.Fatal(err)
			}
			names, manifest := entries(t, out.Bytes())
			for _, p := range s.layers {
				if got, want := slices.Contains(names, p), !slices.Contains(tt.gone, p); got != want {
					t.Errorf("%s sent: %v, want %v (entries %v)", p, got, want, names)
				}
			}
			if slices.Contains(names, "repositories") {
				t.Error("repositories was sent: docker load would tag the image before it is verified")
			}
			var ms []map[string]any
			if err := json.Unmarshal(manifest, &ms); err != nil || len(ms) != 1 || ms[0]["RepoTags"] != nil || ms[0]["Layers"] == nil {
				t.Errorf("manifest.json sent as %s (%v), want RepoTags null and the rest kept", manifest, err)
			}
			if size := l.size(drop); int64(in) > size || int64(in) < size-4096 {
				t.Errorf("%d bytes went into the compressor, estimated %d", in, size)
			}
		})
	}

	t.Run("ManifestChanged", func(t *testing.T) {
		other := *l
		other.manifest = []byte("[]")
		err := write(io.Discard, bytes.NewReader(s.data), s.id, nil, &other, nil)
		if err == nil || !strings.Contains(err.Error(), "rebuilt") {
			t.Errorf("write = %v, want the manifest change noticed", err)
		}
	})
	t.Run("OtherImage", func(t *testing.T) {
		if _, err := scan(bytes.NewReader(s.data), "sha256:"+strings.Repeat("0", 64), 3); err == nil {
			t.Error("scan found an image that is not there")
		}
	})
}

func TestUnnameIndex(t *testing.T) {
	index := `{"schemaVersion":2,"manifests":[{"digest":"sha256:ab","annotations":{"io.containerd.image.name":"docker.io/library/app:1","org.opencontainers.image.ref.name":"1","keep":"me"}},{"digest":"sha256:cd","annotations":{"org.opencontainers.image.ref.name":"2"}}]}`
	out, err := unname("index.json", []byte(index), "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "image.name") || strings.Contains(string(out), "ref.name") ||
		!strings.Contains(string(out), `"keep":"me"`) || !strings.Contains(string(out), `"schemaVersion":2`) {
		t.Errorf("index.json became %s", out)
	}
}

func TestReadLoad(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		loaded  []string
		err     string
		dropped bool
	}{
		{name: "Loaded", body: `{"stream":"Loaded image ID: sha256:ab\n"}`, loaded: []string{"sha256:ab"}},
		{name: "Named", body: `{"stream":"Loaded image: app:1\n"}`, loaded: []string{"app:1"}},
		{name: "Text", body: "Loaded image ID: sha256:ab\n", loaded: []string{"sha256:ab"}},
		{name: "Failed", body: `{"errorDetail":{"message":"write /var/lib/docker/tmp/x: no space left on device"},"error":"no space"}`,
			err: "no space left on device: check free space on the host"},
		{name: "LayerGone", body: `{"errorDetail":{"message":"open /var/lib/docker/tmp/docker-import-1/1111/layer.tar: no such file or directory"}}`,
			err: "went away", dropped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded, err := readLoad(strings.NewReader(tt.body))
			if !slices.Equal(loaded, tt.loaded) {
				t.Errorf("loaded %v, want %v", loaded, tt.loaded)
			}
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("err %v, want %q", err, tt.err)
			}
			if dropped(err) != tt.dropped {
				t.Errorf("dropped(%v) = %v, want %v", err, !tt.dropped, tt.dropped)
			}
		})
	}
}

func TestDropped(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("load: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("post: %w", &net.OpError{Op: "write", Err: syscall.EPIPE}), true},
		{errors.New(`Post "http://x/images/load": use of closed network connection`), true},
		{errors.New("dial /var/run/docker.sock on root@h:22: connection lost: EOF"), true},
		{fmt.Errorf("ship: %w", &sourceError{io.ErrUnexpectedEOF}), false},
		{&loadError{msg: "invalid diffID for layer 1"}, false},
		{errors.New("no such image"), false},
		{fmt.Errorf("load: %w", context.Canceled), false},
	}
	for _, tt := range tests {
		if got := dropped(tt.err); got != tt.want {
			t.Errorf("dropped(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestMeter(t *testing.T) {
	clock := time.Unix(1000, 0)
	var got []Progress
	m := newMeter("app:1", func(p Progress) { got = append(got, p) })
	m.now = func() time.Time { return clock }
	m.begin(1000)
	w := m.writer(io.Discard)
	for range 10 {
		clock = clock.Add(100 * time.Millisecond)
		m.uncompressed(100)
		w.Write(make([]byte, 50)) // compresses to half
	}
	m.finish()
	// First, one every 250 ms of the second, and the last.
	if len(got) < 4 || len(got) > 6 {
		t.Fatalf("%d reports: %+v", len(got), got)
	}
	if first := got[0]; first.Sent != 0 || first.Total != 1000 {
		t.Errorf("first report %+v, want the uncompressed estimate as Total", first)
	}
	mid := got[len(got)/2]
	if wantTotal := mid.Sent + (1000-2*mid.Sent)/2; mid.Total != wantTotal || mid.Left <= 0 || mid.Rate <= 0 {
		t.Errorf("report %+v, want Total %d (the rest at the ratio so far), time left and a rate", mid, wantTotal)
	}
	if last := got[len(got)-1]; last.Sent != 500 || last.Total != 500 || last.Left != 0 || last.Rate != 500 {
		t.Errorf("last report %+v, want 500 sent of 500 at 500 B/s", last)
	}
}

func TestSqueezer(t *testing.T) {
	// Pseudo-random bytes that deflate cannot shrink.
	rng := bytes.NewBuffer(nil)
	for rng.Len() < 2*chunkSize {
		sum := sha256.Sum256(rng.Bytes()[max(rng.Len()-32, 0):])
		rng.Write(sum[:])
	}
	text := bytes.Repeat([]byte("the same line of text, again and again\n"), chunkSize/20)
	in := slices.Concat(text, rng.Bytes(), text[:1000], rng.Bytes()[:5000])

	var out bytes.Buffer
	s := newSqueezer(&out)
	for p := in; len(p) > 0; {
		k := min(len(p), 10000)
		if _, err := s.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("round trip gave %d bytes, want the %d written", len(got), len(in))
	}
	// The text shrinks to almost nothing; the random bytes are stored.
	if n, limit := int64(out.Len()), int64(rng.Len()+5000)+int64(len(text))/50; n > limit {
		t.Errorf("compressed to %d bytes, want at most %d", n, limit)
	}

	var empty bytes.Buffer
	e := newSqueezer(&empty)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if zr, err := gzip.NewReader(&empty); err != nil {
		t.Errorf("empty stream: %v", err)
	} else if b, err := io.ReadAll(zr); err != nil || len(b) != 0 {
		t.Errorf("empty stream read %d bytes, %v", len(b), err)
	}
}
