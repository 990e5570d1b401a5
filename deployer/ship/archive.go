package ship

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// The archive is `docker save` format. Engine 20.10 writes, in lexical
// order because it tars a directory:
//
//	<v1 id>/VERSION, <v1 id>/json, <v1 id>/layer.tar   one directory per layer
//	<config digest>.json                               the image config
//	manifest.json                                      [{Config, RepoTags, Layers}]
//	repositories                                       only when saved by name
//
// A layer repeated in an image is a symlink to the first copy. Engines 25
// and later write an OCI layout instead (blobs/sha256/<digest>, index.json,
// oci-layout) with a manifest.json beside it. Either way the directory
// names say nothing about which layer is which until manifest.json, the
// last entry but one, maps them in order onto the config's diff IDs.

const (
	manifestFile = "manifest.json"
	// maxMeta bounds the manifests and index read into memory.
	maxMeta = 16 << 20
)

// errLoadEnded stops the writer once the destination's load has answered.
var errLoadEnded = errors.New("docker load ended")

// manifestEntry is one image of manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// layout is what a first read of the archive learned.
type layout struct {
	manifest []byte            // manifest.json as saved
	paths    []string          // each layer's path, as manifest.json names it
	data     []string          // the file holding each layer's data (symlinks followed)
	entries  []entry           // every entry, in order
	links    map[string]string // symlink → where it points
}

type entry struct {
	name string
	size int64
}

// scan reads a docker save archive of image id through, keeping only its
// table of contents and manifest.json.
func scan(r io.Reader, id string, layers int) (*layout, error) {
	l := &layout{links: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := path.Clean(h.Name)
		l.entries = append(l.entries, entry{name: name, size: h.Size})
		switch {
		case h.Typeflag == tar.TypeSymlink:
			l.links[name] = path.Join(path.Dir(name), h.Linkname)
		case name == manifestFile:
			if l.manifest, err = readMeta(tr, h); err != nil {
				return nil, err
			}
		}
	}
	if l.manifest == nil {
		return nil, errors.New("no manifest.json in the archive: not docker save format")
	}
	m, err := pick(l.manifest, id)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != layers {
		return nil, fmt.Errorf("manifest.json lists %d layers, the image has %d", len(m.Layers), layers)
	}
	for _, p := range m.Layers {
		p = path.Clean(p)
		l.paths = append(l.paths, p)
		l.data = append(l.data, l.follow(p))
	}
	return l, nil
}

// pick finds the image's entry in manifest.json by its config's digest.
func pick(manifest []byte, id string) (manifestEntry, error) {
	var ms []manifestEntry
	if err := json.Unmarshal(manifest, &ms); err != nil {
		return manifestEntry{}, fmt.Errorf("manifest.json: %w", err)
	}
	hex := strings.TrimPrefix(id, "sha256:")
	for _, m := range ms {
		c := path.Clean(m.Config)
		if c == hex+".json" || c == "blobs/sha256/"+hex {
			return m, nil
		}
	}
	return manifestEntry{}, fmt.Errorf("manifest.json has no image %s", short(id))
}

// follow resolves symlinks among the archive's entries.
func (l *layout) follow(p string) string {
	for range 8 {
		to, ok := l.links[p]
		if !ok {
			break
		}
		p = to
	}
	return p
}

// drop lists the archive entries to leave out for a destination that has
// the layers marked present: the files of present layers, and symlinks to
// them, unless a missing layer needs the same file.
func (l *layout) drop(present []bool) map[string]bool {
	need := map[string]bool{}
	for i, p := range present {
		if !p {
			need[l.paths[i]], need[l.data[i]] = true, true
		}
	}
	drop := map[string]bool{}
	for i, p := range present {
		if !p {
			continue
		}
		for _, f := range []string{l.paths[i], l.data[i]} {
			if !need[f] {
				drop[f] = true
			}
		}
	}
	return drop
}

// size is the uncompressed size of the archive sent with drop left out.
func (l *layout) size(drop map[string]bool) int64 {
	n := int64(2 * 512) // the end-of-archive blocks
	for _, e := range l.entries {
		if !drop[e.name] && e.name != "repositories" {
			n += 512 + (e.size+511)/512*512
		}
	}
	return n
}

// write copies the archive from r to w gzipped (see squeezer), leaving out the entries in
// drop and the image's names: manifest.json loses its RepoTags, index.json
// its name annotations, and repositories goes, so that docker load tags
// nothing and the image is tagged only once verified. If l is set (the
// archive was scanned), the manifest must be the one scanned. in, if set,
// is told how many bytes go into the compressor.
func write(w io.Writer, r io.Reader, id string, drop map[string]bool, l *layout, in func(int)) error {
	gz := newSqueezer(w)
	var tarOut io.Writer = gz
	if in != nil {
		tarOut = countWriter{gz, in}
	}
	tw := tar.NewWriter(tarOut)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		switch {
		case drop[name], name == "repositories":
			continue
		case name == manifestFile || name == "index.json":
			data, err := readMeta(tr, h)
			if err != nil {
				return err
			}
			if name == manifestFile && l != nil && !bytes.Equal(data, l.manifest) {
				return errors.New("manifest.json changed since the archive was first read: was the image rebuilt meanwhile?")
			}
			if data, err = unname(name, data, id); err != nil {
				return err
			}
			h.Size = int64(len(data))
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			continue
		case h.Size >= chunkSize:
			if err := gz.cut(); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// unname removes image names from manifest.json or index.json. Unknown
// fields are kept as they are.
func unname(name string, data []byte, id string) ([]byte, error) {
	if name == manifestFile {
		if _, err := pick(data, id); err != nil {
			return nil, err
		}
		var ms []map[string]json.RawMessage
		if err := json.Unmarshal(data, &ms); err != nil {
			return nil, fmt.Errorf("manifest.json: %w", err)
		}
		for _, m := range ms {
			m["RepoTags"] = json.RawMessage("null")
		}
		return json.Marshal(ms)
	}
	var index map[string]json.RawMessage
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	var descs []map[string]json.RawMessage
	if err := json.Unmarshal(index["manifests"], &descs); err != nil {
		return nil, fmt.Errorf("index.json manifests: %w", err)
	}
	for _, d := range descs {
		var ann map[string]string
		if raw, ok := d["annotations"]; !ok || json.Unmarshal(raw, &ann) != nil {
			continue
		}
		delete(ann, "io.containerd.image.name")
		delete(ann, "org.opencontainers.image.ref.name")
		if len(ann) == 0 {
			delete(d, "annotations")
			continue
		}
		raw, err := json.Marshal(ann)
		if err != nil {
			return nil, err
		}
		d["annotations"] = raw
	}
	raw, err := json.Marshal(descs)
	if err != nil {
		return nil, err
	}
	index["manifests"] = raw
	return json.Marshal(index)
}

func readMeta(r io.Reader, h *tar.Header) ([]byte, error) {
	if h.Size > maxMeta {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", h.Name, h.Size, maxMeta)
	}
	return io.ReadAll(r)
}

// readLoad reads docker load's answer: JSON messages, or plain text from
// engines that send it so. It returns the images it says it loaded
// ("Loaded image ID: sha256:…" or "Loaded image: name:tag").
func readLoad(r io.Reader) ([]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxMeta))
	if err != nil {
		return nil, err
	}
	var loaded []string
	note := func(line string) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
			loaded = append(loaded, v)
		} else if v, ok := strings.CutPrefix(line, "Loaded image: "); ok {
			loaded = append(loaded, v)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&m)
		if err == io.EOF {
			return loaded, nil
		}
		if err != nil {
			// Not JSON: plain text.
			for line := range strings.Lines(string(data)) {
				note(line)
			}
			return loaded, nil
		}
		msg := m.Error
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			msg = m.ErrorDetail.Message
		}
		if msg != "" {
			return loaded, &loadError{msg: msg}
		}
		note(m.Stream)
	}
}

// countWriter tells n how many bytes went through it.
type countWriter struct {
	w io.Writer
	n func(int)
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n(n)
	return n, err
}
