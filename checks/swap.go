package checks

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/semalink/deploy-action/checks/project"
)

// startFirst says whether a service asks for its new containers to start
// beside the old ones (deploy.update_config.order: start-first).
func startFirst(s types.ServiceConfig) bool {
	return s.Deploy != nil && s.Deploy.UpdateConfig != nil && s.Deploy.UpdateConfig.Order == "start-first"
}

var startFirstUnsafe = &Rule{
	ID: "start-first-unsafe", Severity: Error,
	Title: "a service asks to start its new containers beside the old ones, but cannot run twice",
	Help:  "deploy.update_config.order: start-first asks for the new containers of a service to start next to the old ones and take the traffic once healthy. Two containers cannot share a fixed container_name or a published host port, and two containers writing one named volume corrupt a database's or a broker's files. Such a service must be replaced stop-first.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			s := in.Compose.Services[name]
			if !startFirst(s) {
				continue
			}
			if s.ContainerName != "" {
				out = append(out, Finding{Rule: "start-first-unsafe", Service: name, Pos: in.ServicePos(name, "container_name"),
					Message: fmt.Sprintf("%s asks for start-first, but its container_name %s can be held by one container only", name, s.ContainerName),
					Fix:     "drop container_name: other services reach it by its service name"})
			}
			if s.Hostname != "" {
				out = append(out, Finding{Rule: "start-first-unsafe", Service: name, Pos: in.ServicePos(name, "hostname"),
					Message: fmt.Sprintf("%s asks for start-first, but its hostname %s would name the new container before it is healthy", name, s.Hostname),
					Fix:     "drop hostname: other services reach it by its service name"})
			}
			for _, net := range slices.Sorted(maps.Keys(s.Networks)) {
				if n := s.Networks[net]; n != nil && (n.Ipv4Address != "" || n.Ipv6Address != "" || n.MacAddress != "") {
					out = append(out, Finding{Rule: "start-first-unsafe", Service: name, Pos: in.ServicePos(name, "networks"),
						Message: fmt.Sprintf("%s asks for start-first, but has a fixed address on network %s, which one container holds at a time", name, net),
						Fix:     "drop ipv4_address, ipv6_address and mac_address: other services reach it by its service name"})
					break
				}
			}
			if m := string(s.NetworkMode); m == "host" || strings.HasPrefix(m, "service:") || strings.HasPrefix(m, "container:") {
				out = append(out, Finding{Rule: "start-first-unsafe", Service: name, Pos: in.ServicePos(name, "network_mode"),
					Message: fmt.Sprintf("%s asks for start-first, but network_mode %s gives it no network of its own to start the new container on", name, m),
					Fix:     "drop network_mode, or use order: stop-first"})
			}
			for _, p := range s.Ports {
				if p.Published != "" { // an ephemeral port (127.0.0.1::3000) is one per container
					out = append(out, Finding{Rule: "start-first-unsafe", Service: name, Pos: in.ServicePos(name, "ports"),
						Message: fmt.Sprintf("%s asks for start-first, but publishes host port %s, which one container holds at a time", name, cmp.Or(p.Published, fmt.Sprint(p.Target))),
						Fix:     "put it behind the proxy (reverse_proxy " + name + ":" + fmt.Sprint(p.Target) + ") and drop ports:, or use order: stop-first"})
					break
				}
			}
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeVolume && v.Source != "" && !v.ReadOnly {
					out = append(out, Finding{Rule: "start-first-unsafe", Service: name, Pos: in.ServicePos(name, "volumes"),
						Message: fmt.Sprintf("%s asks for start-first, but writes the named volume %s: two containers would write it at once", name, v.Source),
						Fix:     "use order: stop-first for a service that keeps data, or mount the volume read-only (:ro)"})
					break
				}
			}
		}
		return out
	},
}

var proxySwapUnsafe = &Rule{
	ID: "proxy-swap-unsafe", Severity: Warning,
	Title: "Caddy would drop or hold requests while a start-first service is swapped",
	Help:  "When a start-first service's old container stops, the requests that reach it as it goes, and the connections Caddy keeps to it, fail unless Caddy retries them on the new one: reverse_proxy needs lb_try_duration. An upstream written as a fixed IP address keeps going to the old container after the swap.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, proxy := range in.serviceNames() {
			cf := in.Caddyfiles[proxy]
			if cf == nil {
				continue
			}
			cf.Walk(func(d project.Directive) {
				if d.Name != "reverse_proxy" {
					return
				}
				retries := slices.ContainsFunc(d.Block, func(sub project.Directive) bool { return sub.Name == "lb_try_duration" })
				for _, u := range directiveUpstreams(d) {
					svc, byIP := in.startFirstService(u.host)
					if svc == "" {
						continue
					}
					pos := project.Position{File: cf.Path, Line: u.line}
					if byIP {
						out = append(out, Finding{Rule: "proxy-swap-unsafe", Service: proxy, Pos: pos,
							Message: fmt.Sprintf("reverse_proxy sends requests to %s, the fixed address of the start-first service %s: they keep going to the old container", u.host, svc),
							Fix:     fmt.Sprintf("name the service instead: reverse_proxy %s:PORT", svc)})
					}
					if !retries {
						out = append(out, Finding{Rule: "proxy-swap-unsafe", Service: proxy, Pos: pos,
							Message: fmt.Sprintf("reverse_proxy to the start-first service %s does not retry: requests that reach the old container as it stops fail with 502", svc),
							Fix:     "add lb_try_duration 10s inside the reverse_proxy block, so that Caddy retries on the new container"})
					}
				}
			})
		}
		return out
	},
}

// startFirstService is the start-first service an upstream host names,
// and whether it names it by a fixed IP address.
func (in *Input) startFirstService(host string) (string, bool) {
	ip := net.ParseIP(host)
	for _, name := range in.serviceNames() {
		s := in.Compose.Services[name]
		if !startFirst(s) {
			continue
		}
		if name == host || s.Hostname == host {
			return name, false
		}
		for _, n := range s.Networks {
			if n == nil {
				continue
			}
			if slices.Contains(n.Aliases, host) {
				return name, false
			}
			if ip != nil && (net.ParseIP(n.Ipv4Address).Equal(ip) || net.ParseIP(n.Ipv6Address).Equal(ip)) {
				return name, true
			}
		}
	}
	return "", false
}

// directiveUpstreams are the upstreams of one reverse_proxy directive.
func directiveUpstreams(d project.Directive) []upstream {
	out := upstreamsOf(d.Args, d.Line)
	for _, sub := range d.Block {
		if sub.Name == "to" {
			out = append(out, upstreamsOf(sub.Args, sub.Line)...)
		}
	}
	return out
}
