package checks

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/semalink/deploy-action/checks/project"
)

var caddyTLSInternal = &Rule{
	ID: "caddy-tls-internal", Severity: Warning,
	Title: "Caddy serves a certificate from its own internal CA",
	Help:  "`tls internal` makes Caddy sign its own certificate. Cloudflare's Full mode accepts it; Full (strict) does not and answers 526, and browsers reaching the host directly refuse it. It is an error with --cloudflare-ssl strict (Cloudflare rejects it) or off (browsers do), and a note with full or flexible.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			cf := in.Caddyfiles[name]
			if cf == nil {
				continue
			}
			cf.Walk(func(d project.Directive) {
				internal := d.Name == "tls" && len(d.Args) > 0 && d.Args[0] == "internal"
				for _, sub := range d.Block {
					internal = internal || (d.Name == "tls" && sub.Name == "issuer" && len(sub.Args) > 0 && sub.Args[0] == "internal")
				}
				if !internal {
					return
				}
				f := Finding{Rule: "caddy-tls-internal", Service: name, Pos: project.Position{File: cf.Path, Line: d.Line},
					Message: "Caddy serves a self-signed certificate (tls internal): clients that verify the CA chain refuse it",
					Fix:     "remove `tls internal` to get a Let's Encrypt certificate (port 80 must be reachable), or mount a Cloudflare Origin CA certificate and use `tls /path/cert.pem /path/key.pem`"}
				switch in.CloudflareSSL {
				case "off":
					f.Severity = Error
					f.Message = "Caddy serves a self-signed certificate (tls internal) and nothing sits in front of it: browsers refuse the site"
				case "strict":
					f.Severity = Error
					f.Message = "Caddy serves a self-signed certificate (tls internal), which Cloudflare's Full (strict) mode rejects with error 526"
				case "full", "flexible":
					f.Severity = Info
					f.Message = "Caddy serves a self-signed certificate (tls internal): fine behind Cloudflare " + in.CloudflareSSL + ", but switching to Full (strict) will fail with error 526"
				}
				out = append(out, f)
			})
		}
		return out
	},
}

var proxyUpstreamUnknown = &Rule{
	ID: "proxy-upstream-unknown", Severity: Error,
	Title: "Caddy routes to a host that is not a service",
	Help:  "Inside a Compose network a proxy reaches other containers by service name. An upstream that names no service (a typo, a renamed service, or localhost, which is the proxy's own container) fails every request with 502.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			for _, u := range in.caddyUpstreams(name) {
				if in.reachable(u.host) {
					continue
				}
				f := Finding{Rule: "proxy-upstream-unknown", Service: name, Pos: project.Position{File: in.Caddyfiles[name].Path, Line: u.line},
					Message: fmt.Sprintf("reverse_proxy sends requests to %s, which is not a service of this project", u.host),
					Fix:     fmt.Sprintf("use a service name, one of: %s", strings.Join(in.serviceNames(), ", "))}
				if selfAddress(u.host) {
					f.Message = fmt.Sprintf("reverse_proxy sends requests to %q, which inside the %s container is %s itself", u.host, name, name)
				}
				out = append(out, f)
			}
		}
		return out
	},
}

// reachable: a service name, container name or network alias, an IP, or a
// name with a dot (a host outside the project).
func (in *Input) reachable(host string) bool {
	if selfAddress(host) {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	if strings.Contains(host, ".") {
		return true
	}
	if host == "host.docker.internal" {
		return true
	}
	for name, s := range in.Compose.Services {
		if name == host || s.ContainerName == host || s.Hostname == host {
			return true
		}
		for _, n := range s.Networks {
			if n != nil && slices.Contains(n.Aliases, host) {
				return true
			}
		}
	}
	return false
}

// selfAddress is an upstream that, inside the proxy's container, is the
// proxy itself: Caddy reads ":3000" as localhost:3000.
func selfAddress(host string) bool {
	return host == "" || host == "localhost" || host == "127.0.0.1" || host == "::1"
}
