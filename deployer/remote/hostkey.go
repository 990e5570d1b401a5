package remote

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyCheck verifies the host key against known_hosts or a pinned
// fingerprint, and keeps the error it gave: the SSH library only passes on
// its text.
type hostKeyCheck struct {
	addr       string // host:port
	file       string // known_hosts, when used
	pinned     string // fingerprint, when used
	db         ssh.HostKeyCallback
	algorithms []string // host key algorithms to ask for; nil for any
	err        error
}

func newHostKeyCheck(cfg Config) (*hostKeyCheck, error) {
	hk := &hostKeyCheck{addr: cfg.Addr}
	switch {
	case cfg.Fingerprint != "":
		fp := strings.TrimRight(strings.TrimSpace(cfg.Fingerprint), "=")
		if !strings.HasPrefix(fp, "SHA256:") || len(fp) != len("SHA256:")+43 {
			return nil, fmt.Errorf("host fingerprint %q: want SHA256:… as ssh-keygen -l prints it (43 characters after SHA256:)", cfg.Fingerprint)
		}
		hk.pinned = fp
		// The pin is of the host's key: ask for the key itself, not a
		// certificate the host may also have.
		hk.algorithms = hostKeyPreference
	case cfg.KnownHosts != "":
		db, err := knownhosts.New(cfg.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		hk.file, hk.db = cfg.KnownHosts, db
		// Certificates are asked for only where a CA is trusted for the
		// host; a host known by nothing shows its plain key, which is what
		// a person verifies and adds.
		hk.algorithms = append(hk.authorityAlgorithms(), hk.knownAlgorithms()...)
		if len(hk.algorithms) == 0 {
			hk.algorithms = hostKeyPreference
		}
	default:
		return nil, errors.New("no way to verify the host key: give a known_hosts file (--known-hosts) or the host key's fingerprint (--host-fingerprint SHA256:…)")
	}
	return hk, nil
}

// probeKey is a key that is in no known_hosts file: checking it lists the
// keys known for a host.
var probeKey, _ = ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())

// knownAlgorithms are the host key algorithms of the keys known_hosts has
// for the host, so that the host presents one of those and not another kind
// of key that would look like a changed key.
func (hk *hostKeyCheck) knownAlgorithms() []string {
	var ke *knownhosts.KeyError
	if !errors.As(hk.db(hk.addr, placeholderAddr, probeKey), &ke) {
		return nil
	}
	var algos []string
	for _, algo := range hostKeyPreference {
		if slices.ContainsFunc(ke.Want, func(k knownhosts.KnownKey) bool { return keyType(algo) == k.Key.Type() }) {
			algos = append(algos, algo)
		}
	}
	for _, k := range ke.Want { // kinds the list above does not know
		if !slices.ContainsFunc(algos, func(a string) bool { return keyType(a) == k.Key.Type() }) {
			algos = append(algos, k.Key.Type())
		}
	}
	return algos
}

// authorityAlgorithms are the host certificate algorithms, when
// known_hosts has an @cert-authority line for the host: then the host is
// asked for its certificate first.
func (hk *hostKeyCheck) authorityAlgorithms() []string {
	data, err := os.ReadFile(hk.file)
	if err != nil {
		return nil
	}
	for rest := data; len(rest) > 0; {
		marker, _, key, _, next, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			return nil
		}
		rest = next
		if marker == "cert-authority" && hk.authorityFor(key) {
			return certPreference
		}
	}
	return nil
}

// authorityFor tells whether known_hosts trusts ca to sign this host's
// certificate. The library does not say; it is asked through a
// certificate that ca would have signed, which fails for want of a
// signature if ca is trusted here, and for want of an authority if not.
func (hk *hostKeyCheck) authorityFor(ca ssh.PublicKey) bool {
	probe := &ssh.Certificate{Key: probeKey, CertType: ssh.HostCert, SignatureKey: ca}
	err := hk.db(hk.addr, placeholderAddr, probe)
	return err != nil && !strings.Contains(err.Error(), "no authorities for hostname")
}

// certPreference is the order in which host certificates are asked for.
var certPreference = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01,
}

// hostKeyPreference is the order in which host key algorithms are asked for.
var hostKeyPreference = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
}

// keyType is the type of key that a host key algorithm signs with.
func keyType(algo string) string {
	if algo == ssh.KeyAlgoRSASHA512 || algo == ssh.KeyAlgoRSASHA256 {
		return ssh.KeyAlgoRSA
	}
	return algo
}

// placeholderAddr stands in for the remote address, which knownhosts wants
// to be TCP but ignores when it is given the host name.
var placeholderAddr = &net.TCPAddr{IP: net.IPv4zero}

func (hk *hostKeyCheck) verify(_ string, _ net.Addr, key ssh.PublicKey) error {
	hk.err = hk.check(key)
	return hk.err
}

func (hk *hostKeyCheck) check(key ssh.PublicKey) error {
	got := describeKey(key)
	if hk.pinned != "" {
		// A certificate's key is what the host proved it holds.
		if cert, ok := key.(*ssh.Certificate); ok {
			key, got = cert.Key, describeKey(cert.Key)
		}
		if ssh.FingerprintSHA256(key) == hk.pinned {
			return nil
		}
		return fmt.Errorf("host key mismatch: the host presented %s, but the pinned fingerprint is %s.\n"+
			"Someone may be intercepting the connection (man-in-the-middle), or the host key was replaced. "+
			"Compare with the fingerprint in your provider's console, or on the host: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub",
			got, hk.pinned, shortType(key))
	}
	err := hk.db(hk.addr, placeholderAddr, key)
	var ke *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &revoked):
		return fmt.Errorf("the host presented %s, which %s:%d marks as revoked", got, revoked.Revoked.Filename, revoked.Revoked.Line)
	case isCert(key):
		return fmt.Errorf("the host presented a certificate (%s) that %s does not accept: %w.\n"+
			"Check that its @cert-authority line names this host and the CA that signed the host's certificate, "+
			"and that the certificate is valid now, names the host and is not revoked", got, hk.file, err)
	case errors.As(err, &ke) && len(ke.Want) > 0:
		var want []string
		for _, k := range ke.Want {
			want = append(want, fmt.Sprintf("%s (%s:%d)", describeKey(k.Key), k.Filename, k.Line))
		}
		return fmt.Errorf("the host key has CHANGED: the host presented %s, but known_hosts has %s.\n"+
			"Someone may be intercepting the connection (man-in-the-middle), or the host was rebuilt. Deploy nothing until you know which. "+
			"If it was rebuilt, remove the old entry with\n\tssh-keygen -R %s -f %s\nthen add the new key as for a new host:\n%s",
			got, strings.Join(want, ", "), Quote(knownhosts.Normalize(hk.addr)), Quote(hk.file), hk.howToAdd())
	case errors.As(err, &ke):
		return fmt.Errorf("unknown host key: the host presented %s, which is not in %s.\n"+
			"Verify the key before trusting it:\n%s\n"+
			"or, once verified, pass its fingerprint with --host-fingerprint",
			got, hk.file, hk.howToAdd())
	}
	return fmt.Errorf("check host key: %w", err)
}

// howToAdd says how to fetch, verify and record the host's key.
func (hk *hostKeyCheck) howToAdd() string {
	host, port, _ := net.SplitHostPort(hk.addr)
	scan := "ssh-keyscan "
	if port != "22" {
		scan += "-p " + port + " "
	}
	return fmt.Sprintf("\t%s%s >> %s\n"+
		"\tssh-keygen -lf %s\n"+
		"and compare the fingerprint it prints for %s with the one in your provider's console (or from ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host's console)",
		scan, Quote(host), Quote(hk.file), Quote(hk.file), knownhosts.Normalize(hk.addr))
}

// noCommonAlgorithm explains a host that offers none of the kinds of keys
// known_hosts has for it.
func (hk *hostKeyCheck) noCommonAlgorithm(err error) error {
	return fmt.Errorf("known_hosts has only %s keys for this host and the host offers none of them: its keys have changed "+
		"(possible man-in-the-middle, or the host was rebuilt): %w", strings.Join(hk.algorithms, ", "), err)
}

func isCert(key ssh.PublicKey) bool {
	_, ok := key.(*ssh.Certificate)
	return ok
}

// describeKey is "ssh-ed25519 SHA256:…".
func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// shortType is the key type as in the names of OpenSSH's host key files.
func shortType(k ssh.PublicKey) string {
	switch t := k.Type(); {
	case t == ssh.KeyAlgoED25519:
		return "ed25519"
	case strings.HasPrefix(t, "ecdsa"):
		return "ecdsa"
	default:
		return "rsa"
	}
}
