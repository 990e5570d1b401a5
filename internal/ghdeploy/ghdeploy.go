// Package ghdeploy records a deploy as a GitHub Deployment: created for
// the commit and environment, in_progress while it runs, then success,
// failure or error, through GitHub's REST API.
//
// It never decides a deploy: a front door reports what went wrong here
// as a warning and goes on.
package ghdeploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"
)

// Deployment states (GitHub's).
const (
	InProgress = "in_progress"
	Success    = "success"
	Failure    = "failure" // it ran and failed (rolled back, migration)
	Error      = "error"   // it could not run (checks, configuration)
	Inactive   = "inactive"
)

// callTimeout bounds each API call.
const callTimeout = 30 * time.Second

// Client posts Deployments and their statuses for one repository.
type Client struct {
	gh          *github.Client
	owner, repo string
}

// New is a client for repository (OWNER/NAME) with a token, at apiURL
// (GITHUB_API_URL: https://api.github.com, or an Enterprise server's
// https://HOST/api/v3); "" means GitHub's.
func New(token, apiURL, repository string) (*Client, error) {
	owner, repo, ok := strings.Cut(repository, "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return nil, fmt.Errorf("repository %q: want OWNER/NAME (GITHUB_REPOSITORY)", repository)
	}
	gh := github.NewClient(&http.Client{Timeout: callTimeout}).WithAuthToken(token)
	if apiURL != "" {
		u, err := url.Parse(strings.TrimSuffix(apiURL, "/") + "/")
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("API URL %q: want https://HOST[/api/v3] (GITHUB_API_URL)", apiURL)
		}
		gh.BaseURL = u
	}
	return &Client{gh: gh, owner: owner, repo: repo}, nil
}

// Start creates a Deployment of ref in environment and marks it
// in_progress; it returns the Deployment's ID, also when only marking it
// failed.
func (c *Client) Start(ctx context.Context, ref, environment, task, logURL string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	d, _, err := c.gh.Repositories.CreateDeployment(ctx, c.owner, c.repo, &github.DeploymentRequest{
		Ref:         github.String(ref),
		Task:        github.String(task),
		Environment: github.String(environment),
		// The workflow that deploys has already run what it wanted to run:
		// no merge of the default branch, no status checks asked for.
		AutoMerge:        github.Bool(false),
		RequiredContexts: &[]string{},
		Description:      github.String("deployer " + task),
	})
	if err != nil {
		return 0, explain("create a deployment", err)
	}
	return d.GetID(), c.Status(ctx, d.GetID(), InProgress, "", logURL, "")
}

// Status posts a state of Deployment id. A success makes the earlier
// Deployments of its environment inactive (GitHub's auto_inactive).
func (c *Client) Status(ctx context.Context, id int64, state, environmentURL, logURL, description string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req := &github.DeploymentStatusRequest{State: github.String(state), AutoInactive: github.Bool(true)}
	if environmentURL != "" {
		req.EnvironmentURL = github.String(environmentURL)
	}
	if logURL != "" {
		req.LogURL = github.String(logURL)
	}
	if description != "" {
		req.Description = github.String(truncate(description, 140)) // GitHub's limit
	}
	if _, _, err := c.gh.Repositories.CreateDeploymentStatus(ctx, c.owner, c.repo, id, req); err != nil {
		return explain(fmt.Sprintf("post %s on deployment %d", state, id), err)
	}
	return nil
}

// explain turns GitHub's refusal into what to change: a token without
// the permission is the usual cause.
func explain(what string, err error) error {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		switch er.Response.StatusCode {
		case http.StatusForbidden:
			return fmt.Errorf("%s: GitHub answered 403 (%s): the token lacks the permission; add `permissions: deployments: write` to the job", what, er.Message)
		case http.StatusNotFound:
			return fmt.Errorf("%s: GitHub answered 404 (%s): no such repository or deployment at this API URL, or the token cannot see it (`permissions: deployments: write`)", what, er.Message)
		case http.StatusUnauthorized:
			return fmt.Errorf("%s: GitHub answered 401 (%s): the github-token input is not a valid token", what, er.Message)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// truncate keeps s to n characters.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
