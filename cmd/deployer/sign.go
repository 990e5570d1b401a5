package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/semalink/deploy-action/checks/project"
	"github.com/semalink/deploy-action/server"
	"github.com/spf13/cobra"
)

// signOptions are the flags of `deployer sign`.
type signOptions struct {
	scheme, secretEnv, url, data, event, id string
}

func newSignCommand() *cobra.Command {
	var o signOptions
	cmd := &cobra.Command{
		Use:   "sign --scheme github|slack|standard --secret-env NAME --data JSON|@FILE [--url URL]",
		Short: "Sign a webhook request as the server expects it: print its headers, or send it",
		Long: `sign signs a request body the way deployer serve verifies it, for bots,
scripts and tests: GitHub's X-Hub-Signature-256, Slack's v0 signature with
its timestamp, or Standard Webhooks' webhook-id, webhook-timestamp and
webhook-signature. The secret is read from the environment variable
--secret-env names, never from a flag. Without --url it prints the headers;
with it, it sends the POST and prints the answer.`,
		Example: `  DEPLOY_HOOK_SECRET=whsec_… deployer sign --scheme standard --secret-env DEPLOY_HOOK_SECRET \
    --data '{"action":"redeploy","project":"demo"}' --url http://127.0.0.1:9000/hooks/standard`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSign(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.scheme, "scheme", "", "github, slack or standard")
	f.StringVar(&o.secretEnv, "secret-env", "", "name of the environment variable that holds the secret")
	f.StringVar(&o.url, "url", "", "send the signed POST there and print the answer")
	f.StringVar(&o.data, "data", "", "the body: JSON (or Slack's form text), or @FILE")
	f.StringVar(&o.event, "event", "push", "github: the X-GitHub-Event")
	f.StringVar(&o.id, "id", "", "the delivery or message ID (default: random)")
	return cmd
}

func runSign(cmd *cobra.Command, o signOptions) error {
	if !slices.Contains([]string{server.SchemeGitHub, server.SchemeSlack, server.SchemeStandard}, o.scheme) {
		return &exitError{code: exitConfig, err: fmt.Errorf("--scheme %q: use github, slack or standard", o.scheme)}
	}
	secret := os.Getenv(o.secretEnv)
	if o.secretEnv == "" || secret == "" {
		return &exitError{code: exitConfig, err: fmt.Errorf("--secret-env: give the name of a set environment variable that holds the secret (%q is empty)", o.secretEnv)}
	}
	body := []byte(o.data)
	if file, ok := strings.CutPrefix(o.data, "@"); ok {
		var err error
		if body, err = project.ReadPlainFile(file, maxSignData); err != nil {
			return &exitError{code: exitConfig, err: fmt.Errorf("--data: %w", err)}
		}
	}
	id := o.id
	if id == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		id = "msg_" + hex.EncodeToString(b)
	}
	var h http.Header
	contentType := "application/json"
	switch o.scheme {
	case server.SchemeGitHub:
		h = server.SignGitHub([]byte(secret), body)
		h.Set("X-GitHub-Event", o.event)
		h.Set("X-GitHub-Delivery", id)
	case server.SchemeSlack:
		h = server.SignSlack([]byte(secret), body, time.Now())
		contentType = "application/x-www-form-urlencoded"
	case server.SchemeStandard:
		var err error
		if h, err = server.SignStandard(secret, id, body, time.Now()); err != nil {
			return &exitError{code: exitConfig, err: fmt.Errorf("--secret-env %s: %w", o.secretEnv, err)}
		}
	}
	h.Set("Content-Type", contentType)
	out := cmd.OutOrStdout()
	if o.url == "" {
		for _, k := range sortedKeys(h) {
			fmt.Fprintf(out, "%s: %s\n", k, h.Get(k))
		}
		return nil
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return &exitError{code: exitConfig, err: fmt.Errorf("--url: %w", err)}
	}
	req.Header = h
	client := &http.Client{
		Timeout: 30 * time.Second,
		// A redirect would carry the signed request to wherever it points,
		// to be replayed from there: it is an answer, not a way on.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("send: %w", err)}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Fprintf(out, "%s\n%s\n", resp.Status, printable(answer))
	if resp.StatusCode >= 300 {
		return &exitError{code: exitFailed, err: errors.New(resp.Status)}
	}
	return nil
}

// maxSignData bounds --data @FILE: GitHub's own limit on a delivery.
const maxSignData = 25 << 20

// printable is an answer with its control characters (a terminal's escape
// sequences) shown as escapes.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, string(b))
}
