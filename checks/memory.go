package checks

import (
	"fmt"
	"strings"
)

var limitsMissing = &Rule{
	ID: "limits-missing", Severity: Warning,
	Title: "a service has no memory limit",
	Help:  "Without a limit one leaking process can take the whole host's memory; the kernel's OOM killer then kills the biggest process, which is often the broker, and the whole stack falls with it. A limit keeps a leak inside its own container.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.longRunning() {
			if memoryLimit(in.Compose.Services[name]) > 0 {
				continue
			}
			out = append(out, Finding{Rule: "limits-missing", Service: name, Pos: in.ServicePos(name),
				Message: fmt.Sprintf("%s has no memory limit: a leak in it can get other services OOM-killed", name),
				Fix:     fmt.Sprintf("set deploy: {resources: {limits: {memory: 512m}}} on %s, sized from its peak use (docker stats)", name)})
		}
		return out
	},
}

// buildMemory is what a build of a typical service (npm ci, a Go
// build) needs besides the services that run: below it, a build on the
// host competes with them.
const buildMemory = 1 << 30

var hostBuildMemory = &Rule{
	ID: "host-build-memory", Severity: Warning,
	Title: "images are built on a host with little memory left",
	Help:  "With builder host, the deploy host builds the images while it serves: npm ci or a compiler takes a gigabyte or more beside the running services. When the memory the services' limits and the system leave is smaller, the build competes with them and the kernel's OOM killer may take the broker. Checked during a deploy, with the host's memory.",
	check: func(in *Input) []Finding {
		if in.Host == nil || !in.Host.Builds || in.HostMemory <= 0 {
			return nil
		}
		var built string
		for _, name := range in.Compose.ServiceNames() {
			if in.Compose.Services[name].Build != nil {
				built = name
				break
			}
		}
		if built == "" {
			return nil
		}
		var limits int64
		for _, name := range in.longRunning() {
			s := in.Compose.Services[name]
			limits += memoryLimit(s) * int64(s.GetScale())
		}
		left := in.HostMemory - headroom(in.HostMemory) - limits
		if left >= buildMemory {
			return nil
		}
		return []Finding{{Rule: "host-build-memory", Service: built, Pos: in.ServicePos(built, "build"),
			Message: fmt.Sprintf("%s is built on the host, which has %s left for it besides the services' limits (%s; services without one not counted) and the system (%s); a build takes about %s",
				built, formatBytes(max(left, 0)), formatBytes(limits), formatBytes(headroom(in.HostMemory)), formatBytes(buildMemory)),
			Fix: "build on another machine and ship only the layers the host lacks (builder: local on a CI runner, the Action's default, or a standalone buildkitd), or give the host more memory"}}
	},
}

// headroom is what the host keeps for the kernel, Docker and sshd: an
// eighth of its memory, and at least 256 MiB.
func headroom(host int64) int64 { return max(host/8, 256<<20) }

var limitsExceedHost = &Rule{
	ID: "limits-exceed-host", Severity: Error,
	Title: "memory limits add up to more than the host has",
	Help:  "Limits only protect services from each other when they fit in the host's memory together with what the host itself needs. When they add up to more, the host runs out before any container reaches its limit and the kernel's OOM killer picks the biggest process: often the broker or database, whose loss takes down everything that uses it.",
	check: func(in *Input) []Finding {
		if in.HostMemory <= 0 {
			return nil
		}
		var (
			total, most int64
			biggest     string
			parts       []string
		)
		for _, name := range in.longRunning() {
			s := in.Compose.Services[name]
			lim := memoryLimit(s) * int64(s.GetScale())
			if lim == 0 {
				continue
			}
			total += lim
			parts = append(parts, fmt.Sprintf("%s %s", name, formatBytes(lim)))
			if lim > most {
				biggest, most = name, lim
			}
		}
		avail := in.HostMemory - headroom(in.HostMemory)
		if total == 0 || total <= avail {
			return nil
		}
		pos := in.ServicePos(biggest, "deploy", "resources", "limits", "memory")
		if s := in.Compose.Services[biggest]; s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 {
			pos = in.ServicePos(biggest, "mem_limit") // memoryLimit fell back to it
		}
		f := Finding{Rule: "limits-exceed-host", Pos: pos,
			Message: fmt.Sprintf("memory limits add up to %s (%s) but the host has %s, of which %s is left after %s for the system",
				formatBytes(total), strings.Join(parts, ", "), formatBytes(in.HostMemory), formatBytes(avail), formatBytes(headroom(in.HostMemory))),
			Fix: fmt.Sprintf("lower the limits to fit in %s, or move to a host with more memory", formatBytes(avail))}
		if s := in.Compose.Services[biggest]; dataDirs[in.kindOf(biggest, s)] != "" && in.kindOf(biggest, s) != kindCaddy && s.OomScoreAdj >= 0 {
			f.Service = biggest
			f.Message += fmt.Sprintf("; %s has the largest limit, so it is first in line for the OOM killer", biggest)
			f.Fix += fmt.Sprintf("; protect %s with oom_score_adj: -500 and give it a smaller limit than the services that may leak", biggest)
		}
		return []Finding{f}
	},
}
