package remote

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// auth is how the client proves who it is: a key file or the SSH agent.
type auth struct {
	method ssh.AuthMethod
	keys   []ssh.PublicKey // what was offered, for the error if refused
	from   string          // the key file, or "" for the agent
	agent  net.Conn
}

func newAuth(cfg Config) (*auth, error) {
	if cfg.KeyFile == "" {
		return agentAuth()
	}
	signer, err := loadKey(cfg.KeyFile, cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	return &auth{
		method: ssh.PublicKeys(signer),
		keys:   []ssh.PublicKey{signer.PublicKey()},
		from:   cfg.KeyFile,
	}, nil
}

// CheckKey reads and parses a private key file as a connection would
// (asking passphrase for an encrypted one), so that a bad key is found
// before anything connects.
func CheckKey(file string, passphrase func() ([]byte, error)) error {
	_, err := loadKey(file, passphrase)
	return err
}

func loadKey(file string, passphrase func() ([]byte, error)) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read SSH key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
		if passphrase == nil {
			return nil, fmt.Errorf("SSH key %s is encrypted: give its passphrase in DEPLOYER_SSH_PASSPHRASE, "+
				"or load it into an SSH agent (ssh-add %s) and give no key file", file, Quote(file))
		}
		pass, perr := passphrase()
		if perr != nil {
			return nil, fmt.Errorf("passphrase of SSH key %s: %w", file, perr)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("SSH key %s: wrong passphrase", file)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("parse SSH key %s: %w (give the whole private key, OpenSSH or PEM, from its -----BEGIN line to its -----END line)", file, err)
	}
	return signer, nil
}

func agentAuth() (*auth, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, errors.New("no SSH key given and no SSH agent (SSH_AUTH_SOCK is not set): give a key file (--ssh-key) or start an agent and ssh-add the key")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("SSH agent: %w", err)
	}
	ag := agent.NewClient(conn)
	keys, err := ag.List()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("SSH agent: list keys: %w", err)
	}
	if len(keys) == 0 {
		conn.Close()
		return nil, fmt.Errorf("the SSH agent at %s has no keys: ssh-add the deploy key", sock)
	}
	a := &auth{method: ssh.PublicKeysCallback(ag.Signers), agent: conn}
	for _, k := range keys {
		a.keys = append(a.keys, k)
	}
	return a, nil
}

// close lets go of the agent, which is needed only during the handshake.
func (a *auth) close() {
	if a.agent != nil {
		a.agent.Close()
	}
}

// refused explains an authentication failure and how to fix it.
func (a *auth) refused(cfg Config) error {
	var fps []string
	for _, k := range a.keys {
		fps = append(fps, describeKey(k))
	}
	which := "key " + strings.Join(fps, ", ") + " (" + a.from + ")"
	pub := a.from + ".pub"
	if a.from == "" {
		which = "the SSH agent's keys " + strings.Join(fps, ", ")
		pub = "the public key"
	}
	return fmt.Errorf("the host refused %s for user %s: add %s to ~/.ssh/authorized_keys of %s on the host "+
		"(your provider's console can add it when creating the droplet), or set the user that has it",
		which, cfg.User, pub, cfg.User)
}
