package server

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The schemes' own published examples.
const (
	githubSecret = "It's a Secret to Everybody" // docs.github.com, "Validating webhook deliveries"
	githubBody   = "Hello, World!"
	githubSig    = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	slackSecret = "8f742231b10e8888abcd99yyyzzz85a5" // Slack, "Verifying requests from Slack"
	slackTS     = "1531420618"
	slackBody   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackSig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

	standardSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the Standard Webhooks specification's vector
	standardID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	standardTS     = "1614265330"
	standardBody   = `{"test": 2432232314}`
	standardSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func unix(ts string) time.Time {
	sec, _ := strconv.ParseInt(ts, 10, 64)
	return time.Unix(sec, 0)
}

func flip(s string) []byte {
	b := []byte(s)
	b[len(b)/2] ^= 1
	return b
}

func TestPublishedVectors(t *testing.T) {
	if err := VerifyGitHub([][]byte{[]byte(githubSecret)}, header("X-Hub-Signature-256", githubSig), []byte(githubBody)); err != nil {
		t.Errorf("GitHub's example: %v", err)
	}
	if got := SignGitHub([]byte(githubSecret), []byte(githubBody)).Get("X-Hub-Signature-256"); got != githubSig {
		t.Errorf("SignGitHub = %s, want %s", got, githubSig)
	}
	slack := header("X-Slack-Signature", slackSig, "X-Slack-Request-Timestamp", slackTS)
	if err := VerifySlack([][]byte{[]byte(slackSecret)}, slack, []byte(slackBody), unix(slackTS).Add(time.Minute)); err != nil {
		t.Errorf("Slack's example: %v", err)
	}
	if got := SignSlack([]byte(slackSecret), []byte(slackBody), unix(slackTS)).Get("X-Slack-Signature"); got != slackSig {
		t.Errorf("SignSlack = %s, want %s", got, slackSig)
	}
	std := header("webhook-id", standardID, "webhook-timestamp", standardTS, "webhook-signature", standardSig)
	if id, err := VerifyStandard([]string{standardSecret}, std, []byte(standardBody), unix(standardTS)); err != nil || id != standardID {
		t.Errorf("Standard Webhooks' vector: %q, %v", id, err)
	}
	if h, err := SignStandard(standardSecret, standardID, []byte(standardBody), unix(standardTS)); err != nil || h.Get("webhook-signature") != standardSig {
		t.Errorf("SignStandard = %v (%v), want %s", h, err, standardSig)
	}
}

// A flipped byte, a stale or future timestamp, a wrong or rotated-out
// secret, a missing header: each is refused, for the reason it is.
func TestRefusals(t *testing.T) {
	gh := [][]byte{[]byte(githubSecret)}
	sl := [][]byte{[]byte(slackSecret)}
	st := []string{standardSecret}
	slack := func(ts string) http.Header {
		return header("X-Slack-Signature", slackSig, "X-Slack-Request-Timestamp", ts)
	}
	std := header("webhook-id", standardID, "webhook-timestamp", standardTS, "webhook-signature", standardSig)
	at := unix(standardTS)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"github, body flipped", VerifyGitHub(gh, header("X-Hub-Signature-256", githubSig), flip(githubBody)), ErrBadSignature},
		{"github, wrong secret", VerifyGitHub([][]byte{[]byte("another secret of 26 bytes!")}, header("X-Hub-Signature-256", githubSig), []byte(githubBody)), ErrBadSignature},
		{"github, unsigned", VerifyGitHub(gh, http.Header{}, []byte(githubBody)), ErrUnsigned},
		{"github, sha1 only", VerifyGitHub(gh, header("X-Hub-Signature", "sha1=0000"), []byte(githubBody)), ErrUnsigned},
		{"github, sha1 in the sha256 header", VerifyGitHub(gh, header("X-Hub-Signature-256", "sha1="+sha1hex(githubSecret, githubBody)), []byte(githubBody)), ErrBadSignature},
		{"slack, no v0=", VerifySlack(sl, header("X-Slack-Signature", strings.TrimPrefix(slackSig, "v0="), "X-Slack-Request-Timestamp", slackTS), []byte(slackBody), unix(slackTS)), ErrBadSignature},
		{"slack, timestamp not a number", VerifySlack(sl, slack("15314206l8"), []byte(slackBody), unix(slackTS)), ErrTimestamp},
		{"slack, timestamp with a sign", VerifySlack(sl, slack("+1531420618"), []byte(slackBody), unix(slackTS)), ErrTimestamp},
		{"standard, timestamp overflows", second(VerifyStandard(st, header("webhook-id", standardID, "webhook-timestamp", "99999999999999999999", "webhook-signature", standardSig), []byte(standardBody), at)), ErrTimestamp},
		{"slack, body flipped", VerifySlack(sl, slack(slackTS), flip(slackBody), unix(slackTS)), ErrBadSignature},
		{"slack, stale", VerifySlack(sl, slack(slackTS), []byte(slackBody), unix(slackTS).Add(Tolerance+time.Second)), ErrStale},
		{"slack, from the future", VerifySlack(sl, slack(slackTS), []byte(slackBody), unix(slackTS).Add(-Tolerance-time.Second)), ErrStale},
		{"slack, timestamp changed", VerifySlack(sl, slack("1531420619"), []byte(slackBody), unix(slackTS)), ErrBadSignature},
		{"slack, unsigned", VerifySlack(sl, header("X-Slack-Request-Timestamp", slackTS), []byte(slackBody), unix(slackTS)), ErrUnsigned},
		{"standard, body flipped", second(VerifyStandard(st, std, flip(standardBody), at)), ErrBadSignature},
		{"standard, stale", second(VerifyStandard(st, std, []byte(standardBody), at.Add(Tolerance+time.Second))), ErrStale},
		{"standard, from the future", second(VerifyStandard(st, std, []byte(standardBody), at.Add(-Tolerance-time.Second))), ErrStale},
		{"standard, another id", second(VerifyStandard(st, header("webhook-id", "msg_other", "webhook-timestamp", standardTS, "webhook-signature", standardSig), []byte(standardBody), at)), ErrBadSignature},
		{"standard, rotated out", second(VerifyStandard([]string{"whsec_" + "c2VjcmV0LXRoYXQtcmVwbGFjZWQtaXQ="}, std, []byte(standardBody), at)), ErrBadSignature},
		{"standard, unsigned", second(VerifyStandard(st, header("webhook-id", standardID), []byte(standardBody), at)), ErrUnsigned},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

// During a rotation both secrets are configured: a request signed with
// either passes.
func TestRotation(t *testing.T) {
	old, cur := []byte("the-old-secret-0123456789"), []byte("the-new-secret-9876543210")
	body := []byte(`{"action":"deploy","project":"demo"}`)
	for _, s := range [][]byte{old, cur} {
		if err := VerifyGitHub([][]byte{cur, old}, SignGitHub(s, body), body); err != nil {
			t.Errorf("signed with %s: %v", s, err)
		}
		now := time.Now()
		if err := VerifySlack([][]byte{cur, old}, SignSlack(s, body, now), body, now); err != nil {
			t.Errorf("slack, signed with %s: %v", s, err)
		}
	}
	// A signature list with an unknown version and a good v1 passes.
	h, _ := SignStandard(standardSecret, "msg_1", []byte(standardBody), at0)
	h.Set("webhook-signature", "v1a,xxxx "+h.Get("webhook-signature"))
	if _, err := VerifyStandard([]string{"whsec_" + "b3RoZXI=", standardSecret}, h, []byte(standardBody), at0); err != nil {
		t.Errorf("standard with two secrets and two signatures: %v", err)
	}
}

var at0 = time.Unix(1_800_000_000, 0)

func second(_ string, err error) error { return err }

func sha1hex(key, data string) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(data))
	return hex.EncodeToString(m.Sum(nil))
}
