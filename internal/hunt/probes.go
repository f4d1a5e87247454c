package hunt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/probe/discover"
	"github.com/chokepoint/chokepoint/internal/probe/otlp"
	"github.com/chokepoint/chokepoint/internal/probe/postgres"
	"github.com/chokepoint/chokepoint/internal/probe/pprof"
	"github.com/chokepoint/chokepoint/internal/probe/proc"
	"github.com/chokepoint/chokepoint/internal/probe/promscrape"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/secret"
)

// ProbeOptions says which evidence sources a hunt should use.
type ProbeOptions struct {
	URLs []string // the target origins
	// Target is one URL the hunt requests with GET (the first plain URL):
	// discovery compares its answer through a reverse proxy and at the
	// proxy's backend. "" = the first origin, whose root path a service
	// may not serve (then a backend is not recognised).
	Target      string
	PprofURL    string // "" = auto for local targets
	MetricsURL  string // "" = auto for local targets
	PID         int    // 0 = auto for local targets
	PostgresDSN secret.String
	OTLPHTTP    string // "" = default when free, "off" = disabled
	OTLPGRPC    string
	Off         bool // no probes at all (client-side evidence only)
}

// found is what discovery decided for a hunt.
type found struct {
	pid                int
	pidHow             string
	port               int // where the target process listens, 0 unknown
	proxyPID           int // the process on the target's port when it is not the target
	proxyPort          int
	pprofURL, pprofHow string
	metricsURL, metHow string
	otlpHTTP, otlpGRPC string
	summary            string // what discovery found, for coverage
}

// discoverAll decides the probes' targets; passive discovery sends nothing
// to the target's URL (a dry run).
func discoverAll(ctx context.Context, o ProbeOptions, passive bool) found {
	f := found{pid: o.PID, pprofURL: o.PprofURL, metricsURL: o.MetricsURL}
	if f.pid != 0 {
		f.pidHow = "given by --pid"
	}
	if f.pprofURL != "" {
		f.pprofHow = "given by --pprof"
	}
	if f.metricsURL != "" {
		f.metHow = "given by --metrics"
	}
	if len(o.URLs) > 0 {
		// Only the first origin is examined: the target is one service.
		target := o.URLs[0]
		if o.Target != "" {
			target = o.Target
		}
		d, err := discover.Discover(ctx, target, discover.Options{Passive: passive})
		if err == nil && d.Local {
			f.summary = d.Summary()
			front := ""
			for _, p := range d.Processes {
				if p.PID == d.PID {
					front = p.Name
				}
			}
			// Behind a reverse proxy the backend is the target: its code
			// is what pprof profiles; the proxy is watched beside it.
			if b := d.Backend; f.pid == 0 && b != nil && b.PID != 0 {
				f.pid = b.PID
				f.pidHow = fmt.Sprintf("found behind pid %d (%s) on port %d, which forwards the target's requests to it on port %d (%s)", d.PID, front, d.Port, b.Port, b.Name())
			}
			if f.pid == 0 && d.PID != 0 {
				f.pid = d.PID
				f.pidHow = "found listening on port " + strconv.Itoa(d.Port) + " (" + front + ")"
			}
			switch {
			case f.pid == d.PID:
				f.port = d.Port
			case d.Backend != nil && f.pid == d.Backend.PID:
				f.port = d.Backend.Port
			}
			// The process on the target's port, when it is not the target,
			// one of its tree nor chokepoint itself, stands in front of it.
			if d.PID != 0 && !slices.Contains(d.Tree, f.pid) && d.PID != os.Getpid() {
				f.proxyPID, f.proxyPort = d.PID, d.Port
			}
			if f.pprofURL == "" && d.PprofURL != "" {
				f.pprofURL, f.pprofHow = d.PprofURL, "found at "+d.PprofURL
			}
			if f.metricsURL == "" && d.MetricsURL != "" {
				f.metricsURL, f.metHow = d.MetricsURL, "found at "+d.MetricsURL
			}
		}
	}
	f.otlpHTTP = o.OTLPHTTP
	if f.otlpHTTP == "" {
		f.otlpHTTP = otlp.DefaultHTTPAddr
	}
	f.otlpGRPC = o.OTLPGRPC
	if f.otlpGRPC == "" {
		f.otlpGRPC = otlp.DefaultGRPCAddr
	}
	return f
}

// PlanProbes says, without starting anything, which probes a hunt would use.
func PlanProbes(ctx context.Context, o ProbeOptions) []report.Coverage {
	if o.Off {
		return []report.Coverage{{Source: "probes", Status: probe.StatusUnavailable, Detail: "disabled by --no-probes"}}
	}
	f := discoverAll(ctx, o, true)
	var out []report.Coverage
	add := func(src string, ok bool, yes, no string) {
		if ok {
			out = append(out, report.Coverage{Source: src, Status: probe.StatusOK, Detail: yes})
		} else {
			out = append(out, report.Coverage{Source: src, Status: probe.StatusUnavailable, Detail: no})
		}
	}
	proxy := ""
	if f.proxyPID != 0 {
		proxy = fmt.Sprintf("; and pid %d, in front of it on the target's port", f.proxyPID)
	}
	add("proc", f.pid != 0, fmt.Sprintf("process %d (%s)%s", f.pid, f.pidHow, proxy), "no target process found: give --pid (only for targets on this machine)")
	add("pprof", f.pprofURL != "", f.pprofHow, "no /debug/pprof found: give --pprof URL (Go: import _ \"net/http/pprof\")")
	add("metrics", f.metricsURL != "", f.metHow, "no /metrics found: give --metrics URL")
	add("postgres", o.PostgresDSN != "", "read-only connection to "+secret.DSN(o.PostgresDSN.Reveal()), "no database given: --postgres DSN or $CHOKEPOINT_POSTGRES")
	add("otlp", f.otlpHTTP != "off" || f.otlpGRPC != "off", "receiver on "+f.otlpHTTP+" (HTTP) and "+f.otlpGRPC+" (gRPC), if free", "disabled")
	return out
}

// Built is what BuildProbes made.
type Built struct {
	Probes    []probe.Probe
	Notes     []report.Coverage // sources that cannot be used, and how to enable them
	PID       int               // the target's process, 0 when unknown
	Discovery string            // what discovery found, one line
}

// BuildProbes discovers and builds the probes of a hunt. Sources that cannot
// be used come back as coverage notes saying how to enable them; the load
// generator's own process is always watched.
func BuildProbes(ctx context.Context, o ProbeOptions, logger *slog.Logger) Built {
	var probes []probe.Probe
	var notes []report.Coverage
	note := func(src, status, detail string) {
		notes = append(notes, report.Coverage{Source: src, Status: status, Detail: detail})
	}
	if o.Off {
		for _, s := range []string{"proc", "pprof", "metrics", "postgres", "otlp"} {
			note(s, probe.StatusUnavailable, "disabled by --no-probes")
		}
		return Built{Probes: probes, Notes: notes}
	}
	f := discoverAll(ctx, o, false)

	watches := []proc.Watch{proc.Self()}
	if f.pid != 0 {
		// The target's children work for it (a pre-fork server's
		// workers), unless the target is this process, whose children
		// are not the target's.
		watches = append(watches, proc.Watch{PID: f.pid, Role: evidence.RoleTarget, Tree: f.pid != os.Getpid(), Port: f.port})
		if f.proxyPID != 0 {
			watches = append(watches, proc.Watch{PID: f.proxyPID, Role: evidence.RoleProxy, Tree: true, Port: f.proxyPort})
		}
	} else {
		note("proc", probe.StatusUnavailable, "target process not found: give --pid (only for targets on this machine); the machine and the generator are still watched")
	}
	if p, err := proc.New(proc.Config{Processes: watches, Logger: logger}); err == nil {
		probes = append(probes, p)
	} else {
		note("proc", probe.StatusError, err.Error())
	}

	if f.pprofURL != "" {
		if p, err := pprof.New(pprof.Config{BaseURL: f.pprofURL, Logger: logger}); err == nil {
			probes = append(probes, p)
		} else {
			note("pprof", probe.StatusError, err.Error())
		}
	} else {
		note("pprof", probe.StatusUnavailable, "no /debug/pprof endpoint found: for a Go target import _ \"net/http/pprof\" and give --pprof URL")
	}

	if f.metricsURL != "" {
		if p, err := promscrape.New(promscrape.Config{URL: f.metricsURL, Logger: logger}); err == nil {
			probes = append(probes, p)
		} else {
			note("metrics", probe.StatusError, err.Error())
		}
	} else {
		note("metrics", probe.StatusUnavailable, "no Prometheus endpoint found: give --metrics URL")
	}

	if o.PostgresDSN != "" {
		if p, err := postgres.New(postgres.Config{DSN: o.PostgresDSN, Logger: logger}); err == nil {
			probes = append(probes, p)
		} else {
			note("postgres", probe.StatusError, err.Error())
		}
	} else {
		note("postgres", probe.StatusUnavailable, "no database given: pass --postgres DSN (read-only access) or set $CHOKEPOINT_POSTGRES")
	}

	if f.otlpHTTP == "off" && f.otlpGRPC == "off" {
		note("otlp", probe.StatusUnavailable, "disabled by --otlp-listen off --otlp-grpc-listen off")
	} else {
		cfg := otlp.Config{HTTPAddr: f.otlpHTTP, GRPCAddr: f.otlpGRPC, Logger: logger}
		if cfg.HTTPAddr == "off" {
			cfg.HTTPAddr, cfg.DisableHTTP = "", true
		}
		if cfg.GRPCAddr == "off" {
			cfg.GRPCAddr, cfg.DisableGRPC = "", true
		}
		r, err := otlp.New(cfg)
		if err == nil {
			err = r.Listen()
		}
		switch {
		case err == nil:
			probes = append(probes, r)
		case errors.Is(err, otlp.ErrPortBusy):
			note("otlp", probe.StatusUnavailable, "OTLP receiver off: "+err.Error()+"; choose another with --otlp-listen / --otlp-grpc-listen")
		default:
			note("otlp", probe.StatusError, err.Error())
		}
	}
	return Built{Probes: probes, Notes: notes, PID: f.pid, Discovery: f.summary}
}
