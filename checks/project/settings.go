package project

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Settings is the x-deployer block of the Compose file: what the project
// says about itself, so the command line need not repeat it. Flags win.
type Settings struct {
	Environment   string `json:"environment,omitempty"`    // staging or production
	CloudflareSSL string `json:"cloudflare-ssl,omitempty"` // off, flexible, full or strict
	HostMemory    string `json:"host-memory,omitempty"`    // e.g. 4g
	Checks        struct {
		Ignore []Suppression `json:"ignore,omitempty"`
	} `json:"checks"`

	// Deploy settings; the deploy command's flags of the same names win.
	Hosts           []string `json:"hosts,omitempty"`            // [USER@]HOST[:PORT]
	KnownHosts      string   `json:"known-hosts,omitempty"`      // known_hosts file
	HostFingerprint string   `json:"host-fingerprint,omitempty"` // SHA256:…
	Migrate         string   `json:"migrate,omitempty"`          // the one-off migration service
	HealthTimeout   Duration `json:"health-timeout,omitzero"`
	MigrateTimeout  Duration `json:"migrate-timeout,omitzero"`
	LockTimeout     Duration `json:"lock-timeout,omitzero"`
	Keep            int      `json:"keep,omitempty"`    // releases kept on the host
	Builder         string   `json:"builder,omitempty"` // host, local, or a buildkitd address
}

// Duration is a time.Duration written as in Go and in Compose: 90s, 2m.
type Duration struct{ time.Duration }

// UnmarshalJSON reads "2m" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if json.Unmarshal(b, &secs) != nil {
			return fmt.Errorf("%s is not a duration: write it like 90s or 2m", b)
		}
		d.Duration = time.Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration: write it like 90s or 2m", s)
	}
	d.Duration = v
	return nil
}

// Suppression silences one rule, for one service or (without a service)
// everywhere. A suppression without a reason is itself reported.
type Suppression struct {
	Rule    string `json:"rule"`
	Service string `json:"service,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func decodeSettings(v any) (Settings, error) {
	var s Settings
	if v == nil {
		return s, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return s, fmt.Errorf("x-deployer: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("x-deployer: %w", err)
	}
	if err := ValidateEnvironment(s.Environment); err != nil {
		return s, fmt.Errorf("x-deployer: environment: %w", err)
	}
	if err := ValidateCloudflareSSL(s.CloudflareSSL); err != nil {
		return s, fmt.Errorf("x-deployer: cloudflare-ssl: %w", err)
	}
	if s.HostMemory != "" {
		if _, err := ParseBytes(s.HostMemory); err != nil {
			return s, fmt.Errorf("x-deployer: host-memory: %w", err)
		}
	}
	return s, nil
}

// Environments and CloudflareSSLModes are the accepted setting values.
var (
	Environments       = []string{"staging", "production"}
	CloudflareSSLModes = []string{"off", "flexible", "full", "strict"}
)

// ValidateEnvironment accepts "" (unknown) or one of Environments.
func ValidateEnvironment(v string) error { return oneOf(v, Environments) }

// ValidateCloudflareSSL accepts "" (unknown) or one of CloudflareSSLModes.
func ValidateCloudflareSSL(v string) error { return oneOf(v, CloudflareSSLModes) }

func oneOf(v string, allowed []string) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

var byteUnits = regexp.MustCompile(`^(?i)\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*$`)

// ParseBytes reads a size such as 4g, 512m, 4GiB or 4096 (bytes), binary
// units as Docker reads them.
func ParseBytes(s string) (int64, error) {
	m := byteUnits.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: write it like 4g, 512m or 4GiB", s)
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	shift := 0
	if m[2] != "" {
		shift = strings.Index("kmgt", strings.ToLower(m[2])) + 1
	}
	n := f * float64(int64(1)<<(10*shift))
	if n >= math.MaxInt64 { // converting it would wrap around to a negative size
		return 0, fmt.Errorf("%q is too large a size", s)
	}
	return int64(n), nil
}
