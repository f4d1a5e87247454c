package hunt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	URLs        []string // the target origins
	PprofURL    string   // "" = auto for local targets
	MetricsURL  string   // "" = auto for local targets
	PID         int      // 0 = auto for local targets
	PostgresDSN secret.String
	OTLPHTTP    string // "" = default when free, "off" = disabled
	OTLPGRPC    string
	Off         bool // no probes at all (client-side evidence only)
}

// found is what discovery decided for a hunt.
type found struct {
	pid                int
	pidHow             string
	pprofURL, pprofHow string
	metricsURL, metHow string
	otlpHTTP, otlpGRPC string
	summary            string // what discovery found, for coverage
}

func discoverAll(ctx context.Context, o ProbeOptions) found {
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
		d, err := discover.Discover(ctx, o.URLs[0], discover.Options{})
		if err == nil && d.Local {
			f.summary = d.Summary()
			if f.pid == 0 && d.PID != 0 {
				f.pid, f.pidHow = d.PID, "found listening on port "+strconv.Itoa(d.Port)
				if len(d.Processes) > 0 {
					f.pidHow += " (" + d.Processes[0].Name + ")"
				}
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
	f := discoverAll(ctx, o)
	var out []report.Coverage
	add := func(src string, ok bool, yes, no string) {
		if ok {
			out = append(out, report.Coverage{Source: src, Status: probe.StatusOK, Detail: yes})
		} else {
			out = append(out, report.Coverage{Source: src, Status: probe.StatusUnavailable, Detail: no})
		}
	}
	add("proc", f.pid != 0, fmt.Sprintf("process %d (%s)", f.pid, f.pidHow), "no target process found: give --pid (only for targets on this machine)")
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
	f := discoverAll(ctx, o)

	watches := []proc.Watch{proc.Self()}
	if f.pid != 0 {
		watches = append(watches, proc.Watch{PID: f.pid, Role: evidence.RoleTarget})
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
