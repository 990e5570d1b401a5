package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks"
	"github.com/semalink/deploy-action/checks/project"
)

var update = flag.Bool("update", false, "update the golden files in testdata/")

// fixture covers what the formats treat differently: every severity, a
// zero severity (the rule's own), a suppressed finding, a finding without
// a line, with and without a column, with and without a service, a rule no
// one knows, a message that needs escaping, and two files.
func fixture() []checks.Finding {
	return []checks.Finding{
		{Rule: "logs-not-forwarded", Severity: checks.Info, Pos: project.Position{File: "compose.yaml"},
			Message: "no service forwards logs off the host: they can only be read with docker compose logs over SSH",
			Fix:     "add a log shipper service (e.g. Vector or Promtail), or a forwarding driver such as syslog"},
		{Rule: "compose-version-obsolete", Severity: checks.Info, Pos: project.Position{File: "compose.yaml", Line: 1, Column: 1},
			Message: "the top-level version key is obsolete and ignored",
			Fix:     "remove the version: line"},
		{Rule: "secret-in-compose", Severity: checks.Error, Service: "api", Pos: project.Position{File: "compose.yaml", Line: 12, Column: 7},
			Message: "DB_PASSWORD of api is a literal value in compose.yaml (value not shown)",
			Fix:     "write DB_PASSWORD: ${DB_PASSWORD} and set DB_PASSWORD in the .env file or, in CI, from a secret; then rotate the exposed value"},
		{Rule: "neon-pooler", Severity: checks.Warning, Service: "api", Pos: project.Position{File: "compose.yaml", Line: 14, Column: 7},
			Message: "DATABASE_URL in api connects to Neon directly (ep-cool-1.neon.tech), not through its pooler:\n100% of its connections count against the limit",
			Fix:     "use the pooled host ep-cool-1-pooler.neon.tech, and keep the client's pool small (max: 10)"},
		{Rule: "healthcheck-missing", Severity: checks.Error, Service: "worker", Pos: project.Position{File: "compose.yaml", Line: 20},
			Message: "worker has no healthcheck, but api relies on it: after it dies they keep sending it traffic",
			Fix:     "add to worker: healthcheck: {test: [\"CMD-SHELL\", \"wget -qO- http://127.0.0.1:PORT/health || exit 1\"], interval: 15s}"},
		{Rule: "image-latest", Severity: checks.Warning, Service: "cache", Pos: project.Position{File: "compose.yaml", Line: 31, Column: 12},
			Message:    "cache uses redis:latest, which is not pinned: each pull may bring another version",
			Fix:        "pin a version tag (e.g. redis:3.13) or a digest (@sha256:…)",
			Suppressed: &project.Suppression{Rule: "image-latest", Service: "cache", Reason: "a throwaway cache: any 7.x will do"}},
		{Rule: "suppression-invalid", Pos: project.Position{File: "compose.yaml", Line: 40, Column: 5},
			Message: "the suppression of restart-missing gives no reason, so it is not applied",
			Fix:     "say why the finding does not apply here, after the rule ID (inline) or in reason: (x-deployer)"},
		{Rule: "caddy-tls-internal", Severity: checks.Warning, Service: "proxy", Pos: project.Position{File: "deploy/Caddyfile", Line: 3},
			Message: "Caddy serves a self-signed certificate (tls internal): clients that verify the CA chain refuse it",
			Fix:     "remove `tls internal` to get a Let's Encrypt certificate (port 80 must be reachable)"},
	}
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./checks/report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test ./checks/report -update if the change is meant)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

func render(t *testing.T, format string, fs []checks.Finding, o Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, format, fs, o); err != nil {
		t.Fatalf("Write %s: %v", format, err)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	tests := []struct {
		golden, format string
		o              Options
	}{
		{"text.golden", "text", Options{}},
		{"text-color.golden", "text", Options{Color: true}},
		{"json.golden", "json", Options{}},
		{"sarif.golden", "sarif", Options{Version: "1.2.3"}},
		{"github.golden", "github", Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			golden(t, tt.golden, render(t, tt.format, fixture(), tt.o))
		})
	}
}

func TestWriteAcceptsEveryFormat(t *testing.T) {
	for _, format := range Formats {
		if out := render(t, format, fixture(), Options{}); len(out) == 0 {
			t.Errorf("%s: no output", format)
		}
	}
}

func TestWriteUnknownFormat(t *testing.T) {
	var b bytes.Buffer
	err := Write(&b, "xml", fixture(), Options{})
	if err == nil {
		t.Fatal("Write xml: no error")
	}
	for _, want := range append([]string{`"xml"`}, Formats...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if b.Len() > 0 {
		t.Errorf("wrote %q before failing", b.String())
	}
}

func TestEmpty(t *testing.T) {
	tests := []struct{ format, want string }{
		{"text", "no problems found\n"},
		{"json", `"findings": []`},
		{"sarif", `"results": []`},
		{"github", "no problems found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			for _, fs := range [][]checks.Finding{nil, {}} {
				if got := string(render(t, tt.format, fs, Options{})); !strings.Contains(got, tt.want) {
					t.Errorf("got %q, want it to contain %q", got, tt.want)
				}
			}
		})
	}
	if got := string(render(t, "text", nil, Options{Color: true})); got != "no problems found\n" {
		t.Errorf("text with colour: got %q", got)
	}
}

// TestJSONRoundTrip holds the schema to its documented fields: the golden
// decodes into the schema's types with nothing left over and encodes back
// to the same bytes.
func TestJSONRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/json.golden")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r jsonReport
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode: %v", err)
	}
	var again bytes.Buffer
	if err := encodeJSON(&again, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), data) {
		t.Errorf("round trip changed the document:\n%s", again.Bytes())
	}

	want := jsonSummary{Errors: 2, Warnings: 3, Infos: 2, Suppressed: 1, Failed: true}
	if r.Version != 1 || r.Summary != want {
		t.Errorf("version %d, summary %+v; want 1, %+v", r.Version, r.Summary, want)
	}
	if len(r.Findings) != len(fixture()) {
		t.Fatalf("%d findings, want %d", len(r.Findings), len(fixture()))
	}
	for _, f := range r.Findings {
		if s := f.Suppressed; (s != nil) != (f.Rule == "image-latest") || s != nil && s.Reason == "" {
			t.Errorf("%s: suppressed = %+v", f.Rule, s)
		}
		var sev checks.Severity
		if err := sev.UnmarshalText([]byte(f.Severity)); err != nil {
			t.Errorf("%s: %v", f.Rule, err)
		}
	}
}

func TestTextVerdict(t *testing.T) {
	warning := checks.Finding{Rule: "image-latest", Severity: checks.Warning, Pos: project.Position{File: "compose.yaml", Line: 3}}
	info := checks.Finding{Rule: "logs-not-forwarded", Severity: checks.Info, Pos: project.Position{File: "compose.yaml"}}
	tests := []struct {
		fs     []checks.Finding
		strict bool
		want   string
	}{
		{[]checks.Finding{warning}, false, "1 warning: check passed\n"},
		{[]checks.Finding{warning}, true, "1 warning: check failed\n"},
		{[]checks.Finding{info, info}, true, "2 info: check passed\n"},
		{[]checks.Finding{info, warning, warning}, false, "2 warnings, 1 info: check passed\n"},
	}
	for _, tt := range tests {
		if got := string(render(t, "text", tt.fs, Options{Strict: tt.strict})); !strings.HasSuffix(got, "\n\n"+tt.want) {
			t.Errorf("strict %v: got\n%s\nwant it to end with %q", tt.strict, got, tt.want)
		}
	}
}

func TestJSONFailedFollowsStrict(t *testing.T) {
	warnings := []checks.Finding{{Rule: "image-latest", Severity: checks.Warning, Pos: project.Position{File: "compose.yaml", Line: 3}}}
	for _, strict := range []bool{false, true} {
		var r jsonReport
		if err := json.Unmarshal(render(t, "json", warnings, Options{Strict: strict}), &r); err != nil {
			t.Fatal(err)
		}
		if r.Summary.Failed != strict {
			t.Errorf("strict %v: failed = %v", strict, r.Summary.Failed)
		}
	}
}

// sarifShape is what the test reads of a SARIF log, decoded independently
// of the types that write it.
type sarifShape struct {
	Schema  string `json:"$schema"`
	Version string `json:"version"`
	Runs    []struct {
		Tool struct {
			Driver struct {
				Name    string `json:"name"`
				Version string `json:"version"`
				Rules   []struct {
					ID                   string `json:"id"`
					Name                 string `json:"name"`
					HelpURI              string `json:"helpUri"`
					DefaultConfiguration struct {
						Level string `json:"level"`
					} `json:"defaultConfiguration"`
				} `json:"rules"`
			} `json:"driver"`
		} `json:"tool"`
		Results []struct {
			RuleID    string `json:"ruleId"`
			RuleIndex *int   `json:"ruleIndex"`
			Level     string `json:"level"`
			Message   struct {
				Text string `json:"text"`
			} `json:"message"`
			Locations []struct {
				PhysicalLocation struct {
					ArtifactLocation struct {
						URI       string `json:"uri"`
						URIBaseID string `json:"uriBaseId"`
					} `json:"artifactLocation"`
					Region *struct {
						StartLine   int `json:"startLine"`
						StartColumn int `json:"startColumn"`
					} `json:"region"`
				} `json:"physicalLocation"`
			} `json:"locations"`
			Suppressions []struct {
				Kind          string `json:"kind"`
				Justification string `json:"justification"`
			} `json:"suppressions"`
		} `json:"results"`
	} `json:"runs"`
}

func TestSARIF(t *testing.T) {
	var log sarifShape
	if err := json.Unmarshal(render(t, "sarif", fixture(), Options{Version: "1.2.3"}), &log); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
	if log.Version != "2.1.0" || log.Schema != "https://json.schemastore.org/sarif-2.1.0.json" || len(log.Runs) != 1 {
		t.Fatalf("version %q, $schema %q, %d runs", log.Version, log.Schema, len(log.Runs))
	}
	run := log.Runs[0]
	d := run.Tool.Driver
	if d.Name != "deployer" || d.Version != "1.2.3" || len(d.Rules) != len(checks.Rules()) {
		t.Errorf("driver %q %q with %d rules, want deployer 1.2.3 with %d", d.Name, d.Version, len(d.Rules), len(checks.Rules()))
	}
	for i, r := range d.Rules {
		if want := checks.Rules()[i]; r.ID != want.ID || r.HelpURI != want.DocURL() || r.Name == "" || strings.Contains(r.Name, "-") {
			t.Errorf("rule %d: %+v", i, r)
		}
	}
	levels := []string{"error", "warning", "note"}
	if len(run.Results) != len(fixture()) {
		t.Fatalf("%d results, want %d", len(run.Results), len(fixture()))
	}
	for i, res := range run.Results {
		f := fixture()[i]
		if !slices.Contains(levels, res.Level) {
			t.Errorf("%s: level %q", res.RuleID, res.Level)
		}
		switch {
		case res.RuleIndex != nil && (*res.RuleIndex < 0 || *res.RuleIndex >= len(d.Rules)):
			t.Errorf("%s: ruleIndex %d out of range", res.RuleID, *res.RuleIndex)
		case res.RuleIndex != nil && d.Rules[*res.RuleIndex].ID != res.RuleID:
			t.Errorf("%s: ruleIndex %d points at %s", res.RuleID, *res.RuleIndex, d.Rules[*res.RuleIndex].ID)
		case res.RuleIndex == nil && checks.RuleByID(res.RuleID) != nil:
			t.Errorf("%s: known rule without ruleIndex", res.RuleID)
		}
		if len(res.Locations) != 1 {
			t.Fatalf("%s: %d locations", res.RuleID, len(res.Locations))
		}
		pl := res.Locations[0].PhysicalLocation
		if pl.ArtifactLocation.URI != f.Pos.File || pl.ArtifactLocation.URIBaseID != "%SRCROOT%" {
			t.Errorf("%s: artifact %+v", res.RuleID, pl.ArtifactLocation)
		}
		if (pl.Region == nil) != (f.Pos.Line == 0) || pl.Region != nil && (pl.Region.StartLine != f.Pos.Line || pl.Region.StartColumn != f.Pos.Column) {
			t.Errorf("%s: region %+v for %v", res.RuleID, pl.Region, f.Pos)
		}
		if (len(res.Suppressions) == 1) != (f.Suppressed != nil) {
			t.Errorf("%s: suppressions %+v", res.RuleID, res.Suppressions)
		}
		if !strings.HasPrefix(res.Message.Text, f.Message+" Fix: ") {
			t.Errorf("%s: message %q", res.RuleID, res.Message.Text)
		}
	}
	if s := run.Results[5].Suppressions; len(s) != 1 || s[0].Kind != "inSource" || s[0].Justification != "a throwaway cache: any 7.x will do" {
		t.Errorf("suppression: %+v", s)
	}
	if got := run.Results[6].Level; got != "warning" {
		t.Errorf("a finding with the zero severity has level %q, want its rule's (warning)", got)
	}
}

func TestSARIFPaths(t *testing.T) {
	tests := []struct {
		file, root   string
		uri, baseID  string
		originalBase string
		noLocation   bool
	}{
		{file: "compose.yaml", uri: "compose.yaml", baseID: "%SRCROOT%"},
		{file: "./deploy//Caddyfile", uri: "deploy/Caddyfile", baseID: "%SRCROOT%"},
		{file: "my app/compose #2.yaml", uri: "my%20app/compose%20%232.yaml", baseID: "%SRCROOT%"},
		{file: "compose.yaml", root: "/src/app", uri: "compose.yaml", baseID: "%SRCROOT%", originalBase: "file:///src/app/"},
		{file: "/src/app/deploy/compose.yaml", root: "/src/app/", uri: "deploy/compose.yaml", baseID: "%SRCROOT%", originalBase: "file:///src/app/"},
		{file: "/etc/compose.yaml", root: "/src/app", uri: "file:///etc/compose.yaml", originalBase: "file:///src/app/"},
		{file: "/src/app/compose.yaml", uri: "file:///src/app/compose.yaml"},
		{file: "compose.yaml", root: "relative/dir", uri: "compose.yaml", baseID: "%SRCROOT%"},
		{file: "", noLocation: true},
	}
	for _, tt := range tests {
		t.Run(tt.file+" in "+tt.root, func(t *testing.T) {
			fs := []checks.Finding{{Rule: "image-latest", Severity: checks.Warning, Pos: project.Position{File: tt.file, Line: 2}}}
			out := render(t, "sarif", fs, Options{Root: tt.root})
			var log struct {
				Runs []struct {
					OriginalURIBaseIDs map[string]struct {
						URI string `json:"uri"`
					} `json:"originalUriBaseIds"`
					Results []struct {
						Locations []struct {
							PhysicalLocation struct {
								ArtifactLocation struct {
									URI       string `json:"uri"`
									URIBaseID string `json:"uriBaseId"`
								} `json:"artifactLocation"`
							} `json:"physicalLocation"`
						} `json:"locations"`
					} `json:"results"`
				} `json:"runs"`
			}
			if err := json.Unmarshal(out, &log); err != nil {
				t.Fatal(err)
			}
			run := log.Runs[0]
			if got := run.OriginalURIBaseIDs["%SRCROOT%"].URI; got != tt.originalBase {
				t.Errorf("originalUriBaseIds: %q, want %q", got, tt.originalBase)
			}
			locs := run.Results[0].Locations
			if tt.noLocation {
				if len(locs) != 0 {
					t.Errorf("locations %+v, want none", locs)
				}
				return
			}
			if got := locs[0].PhysicalLocation.ArtifactLocation; got.URI != tt.uri || got.URIBaseID != tt.baseID {
				t.Errorf("artifactLocation %+v, want uri %q uriBaseId %q", got, tt.uri, tt.baseID)
			}
		})
	}
}

func TestGitHubLines(t *testing.T) {
	lines := strings.Split(string(render(t, "github", fixture(), Options{})), "\n")
	want := []string{
		"::notice file=compose.yaml,title=logs-not-forwarded::no service forwards logs off the host: they can only be read with docker compose logs over SSH%0Afix: add a log shipper service (e.g. Vector or Promtail), or a forwarding driver such as syslog",
		"::warning file=compose.yaml,line=14,col=7,title=neon-pooler (api)::DATABASE_URL in api connects to Neon directly (ep-cool-1.neon.tech), not through its pooler:%0A100%25 of its connections count against the limit%0Afix: use the pooled host ep-cool-1-pooler.neon.tech, and keep the client's pool small (max: 10)",
		"::error file=compose.yaml,line=20,title=healthcheck-missing (worker)::worker has no healthcheck, but api relies on it: after it dies they keep sending it traffic%0Afix: add to worker: healthcheck: {test: [\"CMD-SHELL\", \"wget -qO- http://127.0.0.1:PORT/health || exit 1\"], interval: 15s}",
		"::warning file=compose.yaml,line=40,col=5,title=suppression-invalid::the suppression of restart-missing gives no reason, so it is not applied%0Afix: say why the finding does not apply here, after the rule ID (inline) or in reason: (x-deployer)",
		"2 errors, 3 warnings, 2 info (1 suppressed): check failed",
	}
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("missing line:\n%s\nin:\n%s", w, strings.Join(lines, "\n"))
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "image-latest") {
			t.Errorf("suppressed finding printed: %s", l)
		}
	}
	if n := len(lines); n != len(fixture())-1+2 { // one suppressed; the summary; the final newline
		t.Errorf("%d lines, want %d", n, len(fixture())+1)
	}
}

func TestGitHubEscapesProperties(t *testing.T) {
	fs := []checks.Finding{{Rule: "image-latest", Severity: checks.Warning, Service: "web",
		Pos:     project.Position{File: "stacks/a,b:c%d/compose\r\n.yaml", Line: 7, Column: 3},
		Message: "50% done,\r\nreally: yes", Fix: ""}}
	got := strings.Split(string(render(t, "github", fs, Options{})), "\n")[0]
	want := "::warning file=stacks/a%2Cb%3Ac%25d/compose%0D%0A.yaml,line=7,col=3,title=image-latest (web)::50%25 done,%0D%0Areally: yes"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, data, property string }{
		{"plain", "plain", "plain"},
		{"100%", "100%25", "100%25"},
		{"a,b:c", "a,b:c", "a%2Cb%3Ac"},
		{"one\r\ntwo\n", "one%0D%0Atwo%0A", "one%0D%0Atwo%0A"},
		{"%0A", "%250A", "%250A"},
	}
	for _, tt := range tests {
		if got := escapeData(tt.in); got != tt.data {
			t.Errorf("escapeData(%q) = %q, want %q", tt.in, got, tt.data)
		}
		if got := escapeProperty(tt.in); got != tt.property {
			t.Errorf("escapeProperty(%q) = %q, want %q", tt.in, got, tt.property)
		}
	}
}

func TestTextManySuppressed(t *testing.T) {
	var fs []checks.Finding
	for i := range fewSuppressed + 1 {
		fs = append(fs, checks.Finding{Rule: "image-latest", Severity: checks.Warning, Service: "cache",
			Pos:        project.Position{File: "compose.yaml", Line: 10 + i},
			Message:    "cache uses redis:latest",
			Suppressed: &project.Suppression{Rule: "image-latest", Reason: "on purpose"}})
	}
	got := string(render(t, "text", fs, Options{}))
	if want := "no problems found (6 suppressed)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = string(render(t, "text", fs[:fewSuppressed], Options{}))
	if !strings.Contains(got, "reason: on purpose") || !strings.HasSuffix(got, "no problems found (5 suppressed)\n") {
		t.Errorf("a few suppressed findings are not listed:\n%s", got)
	}
}

func TestTextSanitizes(t *testing.T) {
	fs := []checks.Finding{{Rule: "image-latest", Severity: checks.Warning, Service: "web",
		Pos: project.Position{File: "compose.yaml", Line: 2}, Message: "web uses evil\x1b[2J:latest"}}
	got := string(render(t, "text", fs, Options{}))
	if strings.Contains(got, "\x1b") || !strings.Contains(got, `evil\x1b[2J:latest`) {
		t.Errorf("control character reached the terminal: %q", got)
	}
}

func TestMentions(t *testing.T) {
	tests := []struct {
		msg, service string
		want         bool
	}{
		{"api has no healthcheck", "api", true},
		{"the runtime stage of api installs", "api", true},
		{"DB_PASSWORD of api is a literal", "api", true},
		{"the api-gateway is down", "api", false},
		{"rapid growth", "api", false},
		{"api2 and then api", "api", true},
		{"Caddy serves a self-signed certificate", "proxy", false},
		{"web.v2 has no limit", "web.v2", true},
	}
	for _, tt := range tests {
		if got := mentions(tt.msg, tt.service); got != tt.want {
			t.Errorf("mentions(%q, %q) = %v, want %v", tt.msg, tt.service, got, tt.want)
		}
	}
}

func TestCamelCase(t *testing.T) {
	for in, want := range map[string]string{"healthcheck-missing": "HealthcheckMissing", "caddy-tls-internal": "CaddyTlsInternal", "a": "A", "x--y_z": "XYZ"} {
		if got := camelCase(in); got != want {
			t.Errorf("camelCase(%q) = %q, want %q", in, got, want)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	for _, format := range Formats {
		err := Write(failingWriter{}, format, fixture(), Options{})
		if err == nil || !strings.Contains(err.Error(), "write "+format+" report") || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: %v", format, err)
		}
	}
}
