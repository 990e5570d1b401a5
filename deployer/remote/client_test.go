package remote

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semalink/deploy-action/deployer/remote/remotetest"
	"github.com/semalink/deploy-action/internal/costtest"
	"golang.org/x/crypto/ssh"
)

// hostKey is the test sshd's host key.
func (e testEnv) hostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(e.hostKeyLine(t)))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func otherKey(t *testing.T) ssh.PublicKey { return remotetest.OtherKey(t) }

func TestHostKey(t *testing.T) {
	env := sshEnv(t)
	real := ssh.FingerprintSHA256(env.hostKey(t))
	other := otherKey(t)
	pattern := "[" + env.Host + "]:" + env.Port
	line := func(host string, key ssh.PublicKey) string {
		return host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
	}
	ca, err := os.ReadFile(env.HostCA)
	if err != nil {
		t.Fatal(err)
	}
	caLine := "@cert-authority " + pattern + " " + strings.TrimSpace(string(ca)) + "\n"
	hashed := writeTemp(t, "known_hosts", env.hostKeyLine(t)+"\n")
	if out, err := exec.Command("ssh-keygen", "-H", "-f", hashed).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v: %s", err, out)
	}
	if data, _ := os.ReadFile(hashed); !strings.HasPrefix(string(data), "|1|") {
		t.Fatalf("known_hosts is not hashed: %s", data)
	}

	tests := []struct {
		name        string
		knownHosts  string // content
		fingerprint string
		want        []string // in the error; none: it connects
	}{
		{name: "Known", knownHosts: env.hostKeyLine(t)},
		{name: "Hashed", knownHosts: "file:" + hashed},
		{name: "Pinned", fingerprint: real}, // the host offers a certificate too
		{name: "CertAuthority", knownHosts: caLine},
		{name: "CertAuthorityAndKey", knownHosts: caLine + env.hostKeyLine(t) + "\n"},
		{
			name: "WrongCertAuthority", knownHosts: "@cert-authority " + pattern + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))) + "\n",
			want: []string{"presented a certificate", "does not accept", "@cert-authority"},
		},
		{
			name: "RevokedUnderCertAuthority", knownHosts: caLine + "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(env.hostKey(t)))) + "\n",
			want: []string{"presented a certificate", "revoked"},
		},
		{
			name: "RevokedKey", knownHosts: env.hostKeyLine(t) + "\n@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(env.hostKey(t)))) + "\n",
			want: []string{"marks as revoked"},
		},
		{name: "PinnedPadded", fingerprint: real + "="},
		{
			name: "Unknown", knownHosts: line("[192.0.2.1]:22", env.hostKey(t)),
			want: []string{"connect to " + env.addr(), "unknown host key", "ssh-ed25519 " + real,
				"ssh-keyscan -p " + env.Port + " " + env.Host + " >> ", "ssh-keygen -lf ", "provider's console", "--host-fingerprint"},
		},
		{
			name: "Changed", knownHosts: line(pattern, other),
			want: []string{"CHANGED", "ssh-ed25519 " + real, ssh.FingerprintSHA256(other), "man-in-the-middle",
				"ssh-keygen -R '" + pattern + "'", "ssh-keyscan"},
		},
		{
			name: "PinnedWrong", fingerprint: ssh.FingerprintSHA256(other),
			want: []string{"host key mismatch", "presented ssh-ed25519 " + real, "pinned fingerprint is " + ssh.FingerprintSHA256(other), "man-in-the-middle"},
		},
		{name: "PinnedMD5", fingerprint: "MD5:16:27:ac", want: []string{"want SHA256:"}},
		{name: "Neither", want: []string{"no way to verify the host key", "--known-hosts", "--host-fingerprint"}},
		{name: "MissingFile", knownHosts: "file:/nonexistent/known_hosts", want: []string{"read known_hosts", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := env.config()
			cfg.KnownHosts, cfg.Fingerprint = "", tt.fingerprint
			switch {
			case strings.HasPrefix(tt.knownHosts, "file:"):
				cfg.KnownHosts = strings.TrimPrefix(tt.knownHosts, "file:")
			case tt.knownHosts != "":
				cfg.KnownHosts = writeTemp(t, "known_hosts", tt.knownHosts)
			}
			c, err := Dial(t.Context(), cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if out, err := c.Output(t.Context(), "echo", "ok"); err != nil || string(out) != "ok\n" {
					t.Errorf("echo ok = %q, %v", out, err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("connected; want the host key refused")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if tt.name == "Unknown" || tt.name == "Changed" {
				t.Logf("message:\n%v", err)
			}
		})
	}
}

// TestHostKeyAlgorithms: known_hosts decides which kind of key the host
// is asked for, so a host with several keys is not taken for a changed one.
func TestHostKeyAlgorithms(t *testing.T) {
	env := sshEnv(t)
	hk, err := newHostKeyCheck(Config{Addr: env.addr(), KnownHosts: writeTemp(t, "known_hosts",
		"["+env.Host+"]:"+env.Port+" "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey(t))))+"\n"+
			"["+env.Host+"]:"+env.Port+" ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=\n"+
			"other.example "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey(t))))+"\n")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}
	if strings.Join(hk.algorithms, " ") != strings.Join(want, " ") {
		t.Errorf("algorithms = %q, want %q", hk.algorithms, want)
	}
}

// genKey makes a key pair with ssh-keygen.
func genKey(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	file := filepath.Join(dir, name)
	cmd := exec.Command("ssh-keygen", append([]string{"-q", "-C", "deployer-test-" + name, "-f", file}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return file
}

func TestAuth(t *testing.T) {
	env := sshEnv(t)
	dir := t.TempDir()

	t.Run("Refused", func(t *testing.T) {
		key := genKey(t, dir, "stranger", "-t", "ed25519", "-N", "")
		cfg := env.config()
		cfg.KeyFile = key
		_, err := Dial(t.Context(), cfg)
		pub, _ := os.ReadFile(key + ".pub")
		k, _, _, _, _ := ssh.ParseAuthorizedKey(pub)
		for _, want := range []string{"the host refused key ssh-ed25519 " + ssh.FingerprintSHA256(k), "for user " + env.User, key + ".pub", "~/.ssh/authorized_keys of " + env.User} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Dial = %v, want it to say %q", err, want)
			}
		}
	})

	for _, kind := range []struct{ name, args string }{
		{"OpenSSH-ed25519", "-t ed25519"},
		{"PEM-RSA", "-t rsa -b 2048 -m PEM"},
		{"PEM-ECDSA", "-t ecdsa -m PEM"},
	} {
		t.Run("Encrypted-"+kind.name, func(t *testing.T) {
			key := genKey(t, dir, kind.name, append(strings.Fields(kind.args), "-N", "correct horse")...)
			if data, _ := os.ReadFile(key); !strings.Contains(string(data), "ENCRYPTED") && !isEncryptedOpenSSH(data) {
				t.Fatalf("ssh-keygen did not encrypt the key:\n%s", data)
			}
			env.authorize(t, key+".pub")
			cfg := env.config()
			cfg.KeyFile = key

			_, err := Dial(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), "is encrypted") || !strings.Contains(err.Error(), "DEPLOYER_SSH_PASSPHRASE") {
				t.Errorf("Dial without a passphrase = %v, want it to say how to give one", err)
			}
			cfg.Passphrase = func() ([]byte, error) { return []byte("wrong"), nil }
			if _, err := Dial(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
				t.Errorf("Dial with a wrong passphrase = %v", err)
			}
			asked := 0
			cfg.Passphrase = func() ([]byte, error) { asked++; return []byte("correct horse"), nil }
			c := dialTest(t, cfg)
			if out, err := c.Output(t.Context(), "echo", "in"); err != nil || string(out) != "in\n" || asked != 1 {
				t.Errorf("echo in = %q, %v (passphrase asked %d times)", out, err, asked)
			}
		})
	}

	t.Run("PlainKeyNoPassphraseAsked", func(t *testing.T) {
		cfg := env.config()
		cfg.Passphrase = func() ([]byte, error) { t.Error("asked for the passphrase of a plain key"); return nil, nil }
		dialTest(t, cfg)
	})

	t.Run("Agent", func(t *testing.T) {
		sock := startAgent(t)
		t.Setenv("SSH_AUTH_SOCK", sock)
		cfg := env.config()
		cfg.KeyFile = ""
		if _, err := Dial(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "has no keys") {
			t.Errorf("Dial with an empty agent = %v", err)
		}
		add := exec.Command("ssh-add", env.Key)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v: %s", err, out)
		}
		c := dialTest(t, cfg)
		if out, err := c.Output(t.Context(), "echo", "agent"); err != nil || string(out) != "agent\n" {
			t.Errorf("echo agent = %q, %v", out, err)
		}
	})

	t.Run("NoAgent", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		cfg := env.config()
		cfg.KeyFile = ""
		if _, err := Dial(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
			t.Errorf("Dial with no key and no agent = %v", err)
		}
	})
}

func isEncryptedOpenSSH(data []byte) bool {
	block, _ := pem.Decode(data)
	return block != nil && block.Type == "OPENSSH PRIVATE KEY" && !strings.Contains(string(block.Bytes[:40]), "none")
}

// startAgent runs an ssh-agent of the test's own and returns its socket.
func startAgent(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		need(t, "ssh-agent: %v", err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	if !waitUntil(t.Context(), func() bool { _, err := os.Stat(sock); return err == nil }) {
		t.Fatal("ssh-agent made no socket")
	}
	return sock
}

func TestDialFailures(t *testing.T) {
	env := sshEnv(t)

	t.Run("NoAnswer", func(t *testing.T) {
		// A listener that accepts and never speaks: the handshake times out.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		cfg := env.config()
		cfg.Addr, cfg.ConnectTimeout = ln.Addr().String(), 300*time.Millisecond
		_, err = Dial(t.Context(), cfg)
		want := "connect to " + ln.Addr().String() + ": no answer after 300ms"
		if err == nil || err.Error() != want {
			t.Errorf("Dial = %v, want %q", err, want)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		cfg := env.config()
		cfg.Addr = addr
		if _, err := Dial(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "connect to "+addr) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("Dial = %v", err)
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := Dial(ctx, env.config()); !errors.Is(err, context.Canceled) {
			t.Errorf("Dial = %v, want context.Canceled", err)
		}
	})

	t.Run("BadAddress", func(t *testing.T) {
		cfg := env.config()
		cfg.Addr = "root@example.com"
		if _, err := Dial(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "the user goes in the user setting") {
			t.Errorf("Dial = %v", err)
		}
	})
}

func TestHostPort(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"example.com", "example.com:22"},
		{"example.com:2222", "example.com:2222"},
		{"203.0.113.7", "203.0.113.7:22"},
		{"::1", "[::1]:22"},
		{"[::1]", "[::1]:22"},
		{"[2001:db8::1]:2222", "[2001:db8::1]:2222"},
		{"", ""},
		{"host:0", ""},
		{"host:ssh", ""},
		{"host:", ""},
		{":22", ""},
		{"a:b:c", ""},
		{"root@host", ""},
	} {
		got, err := hostPort(tt.in)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("hostPort(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestConnectionCut closes the TCP connection under a client holding a lock
// and running commands: the commands fail, and the host releases the lock.
func TestConnectionCut(t *testing.T) {
	env := sshEnv(t)
	cut := remotetest.NewNetwork(t)
	cfg := env.config()
	cfg.Dial = cut.Dial
	a := dialTest(t, cfg)
	file := filepath.Join(remotetest.TempDir(t, env.User), "deploy.lock")
	lock, err := a.Lock(t.Context(), file, []byte(`{"by":"a"}`), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two commands in flight, each seen running before the cut: one that
	// says so and sleeps, and a cat whose stdin never ends.
	ran := make(chan error, 2)
	sleeping := newSignal("up")
	token := fmt.Sprintf("60.%09d", rand.Int32N(1e9))
	go func() { ran <- a.Run(t.Context(), Cmd{Args: sh(`echo up; exec sleep "$1"`, token), Stdout: sleeping}) }()
	r, w := io.Pipe()
	defer w.Close()
	echoed := newSignal("ping")
	go func() { ran <- a.Run(t.Context(), Cmd{Args: []string{"cat"}, Stdin: r, Stdout: echoed}) }()
	go w.Write([]byte("ping\n"))
	sleeping.wait(t)
	echoed.wait(t)

	cutAt := time.Now()
	cut.Last().Close()
	for range 2 {
		var err error
		select {
		case err = <-ran:
		case <-time.After(patience):
			t.Fatal("an in-flight command still runs after the cut")
		}
		if err == nil || !strings.Contains(err.Error(), "connection lost") || !strings.Contains(err.Error(), a.Name()) {
			t.Errorf("Run after the cut = %v, want connection lost", err)
		}
		t.Logf("in-flight command failed %s after the cut: %v", time.Since(cutAt).Round(time.Millisecond), err)
	}

	if !waitUntil(t.Context(), func() bool { return len(running(token)) == 0 }) {
		t.Errorf("sleep %s still runs on the host after its connection was cut", token)
	}

	b := dialTest(t, env.config())
	lb, err := b.Lock(t.Context(), file, []byte(`{"by":"b"}`), patience, nil)
	if err != nil {
		t.Fatalf("lock after the holder's connection was cut: %v", err)
	}
	t.Logf("another client took the lock %s after the cut", time.Since(cutAt).Round(time.Millisecond))
	lb.Unlock()
	if err := lock.Unlock(); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("Unlock after the cut = %v, want connection lost", err)
	}
	if _, err := a.Output(t.Context(), "true"); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("Run on a cut client = %v", err)
	}
}

// TestKeepAlive freezes the connection, as a dead network would: the
// keepalive notices, and commands on it fail instead of hanging.
func TestKeepAlive(t *testing.T) {
	env := sshEnv(t)
	cut := remotetest.NewNetwork(t)
	cfg := env.config()
	cfg.Dial, cfg.KeepAlive = cut.Dial, time.Second
	c := dialTest(t, cfg)
	// A command that lasts several keepalive rounds (timed by the host, not
	// by the test): it succeeds, as the connection stays up while answers
	// come.
	if err := c.Run(t.Context(), Cmd{Args: []string{"sleep", "5"}}); err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	sleeping := newSignal("up")
	token := fmt.Sprintf("600.%09d", rand.Int32N(1e9))
	go func() { ran <- c.Run(t.Context(), Cmd{Args: sh(`echo up; exec sleep "$1"`, token), Stdout: sleeping}) }()
	sleeping.wait(t)
	// Should the host fail to end its command, the test does.
	t.Cleanup(func() {
		for _, pid := range running(token) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	frozen := time.Now()
	cut.Last().Freeze()
	select {
	case err := <-ran:
		if err == nil || !strings.Contains(err.Error(), "no answer to keepalive for") {
			t.Errorf("Run = %v, want the keepalive failure", err)
		}
	case <-time.After(patience):
		t.Fatal("the command still runs on a frozen connection")
	}
	t.Logf("frozen connection detected after %s", time.Since(frozen).Round(time.Millisecond))
	// The host notices too (the test sshd's ClientAliveInterval) and ends
	// the command.
	if !waitUntil(t.Context(), func() bool { return len(running(token)) == 0 }) {
		t.Errorf("sleep %s still runs on the host after its client's packets stopped", token)
	}
}

// TestCommandsEndBeforeTheNextHolder: when the connection of a lock holder
// goes, its commands on the host are stopped, and the next holder gets the
// lock only once every process they started has ended, however long that
// takes: here one that left their process group and waits for the test's
// word.
func TestCommandsEndBeforeTheNextHolder(t *testing.T) {
	env := sshEnv(t)
	cut := remotetest.NewNetwork(t)
	cfg := env.config()
	cfg.Dial = cut.Dial
	a := dialTest(t, cfg)
	dir := remotetest.TempDir(t, env.User)
	file, exit := filepath.Join(dir, "deploy.lock"), filepath.Join(dir, "exit")
	la, err := a.Lock(t.Context(), file, []byte("a"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Unlock()
	ran := make(chan error, 1)
	up := newSignal("up")
	command := fmt.Sprintf("command-%09d", rand.Int32N(1e9))
	lingering := fmt.Sprintf("lingering-%09d", rand.Int32N(1e9))
	// "up" once the lingering process runs, so that the cut cannot come
	// before it has left the group.
	script := `setsid sh -c ': >"$2"; until [ -e "$1" ]; do sleep 0.05; done' sh "$1" "$1.started" "$3" &
sleep 600 &
until [ -e "$1.started" ]; do sleep 0.05; done
echo up
wait`
	go func() { ran <- a.Run(t.Context(), Cmd{Args: sh(script, exit, command, lingering), Stdout: up}) }()
	up.wait(t)
	t.Cleanup(func() { os.WriteFile(exit, nil, 0o644) })
	cut.Last().Close()
	<-ran
	if !waitUntil(t.Context(), func() bool { return len(running(command)) == 0 }) {
		t.Errorf("the command still runs after its connection went: %v", running(command))
	}

	b := dialTest(t, env.config())
	got := make(chan error, 1)
	var lb Unlocker
	go func() {
		var err error
		lb, err = b.Lock(t.Context(), file, []byte("b"), patience, nil)
		got <- err
	}()
	// b has the lock file and waits on the run file, which the lingering
	// process holds.
	runFile := file + ".run"
	waiting := func() bool {
		for _, pid := range processes(func(args []string) bool { return len(args) > 0 && args[0] == "flock" }) {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/8", pid)); target == runFile {
				return true
			}
		}
		return false
	}
	if !waitUntil(t.Context(), waiting) {
		select {
		case err := <-got:
			t.Fatalf("the next holder never waited on the run file: Lock = %v", err)
		default:
		}
		t.Fatal("the next holder never waited on the run file")
	}
	if len(running(lingering)) == 0 {
		t.Fatal("the lingering process is gone before the test let it go")
	}
	if err := os.WriteFile(exit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("lock after the holder's processes ended: %v", err)
	}
	defer lb.Unlock()
	if pids := running(lingering); len(pids) != 0 {
		t.Errorf("the lock was taken while a process of the last holder's command still ran: %v", pids)
	}
}

// signal is a command's stdout that tells when a word has been printed.
type signal struct {
	word string
	mu   sync.Mutex
	out  []byte
	seen chan struct{}
	once sync.Once
}

func newSignal(word string) *signal { return &signal{word: word, seen: make(chan struct{})} }

func (s *signal) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, p...)
	if strings.Contains(string(s.out), s.word) {
		s.once.Do(func() { close(s.seen) })
	}
	return len(p), nil
}

// wait waits until the word was printed.
func (s *signal) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.seen:
	case <-time.After(patience):
		t.Fatalf("the command never printed %q", s.word)
	}
}

// TestSessions runs more commands at once than OpenSSH's default
// MaxSessions: they queue instead of failing.
func TestSessions(t *testing.T) {
	env := sshEnv(t)
	c := dialTest(t, env.config())
	var wg sync.WaitGroup
	for range 3 * maxSessions {
		wg.Go(func() {
			if err := c.Run(t.Context(), Cmd{Args: []string{"sleep", "0.2"}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestLockShared: the SSH lock and the local one are the same flock, as the
// webhook server on a host and a deploy over SSH need.
func TestLockShared(t *testing.T) {
	env := sshEnv(t)
	c := dialTest(t, env.config())
	// The file is the SSH user's, as it is on a host where the server and
	// the deploys over SSH run as one user.
	file := filepath.Join(remotetest.TempDir(t, env.User), "deploy.lock")
	for _, f := range []string{file, file + ".run"} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		remotetest.Chown(t, f, env.User)
	}
	for _, pair := range []struct {
		name         string
		first, other Host
	}{{"LocalThenSSH", Local{}, c}, {"SSHThenLocal", c, Local{}}} {
		t.Run(pair.name, func(t *testing.T) {
			l, err := pair.first.Lock(t.Context(), file, []byte(pair.first.Name()), 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = pair.other.Lock(t.Context(), file, []byte("other"), 200*time.Millisecond, nil)
			if le, ok := errors.AsType[*LockedError](err); !ok || string(le.Holder) != pair.first.Name() {
				t.Errorf("Lock while %s holds it = %v", pair.first.Name(), err)
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
			l, err = pair.other.Lock(t.Context(), file, []byte("other"), 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			l.Unlock()
		})
	}
}

// TestSlowShell runs commands, cancels and locks as users whose login
// shells print a banner and take a second, or three (longer than a
// cancelled command's grace period), to start, as a deploy user's does when
// its .bashrc loads nvm, rbenv or conda: what a Client does must not depend
// on a quick, quiet session start.
func TestSlowShell(t *testing.T) {
	env := sshEnv(t)
	for _, user := range []string{env.SlowUser, env.SlowerUser} {
		t.Run(user, func(t *testing.T) {
			cfg := env.config()
			cfg.User = user
			c := dialTest(t, cfg)
			for _, tt := range []struct {
				name string
				test func(*testing.T, Host)
			}{
				{"Args", testArgs},
				{"Output", testOutput},
				{"Cancel", testCancel},
				{"Lock", testLock},
				{"LockCancel", testLockCancel},
				{"CancelWhileStarting", testCancelWhileStarting},
			} {
				t.Run(tt.name, func(t *testing.T) { tt.test(t, c) })
			}
		})
	}
}

// testCancelWhileStarting cancels a command while the login shell that is
// to run it is still starting (its .bashrc has begun): the command never
// outlives the cancel.
func testCancelWhileStarting(t *testing.T, h Host) {
	// The command is known by an argument no other process has; the login
	// shell's command line holds it from the moment the shell starts.
	token := fmt.Sprintf("3600.%09d", rand.Int32N(1e9))
	mentions := func(args []string) bool { return strings.Contains(strings.Join(args, " "), token) }
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		if waitUntil(ctx, func() bool { return len(processes(mentions)) > 0 }) {
			cancel()
		}
	}()
	if err := h.Run(ctx, Cmd{Args: []string{"sleep", token}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want it cancelled", err)
	}
	// Run returns once the command's session has ended, so by now neither
	// the shell nor the command it was to start may run: looked at once,
	// without waiting, since a shell still in its .bashrc would start the
	// command later.
	if pids := processes(mentions); len(pids) != 0 {
		t.Errorf("sleep %s, or the shell starting it, still runs after Run returned: %v", token, pids)
	}
}

// FuzzHostPort: any address is turned into host:port that parses, with a
// port in range, and host:port is kept as it is; or it is refused; at a
// cost linear in the address's length.
func FuzzHostPort(f *testing.F) {
	for _, s := range []string{"example.com", "[::1]:22", "a:b:c", "host:0", "root@host", "[", "]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		var hp string
		var err error
		costtest.Linear(t, "hostPort", len(addr), 64, 64<<10, func() { hp, err = hostPort(addr) })
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" {
			t.Fatalf("hostPort(%q) = %q, which does not split: %v", addr, hp, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("hostPort(%q) = %q: port out of range", addr, hp)
		}
		if again, err := hostPort(hp); err != nil || again != hp {
			t.Fatalf("hostPort(%q) = %q, %v; want it unchanged", hp, again, err)
		}
	})
}
