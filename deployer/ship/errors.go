package ship

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/docker/docker/client"
)

// loadError is an error that the destination's docker load reported.
type loadError struct{ msg string }

func (e *loadError) Error() string {
	fix := "check free space on the host (df -h /var/lib/docker) and its Docker log (journalctl -u docker)"
	if e.missingLayer() {
		fix = "a layer the host had went away during the load (an image prune?)"
	}
	return "docker load on the host said: " + e.msg + ": " + fix
}

// missingLayer reports whether the load wanted a layer's file that the
// archive left out because the destination had the layer when asked: it
// must have been removed since, and asking again puts it back in.
func (e *loadError) missingLayer() bool {
	m := e.msg
	return strings.Contains(m, "layer.tar") && strings.Contains(m, "no such file") || // classic store
		strings.Contains(m, "layer \"") && strings.Contains(m, "not found") || // containerd store
		strings.Contains(m, "blobs/sha256/") && strings.Contains(m, "no such file")
}

// sourceError is a failure to read the image where it was built. Trying
// the destination again does not help.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// dropped reports whether err is a connection to the destination that
// broke, or a layer that went missing there: worth another attempt after
// asking the destination again what it has.
func dropped(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if _, ok := errors.AsType[*sourceError](err); ok {
		return false
	}
	if le, ok := errors.AsType[*loadError](err); ok {
		return le.missingLayer()
	}
	if client.IsErrConnectionFailed(err) {
		return true
	}
	for _, target := range []error{
		io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe, net.ErrClosed,
		syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	// The HTTP client and the SSH library flatten some of these to text.
	msg := err.Error()
	for _, s := range []string{
		"connection reset", "broken pipe", "use of closed network connection", "unexpected EOF",
		"EOF", "connection lost", "closed pipe", "connection refused",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// sshLost reports whether err says that the SSH connection under the
// Engine client is gone (deployer/remote's words): no retry on it can work,
// and reconnecting is not Ship's to do, as the deploy lock was held by
// that connection.
func sshLost(err error) bool {
	if _, ok := errors.AsType[*loadError](err); ok {
		return false
	}
	return strings.Contains(err.Error(), "connection lost")
}
