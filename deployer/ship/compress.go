package ship

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"io"
)

// The archive goes out as one gzip stream, not as gzipped layer.tar
// entries: a tar header holds its entry's size before the data, and a
// layer's compressed size is only known once it is compressed, so gzipped
// entries would have to be held in memory or on disk first. docker load
// takes a compressed archive in both image stores (the Engine decompresses
// the request body before it reads the tar).
//
// Deflate at the default level costs about 20 MB/s of CPU here whether or
// not the data compresses, and image layers often hold data that does not
// (compressed assets, archives, model weights). So the stream is cut into
// chunks; a chunk whose samples do not shrink under a quick deflate is
// stored instead, in a gzip member of its own (gzip readers, Go's and
// unpigz alike, read concatenated members as one stream).

const (
	chunkSize   = 1 << 20  // how much is compressed, or stored, at once
	probes      = 4        // slices of a chunk that the quick deflate tries
	probeSize   = 8 << 10  // bytes in each
	storedRatio = 0.97     // probed output/input above which a chunk is stored
	outBuffer   = 64 << 10 // the size of writes to the connection, so that the HTTP body goes in large chunks
)

// squeezer is the gzip writer of the archive.
type squeezer struct {
	out     *bufio.Writer // gathers deflate's writes of a few hundred bytes
	deflate *gzip.Writer  // default level
	store   *gzip.Writer  // no compression
	cur     *gzip.Writer  // the member being written; nil before the first
	probe   *flate.Writer
	probed  countingDiscard
	buf     []byte
}

func newSqueezer(w io.Writer) *squeezer {
	out := bufio.NewWriterSize(w, outBuffer)
	deflate, _ := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	store, _ := gzip.NewWriterLevel(out, gzip.NoCompression)
	s := &squeezer{out: out, deflate: deflate, store: store, buf: make([]byte, 0, chunkSize)}
	s.probe, _ = flate.NewWriter(&s.probed, flate.BestSpeed)
	return s
}

func (s *squeezer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == chunkSize {
			if err := s.chunk(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// chunk writes the buffered chunk, stored or deflated.
func (s *squeezer) chunk() error {
	w := s.deflate
	if s.incompressible(s.buf) {
		w = s.store
	}
	if w != s.cur {
		if s.cur != nil {
			if err := s.cur.Close(); err != nil {
				return err
			}
		}
		w.Reset(s.out) // a new member
		s.cur = w
	}
	_, err := s.cur.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

// incompressible reports whether a quick deflate of a few slices spread
// over the chunk barely shrinks them: the first bytes alone mislead, as in
// an executable whose compressed debug sections end a chunk.
func (s *squeezer) incompressible(chunk []byte) bool {
	if len(chunk) < probes*probeSize {
		return false
	}
	s.probed = 0
	s.probe.Reset(&s.probed)
	for i := range probes {
		off := i * (len(chunk) - probeSize) / (probes - 1)
		s.probe.Write(chunk[off : off+probeSize])
	}
	s.probe.Close()
	return float64(s.probed) > storedRatio*probes*probeSize
}

// cut ends the current chunk early, at the start of an archive entry, so
// that a chunk does not mix the end of one layer with the start of another.
func (s *squeezer) cut() error {
	if len(s.buf) == 0 {
		return nil
	}
	return s.chunk()
}

// Close writes what is left and ends the stream.
func (s *squeezer) Close() error {
	if len(s.buf) > 0 || s.cur == nil {
		if err := s.chunk(); err != nil {
			return err
		}
	}
	if err := s.cur.Close(); err != nil {
		return err
	}
	return s.out.Flush()
}

type countingDiscard int64

func (c *countingDiscard) Write(p []byte) (int, error) {
	*c += countingDiscard(len(p))
	return len(p), nil
}
