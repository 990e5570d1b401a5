package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"
)

// Tolerance is how far a signed timestamp may be from the server's clock,
// either way (Slack's and Standard Webhooks' own figure).
const Tolerance = 5 * time.Minute

// The schemes, as --scheme and the hooks' names say them.
const (
	SchemeGitHub   = "github"
	SchemeSlack    = "slack"
	SchemeStandard = "standard"
)

// Why a request was not verified; all of them answer 401.
var (
	ErrUnsigned     = errors.New("the request carries no signature")
	ErrBadSignature = errors.New("the signature does not match the body under any configured secret")
	ErrStale        = errors.New("the signed timestamp is more than 5 minutes away from the server's clock")
	ErrTimestamp    = errors.New("the signed timestamp is not a number of seconds")
)

// VerifyGitHub checks X-Hub-Signature-256 over body (go-github's
// ValidateSignature) with each secret.
func VerifyGitHub(secrets [][]byte, h http.Header, body []byte) error {
	sig := h.Get(github.SHA256SignatureHeader)
	if sig == "" {
		return ErrUnsigned
	}
	if !strings.HasPrefix(sig, "sha256=") {
		return ErrBadSignature // ValidateSignature would take sha1= too
	}
	for _, s := range secrets {
		if github.ValidateSignature(sig, body, s) == nil {
			return nil
		}
	}
	return ErrBadSignature
}

// SignGitHub is the X-Hub-Signature-256 of body.
func SignGitHub(secret, body []byte) http.Header {
	h := http.Header{}
	h.Set(github.SHA256SignatureHeader, "sha256="+hexMAC(secret, body))
	return h
}

// VerifySlack checks Slack's v0 signature: HMAC-SHA256 of
// "v0:TIMESTAMP:BODY" in X-Slack-Signature, the timestamp in
// X-Slack-Request-Timestamp within Tolerance of now.
func VerifySlack(secrets [][]byte, h http.Header, body []byte, now time.Time) error {
	sig, ts := h.Get("X-Slack-Signature"), h.Get("X-Slack-Request-Timestamp")
	if sig == "" || ts == "" {
		return ErrUnsigned
	}
	if err := fresh(ts, now); err != nil {
		return err
	}
	got, ok := strings.CutPrefix(sig, "v0=")
	if !ok {
		return ErrBadSignature
	}
	for _, s := range secrets {
		if hmac.Equal([]byte(got), []byte(hexMAC(s, slackBase(ts, body)))) {
			return nil
		}
	}
	return ErrBadSignature
}

// SignSlack is Slack's headers for body at now.
func SignSlack(secret, body []byte, now time.Time) http.Header {
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", ts)
	h.Set("X-Slack-Signature", "v0="+hexMAC(secret, slackBase(ts, body)))
	return h
}

func slackBase(ts string, body []byte) []byte {
	return append([]byte("v0:"+ts+":"), body...)
}

// VerifyStandard checks a Standard Webhooks request: webhook-signature
// holds one or more space-separated "v1,BASE64" HMAC-SHA256 signatures of
// "ID.TIMESTAMP.BODY" under the secret's key (whsec_BASE64); the
// timestamp must be within Tolerance of now. It returns the message ID,
// which the caller keeps to refuse a replay.
func VerifyStandard(secrets []string, h http.Header, body []byte, now time.Time) (string, error) {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return "", ErrUnsigned
	}
	if err := fresh(ts, now); err != nil {
		return "", err
	}
	for _, s := range secrets {
		key, err := StandardKey(s)
		if err != nil {
			continue // refused when the configuration was loaded
		}
		want := standardMAC(key, id, ts, body)
		for _, sig := range strings.Fields(sigs) {
			if v, mac, ok := strings.Cut(sig, ","); ok && v == "v1" && hmac.Equal([]byte(mac), []byte(want)) {
				return id, nil
			}
		}
	}
	return "", ErrBadSignature
}

// SignStandard is the Standard Webhooks headers of body, message id, at now.
func SignStandard(secret, id string, body []byte, now time.Time) (http.Header, error) {
	key, err := StandardKey(secret)
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+standardMAC(key, id, ts, body))
	return h, nil
}

// StandardKey decodes a Standard Webhooks secret, whsec_ and base64.
func StandardKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("a Standard Webhooks secret starts with whsec_ and is base64")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("a Standard Webhooks secret is whsec_ and base64: %w", err)
	}
	return key, nil
}

func standardMAC(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func hexMAC(key, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// fresh checks a Unix timestamp, digits only, against now.
func fresh(ts string, now time.Time) error {
	if len(ts) == 0 || len(ts) > 12 || strings.Trim(ts, "0123456789") != "" {
		return ErrTimestamp
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return ErrStale
	}
	return nil
}
