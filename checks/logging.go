package checks

import (
	"fmt"
	"slices"
	"strings"
)

// forwardingDrivers send logs off the host.
var forwardingDrivers = []string{"syslog", "fluentd", "gelf", "awslogs", "gcplogs", "splunk", "logentries", "loki", "journald"}

// logShippers are images that collect other containers' logs.
var logShippers = []string{"vector", "fluent-bit", "fluentd", "promtail", "alloy", "grafana-agent", "logspout", "filebeat", "opentelemetry-collector", "opentelemetry-collector-contrib", "otel-collector", "datadog-agent"}

var loggingUnbounded = &Rule{
	ID: "logging-unbounded", Severity: Warning,
	Title: "container logs grow without bound",
	Help:  "Docker's default json-file driver keeps every line a container writes, forever. A chatty or crash-looping service fills the host's disk, and then every service fails. Set max-size and max-file, or use the local driver, which rotates by default.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.longRunning() {
			l := in.Compose.Services[name].Logging
			if l != nil && l.Driver != "" && l.Driver != "json-file" {
				continue
			}
			if l != nil && l.Options["max-size"] != "" {
				continue
			}
			pos := in.ServicePos(name)
			if l != nil {
				pos = in.ServicePos(name, "logging")
			}
			out = append(out, Finding{Rule: "logging-unbounded", Service: name, Pos: pos,
				Message: fmt.Sprintf("%s logs to json-file without max-size: its logs can fill the disk", name),
				Fix:     "logging: {driver: json-file, options: {max-size: 10m, max-file: \"3\"}} (or driver: local)"})
		}
		return out
	},
}

var logsNotForwarded = &Rule{
	ID: "logs-not-forwarded", Severity: Info,
	Title: "no service forwards logs off the host",
	Help:  "Logs that live only on the host are read over SSH, one host at a time, and are lost with it: there is no search across services, no history and no alert. A logging driver that forwards (syslog, gelf, fluentd, awslogs…) or a shipper service (Vector, Promtail, Fluent Bit…) fixes that.",
	check: func(in *Input) []Finding {
		if len(in.Compose.Services) == 0 {
			return nil
		}
		for _, name := range in.serviceNames() {
			s := in.Compose.Services[name]
			if s.Logging != nil && slices.Contains(forwardingDrivers, s.Logging.Driver) {
				return nil
			}
			if slices.Contains(logShippers, imageBase(s.Image)) || strings.Contains(s.Image, "datadog/agent") {
				return nil
			}
		}
		pos, _, _ := in.Locate("services")
		return []Finding{{Rule: "logs-not-forwarded", Pos: pos,
			Message: "no service forwards logs off the host: they can only be read with docker compose logs over SSH",
			Fix:     "add a log shipper service (e.g. Vector or Promtail), or a forwarding driver such as syslog to your log service, before going to production"}}
	},
}
