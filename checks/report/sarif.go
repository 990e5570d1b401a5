package report

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

const (
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	sarifVersion = "2.1.0"
	// srcRoot is the base that relative paths hang from; GitHub code
	// scanning resolves it to the repository's checkout.
	srcRoot        = "%SRCROOT%"
	toolName       = "deployer"
	informationURI = "https://github.com/semalink/deploy-action"
)

// The SARIF types hold the subset of SARIF 2.1.0 that deployer writes.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool               sarifTool                   `json:"tool"`
		OriginalURIBaseIDs map[string]sarifArtifactLoc `json:"originalUriBaseIds,omitempty"`
		Results            []sarifResult               `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri"`
		Version        string      `json:"version,omitempty"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string      `json:"id"`
		Name                 string      `json:"name"`
		ShortDescription     sarifText   `json:"shortDescription"`
		FullDescription      sarifText   `json:"fullDescription"`
		Help                 sarifText   `json:"help"`
		HelpURI              string      `json:"helpUri"`
		DefaultConfiguration sarifConfig `json:"defaultConfiguration"`
	}
	sarifText struct {
		Text string `json:"text"`
	}
	sarifConfig struct {
		Level string `json:"level"`
	}
	sarifResult struct {
		RuleID       string             `json:"ruleId"`
		RuleIndex    *int               `json:"ruleIndex,omitempty"`
		Level        string             `json:"level"`
		Message      sarifText          `json:"message"`
		Locations    []sarifLocation    `json:"locations,omitempty"`
		Suppressions []sarifSuppression `json:"suppressions,omitempty"`
	}
	sarifLocation struct {
		PhysicalLocation sarifPhysical `json:"physicalLocation"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifactLoc `json:"artifactLocation"`
		Region           *sarifRegion     `json:"region,omitempty"`
	}
	sarifArtifactLoc struct {
		URI       string `json:"uri"`
		URIBaseID string `json:"uriBaseId,omitempty"`
	}
	sarifRegion struct {
		StartLine   int `json:"startLine"`
		StartColumn int `json:"startColumn,omitempty"`
	}
	sarifSuppression struct {
		Kind          string `json:"kind"`
		Justification string `json:"justification,omitempty"`
	}
)

// SARIF prints findings as a SARIF 2.1.0 log for GitHub code scanning: one
// run, every rule in the driver (so that code scanning can tell a rule that
// found nothing from one that no longer exists and close its alerts), and a
// result per finding. Suppressed findings are included with a suppression.
func SARIF(w io.Writer, fs []checks.Finding, o Options) error {
	fs = resolved(fs)
	rules := checks.Rules()
	index := make(map[string]int, len(rules))
	driver := sarifDriver{Name: toolName, InformationURI: informationURI, Version: o.Version,
		Rules: make([]sarifRule, 0, len(rules))}
	for i, r := range rules {
		index[r.ID] = i
		driver.Rules = append(driver.Rules, sarifRule{
			ID:                   r.ID,
			Name:                 camelCase(r.ID),
			ShortDescription:     sarifText{r.Title},
			FullDescription:      sarifText{r.Help},
			Help:                 sarifText{r.Help + "\n\nFix: see " + r.DocURL()},
			HelpURI:              r.DocURL(),
			DefaultConfiguration: sarifConfig{level(r.Severity)},
		})
	}

	run := sarifRun{Tool: sarifTool{driver}, Results: make([]sarifResult, 0, len(fs))}
	if base := rootURI(o.Root); base != "" {
		run.OriginalURIBaseIDs = map[string]sarifArtifactLoc{srcRoot: {URI: base}}
	}
	for _, f := range fs {
		res := sarifResult{RuleID: f.Rule, Level: level(f.Severity), Message: sarifText{f.Message}}
		if f.Fix != "" {
			res.Message.Text += " Fix: " + f.Fix
		}
		if i, ok := index[f.Rule]; ok {
			res.RuleIndex = &i
		}
		if loc, ok := sarifLocationOf(f.Pos, o.Root); ok {
			res.Locations = []sarifLocation{loc}
		}
		if s := f.Suppressed; s != nil {
			res.Suppressions = []sarifSuppression{{Kind: suppressionKind(s), Justification: s.Reason}}
		}
		run.Results = append(run.Results, res)
	}

	var b bytes.Buffer
	if err := encodeJSON(&b, sarifLog{Schema: sarifSchema, Version: sarifVersion, Runs: []sarifRun{run}}); err != nil {
		return fmt.Errorf("encode sarif report: %w", err)
	}
	return flush(w, "sarif", &b)
}

// level is the SARIF name of a severity; SARIF calls info "note".
func level(s checks.Severity) string {
	switch s {
	case checks.Error:
		return "error"
	case checks.Info:
		return "note"
	}
	return "warning"
}

// suppressionKind says where a suppression is written. Both kinds deployer
// knows, the "# deployer:ignore" comment and the x-deployer ignore list,
// are written in the Compose files that the run analyses, which SARIF
// calls in source. project.Suppression does not record which of the two
// it came from, so they cannot be told apart here.
func suppressionKind(*project.Suppression) string { return "inSource" }

// sarifLocationOf turns a position into a SARIF location: a path relative
// to the root hangs from %SRCROOT%, an absolute one outside it becomes a
// file URI. A position without a file has no location.
func sarifLocationOf(p project.Position, root string) (sarifLocation, bool) {
	if p.File == "" {
		return sarifLocation{}, false
	}
	art := sarifArtifactLoc{URIBaseID: srcRoot}
	name := p.File
	if filepath.IsAbs(name) {
		rel, err := filepath.Rel(root, name)
		if root == "" || !filepath.IsAbs(root) || err != nil || !filepath.IsLocal(rel) {
			art = sarifArtifactLoc{URI: fileURI(name)}
		} else {
			name = rel
		}
	}
	if art.URI == "" {
		art.URI = (&url.URL{Path: path.Clean(filepath.ToSlash(name))}).String()
	}
	loc := sarifLocation{PhysicalLocation: sarifPhysical{ArtifactLocation: art}}
	if p.Line > 0 {
		loc.PhysicalLocation.Region = &sarifRegion{StartLine: p.Line, StartColumn: p.Column}
	}
	return loc, true
}

// rootURI is the file URI of an absolute root directory, with the trailing
// slash SARIF requires of a base; "" when there is none to give.
func rootURI(root string) string {
	if root == "" || !filepath.IsAbs(root) {
		return ""
	}
	u := fileURI(root)
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	return u
}

// fileURI is the file URI of an absolute path; a Windows drive letter
// gets the leading slash the URI form needs ("file:///C:/src").
func fileURI(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return (&url.URL{Scheme: "file", Path: p}).String()
}

// camelCase turns a rule ID into the name SARIF viewers show:
// "healthcheck-missing" is "HealthcheckMissing".
func camelCase(id string) string {
	var b strings.Builder
	for part := range strings.FieldsFuncSeq(id, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
