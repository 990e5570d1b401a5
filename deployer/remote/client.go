package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
)

// Config says how to reach a host over SSH.
type Config struct {
	Addr string // host, host:port or [v6]:port; the port defaults to 22
	User string // default "root"
	// KeyFile is the private key, in OpenSSH or PEM format. "" means use the
	// SSH agent at $SSH_AUTH_SOCK.
	KeyFile string
	// Passphrase is asked only for an encrypted key. If it is nil, an
	// encrypted key is an error that says how to give the passphrase.
	Passphrase func() ([]byte, error)
	// KnownHosts is the known_hosts file that the host key must be in
	// (hashed entries work). Fingerprint is the alternative: the host key's
	// "SHA256:..." fingerprint, as ssh-keygen -l prints it. If Fingerprint is
	// set it alone decides; one of the two is required.
	KnownHosts  string
	Fingerprint string
	// ConnectTimeout bounds the TCP connect and SSH handshake (default 15s).
	ConnectTimeout time.Duration
	// KeepAlive is how often the connection is probed (default 15s); with no
	// answer for three of them it is closed and commands on it fail.
	KeepAlive time.Duration
	// Dial opens the TCP connection (default: net.Dialer). Tests use it to
	// cut a connection.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

const (
	defaultTimeout = 15 * time.Second
	keepAliveCount = 3 // unanswered keepalive intervals before giving up
)

// maxSessions bounds the commands open at once on one connection, below
// OpenSSH's default MaxSessions of 10, so that a busy pipeline waits for a
// session instead of being refused one.
const maxSessions = 8

var errClosed = errors.New("connection closed")

// Client is a Host reached over one SSH connection; every command, file
// transfer, lock and socket is multiplexed on it. It is safe for concurrent
// use.
type Client struct {
	name     string
	conn     *ssh.Client
	sessions chan struct{} // a token per open session
	done     chan struct{} // closed once the connection is gone
	mu       sync.Mutex
	err      error  // why the connection is gone
	held     string // the run file of the lock this client holds, if any
}

// runFile is the run file that commands hold shared while this client
// holds a lock (see execScript), or "".
func (c *Client) runFile() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// Dial connects to the host and authenticates, verifying its host key.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Client, error) {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Addr, err)
	}
	hk, err := newHostKeyCheck(cfg)
	if err != nil {
		return fail(err)
	}
	auth, err := newAuth(cfg)
	if err != nil {
		return fail(err)
	}
	defer auth.close()

	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	timedOut := func() (*Client, error) {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(fmt.Errorf("no answer after %s", cfg.ConnectTimeout))
	}
	nc, err := cfg.Dial(dctx, "tcp", cfg.Addr)
	if err != nil {
		if dctx.Err() != nil {
			return timedOut()
		}
		return fail(err)
	}
	// The handshake has no context of its own: closing the connection is
	// what interrupts it.
	stop := context.AfterFunc(dctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, cfg.Addr, &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{auth.method},
		HostKeyCallback:   hk.verify,
		HostKeyAlgorithms: hk.algorithms,
		ClientVersion:     "SSH-2.0-deployer",
	})
	interrupted := !stop()
	switch {
	case err == nil && !interrupted:
	case hk.err != nil:
		nc.Close()
		return fail(hk.err)
	case interrupted:
		if sc != nil {
			sc.Close()
		}
		nc.Close()
		return timedOut()
	case strings.Contains(err.Error(), "unable to authenticate"):
		nc.Close()
		return fail(auth.refused(cfg))
	case strings.Contains(err.Error(), "no common algorithm for host key"):
		nc.Close()
		return fail(hk.noCommonAlgorithm(err))
	default:
		nc.Close()
		return fail(err)
	}

	c := &Client{
		name:     cfg.User + "@" + cfg.Addr,
		conn:     ssh.NewClient(sc, chans, reqs),
		sessions: make(chan struct{}, maxSessions),
		done:     make(chan struct{}),
	}
	go func() {
		err := c.conn.Wait()
		if err == nil {
			err = errors.New("closed by the host")
		}
		c.fail(fmt.Errorf("connection lost: %w", err))
	}()
	go c.keepAlive(cfg.KeepAlive)
	return c, nil
}

func (cfg Config) withDefaults() (Config, error) {
	addr, err := hostPort(cfg.Addr)
	if err != nil {
		return cfg, fmt.Errorf("ssh address %q: %w", cfg.Addr, err)
	}
	cfg.Addr = addr
	if cfg.User == "" {
		cfg.User = "root"
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = defaultTimeout
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	return cfg, nil
}

// hostPort turns host, host:port, v6 or [v6]:port into host:port.
func hostPort(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("no host given")
	}
	if strings.ContainsAny(addr, "@/ ") {
		return "", errors.New("want host, host:port or [v6]:port (the user goes in the user setting)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: a name, an IPv4 address, or a v6 one with or without brackets.
		host, port = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), "22"
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return "", err
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	if host == "" || strings.ContainsAny(host, "[]") {
		return "", errors.New("want host, host:port or [v6]:port")
	}
	return net.JoinHostPort(host, port), nil
}

// Name is "user@host:port".
func (c *Client) Name() string { return c.name }

// Close ends the connection. Commands still running fail; a lock held by
// this client is released on the host.
func (c *Client) Close() error {
	c.fail(errClosed)
	return nil
}

// fail records why the connection is gone, the first time, and closes it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	c.conn.Close()
}

// lost is why the connection is gone.
func (c *Client) lost() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// keepAlive probes the connection every interval and closes it when no
// answer came for keepAliveCount intervals, as OpenSSH's ServerAliveInterval
// and ServerAliveCountMax do: a dead network then fails the commands on it
// instead of leaving them hanging.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	answered := make(chan error, 1)
	pending, last := false, time.Now()
	for {
		select {
		case <-c.done:
			return
		case err := <-answered:
			if err != nil {
				c.fail(fmt.Errorf("connection lost: keepalive: %w", err))
				return
			}
			pending, last = false, time.Now()
		case <-t.C:
			if silent := time.Since(last); silent >= keepAliveCount*every {
				c.fail(fmt.Errorf("connection lost: no answer to keepalive for %s", silent.Round(time.Millisecond)))
				return
			}
			if !pending {
				pending = true
				go func() {
					// OpenSSH answers this unknown request with a failure,
					// which is an answer all the same.
					_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
					answered <- err
				}()
			}
		}
	}
}

// session opens a session, holding one of the maxSessions tokens until
// release is called.
func (c *Client) session(ctx context.Context) (s *ssh.Session, release func(), err error) {
	select {
	case c.sessions <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-c.done:
		return nil, nil, c.lost()
	}
	s, err = c.conn.NewSession()
	if err != nil {
		<-c.sessions
		return nil, nil, c.why(fmt.Errorf("open session: %w", err))
	}
	var once sync.Once
	return s, func() { once.Do(func() { s.Close(); <-c.sessions }) }, nil
}

// Output runs a command and returns its standard output.
func (c *Client) Output(ctx context.Context, args ...string) ([]byte, error) {
	out, err := output(ctx, c.run, args)
	if err != nil {
		return out, fmt.Errorf("run %s on %s: %w", display(args), c.name, err)
	}
	return out, nil
}

// DialUnix connects to a unix socket on the host through the SSH connection
// (OpenSSH's streamlocal forwarding, on by default).
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.conn.DialContext(ctx, "unix", path)
	if _, refused := errors.AsType[*ssh.OpenChannelError](err); refused {
		// sshd does not say why.
		err = fmt.Errorf("%w: is the socket there, and does sshd allow AllowStreamLocalForwarding (the default)?", err)
	} else if err != nil && ctx.Err() == nil {
		err = c.why(err)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s on %s: %w", path, c.name, err)
	}
	return conn, nil
}

// Docker returns a client of the host's Docker Engine over the SSH
// connection.
func (c *Client) Docker(ctx context.Context) (*client.Client, error) {
	return docker(ctx, c)
}

// WriteFile writes a file on the host atomically; see Host.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	if err := c.writeFile(ctx, path, data, perm); err != nil {
		return fmt.Errorf("write %s on %s: %w", path, c.name, err)
	}
	return nil
}

// ReadFile reads a file on the host; see Host.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	data, err := c.readFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", path, c.name, err)
	}
	return data, nil
}

// Lock takes the lock file at path on the host; see Host.
func (c *Client) Lock(ctx context.Context, path string, holder []byte, wait time.Duration, waiting func(holder []byte)) (Unlocker, error) {
	l, err := c.lock(ctx, path, holder, wait, waiting)
	if err != nil {
		return nil, fmt.Errorf("lock %s on %s: %w", path, c.name, err)
	}
	return l, nil
}
