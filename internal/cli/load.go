package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/scenario"
)

// Early abort on a missed objective (--abort-on-slo).
const (
	// defaultAbortGrace: the first seconds of a run include connection
	// set-up and the target's warm-up (JIT, caches, pools), which should
	// not end a run.
	defaultAbortGrace = 5 * time.Second
	// abortAfterWindows: consecutive windows that must miss the objective
	// before the run is aborted, so one noisy second does not end it.
	abortAfterWindows = 2
	// abortMinRequests: a window with fewer requests says too little about
	// a percentile to abort on.
	abortMinRequests = 20
)

// preflightTimeout bounds the reachability check of each origin before a run.
const preflightTimeout = 3 * time.Second

// errSLOAbort is the cancel cause of a run aborted by --abort-on-slo.
var errSLOAbort = errors.New("objective missed: aborted early (--abort-on-slo)")

type loadFlags struct {
	file        string
	headers     []string
	rate        string
	ramp        string
	steps       string
	concurrency int
	arrivals    string
	duration    time.Duration
	maxInflight int
	connections int
	maxRequests int64
	timeout     time.Duration
	http2       bool
	insecure    bool
	sloP99      time.Duration
	sloErrors   string
	abortOnSLO  bool
	abortGrace  time.Duration
	out         string
	format      string
	seed        uint64
	engine      string
	pacing      time.Duration
}

func newLoadCmd(env *Env) *cobra.Command {
	f := &loadFlags{}
	cmd := &cobra.Command{
		Use:   "load [URL...]",
		Short: "Offer load at a rate (or concurrency) and record latency",
		Long: `load offers requests on a schedule and records what came back.

Open model (--rate, --ramp, --steps): requests are due at intended times that
do not depend on the target, and latency is measured from the intended time,
so a target that stalls cannot hide the stall (no coordinated omission).
Requests that cannot be sent on time are counted as late (sent more than 1ms
after their time) or dropped (the in-flight bound was reached).
Closed model (--concurrency N): N users, each sending as soon as answered.

--ramp and --steps run for their own length unless --duration says otherwise;
after it the last rate is held. The run directory (--out) receives
manifest.json, timeline.jsonl, latency.hlog and load.json as it goes.`,
		Example: `  chokepoint load http://127.0.0.1:8080/ --rate 500 --duration 30s
  chokepoint load -f scenario.yaml --ramp 0:2000/30s --slo-p99 200ms
  chokepoint load http://127.0.0.1:8080/ --steps 100,200,400/10s --format json
  chokepoint load http://127.0.0.1:8080/ --concurrency 50 --duration 10s`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLoad(cmd.Context(), env, cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVarP(&f.file, "file", "f", "", "scenario file (CONTRACT.md §6) instead of URLs")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "header 'Name: value' sent with every request (repeatable)")
	fl.StringVar(&f.rate, "rate", "", "open model: constant rate, requests/s")
	fl.StringVar(&f.ramp, "ramp", "", "open model: linear ramp FROM:TO/DUR, e.g. 0:2000/30s")
	fl.StringVar(&f.steps, "steps", "", "open model: steps R1,R2,.../DUR, each held DUR, e.g. 100,200,400/10s")
	fl.IntVar(&f.concurrency, "concurrency", 0, "closed model: N users, each sending when answered")
	fl.StringVar(&f.arrivals, "arrivals", "uniform", "open model arrivals: uniform or poisson")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to send (default: 10s, or the length of --ramp/--steps)")
	fl.IntVar(&f.maxInflight, "max-inflight", load.DefaultMaxInflight, "requests in flight at most; arrivals beyond are dropped")
	fl.IntVar(&f.connections, "connections", 0, "open model: requests sent at once at most (HTTP/1.1 connections); arrivals beyond wait, counted late (default: --max-inflight)")
	fl.Int64Var(&f.maxRequests, "max-requests", 0, "stop after N requests (0: no limit)")
	fl.DurationVar(&f.timeout, "timeout", load.DefaultTimeout, "per-request timeout")
	fl.BoolVar(&f.http2, "http2", false, "use HTTP/2 (h2 over TLS for https, h2c for http)")
	fl.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification")
	fl.DurationVar(&f.sloP99, "slo-p99", 0, "fail (exit 1) when p99 latency exceeds DUR (default: not checked)")
	fl.StringVar(&f.sloErrors, "slo-errors", "", "fail (exit 1) when the error rate exceeds PCT, e.g. 1% (default: not checked)")
	fl.BoolVar(&f.abortOnSLO, "abort-on-slo", false, "end the run early once the objectives are missed (after --abort-grace)")
	fl.DurationVar(&f.abortGrace, "abort-grace", defaultAbortGrace, "with --abort-on-slo: never abort in the run's first DUR")
	fl.StringVar(&f.out, "out", "", "run directory; an existing non-empty one is refused (default ./chokepoint-runs/<UTC timestamp>)")
	fl.StringVar(&f.format, "format", "text", "what to print when done: text or json")
	fl.Uint64Var(&f.seed, "seed", 1, "seed for request variables and Poisson arrivals")
	fl.StringVar(&f.engine, "engine", "builtin", "HTTP/1.1 client: builtin or nethttp (for comparison)")
	fl.MarkHidden("engine")
	fl.DurationVar(&f.pacing, "pacing", 0, "shortest interval between pacer wake-ups (0: default; negative: Go timers only)")
	fl.MarkHidden("pacing")
	return cmd
}

// loadPlan is what the flags ask for, validated.
type loadPlan struct {
	sched     load.Schedule
	bound     load.Bound
	sloErrors float64 // -1: not checked
	src       *scenario.Scenario
}

func (f *loadFlags) plan(fl *pflag.FlagSet, args []string) (*loadPlan, error) {
	p := &loadPlan{sloErrors: -1}
	var chosen []string
	for _, name := range []string{"rate", "ramp", "steps", "concurrency"} {
		if fl.Changed(name) {
			chosen = append(chosen, "--"+name)
		}
	}
	switch len(chosen) {
	case 0:
		return nil, Usagef("load: one of --rate, --ramp, --steps or --concurrency is required")
	case 1:
	default:
		return nil, Usagef("%s: give only one of --rate, --ramp, --steps, --concurrency", strings.Join(chosen, ", "))
	}
	var err error
	switch chosen[0] {
	case "--rate":
		var r float64
		if r, err = load.ParseRate(f.rate); err == nil {
			p.sched = load.Constant(r)
			err = p.sched.Validate()
		}
	case "--ramp":
		p.sched, err = load.ParseRamp(f.ramp)
	case "--steps":
		p.sched, err = load.ParseSteps(f.steps)
	case "--concurrency":
		p.sched = load.Closed(f.concurrency)
		err = p.sched.Validate()
	}
	if err != nil {
		return nil, Usagef("%s: %v", chosen[0], err)
	}
	switch f.arrivals {
	case "uniform":
	case "poisson":
		if p.sched.IsClosed() {
			return nil, Usagef("--arrivals: poisson applies to the open model, not --concurrency")
		}
		p.sched = p.sched.Poisson()
	default:
		return nil, Usagef("--arrivals %q: want uniform or poisson", f.arrivals)
	}
	p.bound = load.Bound{Duration: f.duration, MaxRequests: f.maxRequests}
	if !fl.Changed("duration") && p.sched.Span() > 0 {
		p.bound.Duration = p.sched.Span()
	}
	switch {
	case p.bound.Duration <= 0:
		return nil, Usagef("--duration %s: want > 0", f.duration)
	case f.maxRequests < 0:
		return nil, Usagef("--max-requests %d: must not be negative", f.maxRequests)
	case f.maxInflight < 1:
		return nil, Usagef("--max-inflight %d: want at least 1", f.maxInflight)
	case f.connections < 0:
		return nil, Usagef("--connections %d: must not be negative", f.connections)
	case f.timeout <= 0:
		return nil, Usagef("--timeout %s: want > 0", f.timeout)
	case f.sloP99 < 0:
		return nil, Usagef("--slo-p99 %s: must not be negative", f.sloP99)
	case f.format != "text" && f.format != "json":
		return nil, Usagef("--format %q: want text or json", f.format)
	case f.engine != "builtin" && f.engine != "nethttp":
		return nil, Usagef("--engine %q: want builtin or nethttp", f.engine)
	case f.engine == "nethttp" && f.http2:
		return nil, Usagef("--engine nethttp: applies to HTTP/1.1, not with --http2")
	case f.abortGrace < 0:
		return nil, Usagef("--abort-grace %s: must not be negative", f.abortGrace)
	}
	if f.sloErrors != "" {
		v, err := parsePercent(f.sloErrors)
		if err != nil {
			return nil, Usagef("--slo-errors: %v", err)
		}
		p.sloErrors = v
	}
	if f.abortOnSLO && f.sloP99 == 0 && p.sloErrors < 0 {
		return nil, Usagef("--abort-on-slo: needs --slo-p99 or --slo-errors")
	}

	var headers []scenario.Header
	for _, h := range f.headers {
		sh, err := scenario.ParseHeader(h)
		if err != nil {
			return nil, Usagef("--header: %v", err)
		}
		headers = append(headers, sh)
	}
	switch {
	case f.file != "" && len(args) > 0:
		return nil, Usagef("--file: give a scenario file or URLs, not both")
	case f.file != "":
		p.src, err = scenario.Load(f.file, headers)
	case len(args) > 0:
		p.src, err = scenario.FromURLs(args, headers)
	default:
		return nil, Usagef("load: give the URLs to request, or a scenario file with -f")
	}
	if err != nil {
		return nil, Usagef("%v", err)
	}
	return p, nil
}

// parsePercent reads "1%", "0.5%" or "1" (percent) as a rate in 0..1.
func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("%q: want a percentage from 0 to 100, e.g. 1%%", s)
	}
	return v / 100, nil
}

// commandLine rebuilds the command line from the flags set, for the manifest
// (redacted there).
func commandLine(fl *pflag.FlagSet, args []string) []string {
	var out []string
	fl.Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+f.Name+"="+v)
			}
			return
		}
		out = append(out, "--"+f.Name+"="+f.Value.String())
	})
	return append(out, args...)
}

func runLoad(ctx context.Context, env *Env, cmd *cobra.Command, f *loadFlags, args []string) error {
	p, err := f.plan(cmd.Flags(), args)
	if err != nil {
		return err
	}
	dir, m, err := createRun(f.out, "load", cmd.Flags(), args)
	if err != nil {
		return err
	}
	defer dir.Close()
	finish := func(status, note string) {
		m.EndMS, m.Status, m.StatusNote = time.Now().UnixMilli(), status, note
		if err := dir.WriteJSON(run.ManifestFile, m); err != nil {
			fmt.Fprintf(env.Stderr, "chokepoint: %v\n", err)
		}
	}

	if err := preflight(ctx, p.src.URLs(), min(f.timeout, preflightTimeout)); err != nil {
		finish(run.StatusFailed, err.Error())
		return Exit(ExitUnreachable, err)
	}

	eng, err := load.NewEngine(load.Config{
		Source:           p.src,
		MaxInflight:      f.maxInflight,
		Connections:      f.connections,
		Timeout:          f.timeout,
		HTTP2:            f.http2,
		NetHTTP:          f.engine == "nethttp",
		Insecure:         f.insecure,
		Seed:             f.seed,
		PacingResolution: f.pacing,
	})
	if err != nil {
		finish(run.StatusFailed, err.Error())
		return Exit(ExitUsage, err)
	}
	defer eng.Close()

	rw, err := load.NewRunWriter(dir, time.Now())
	if err != nil {
		finish(run.StatusFailed, err.Error())
		return Exit(ExitInternal, err)
	}
	defer rw.Close()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{env: env, total: p.bound.Duration}
	abort := &sloWatch{p99: f.sloP99, errors: p.sloErrors, grace: f.abortGrace, on: f.abortOnSLO}
	var writeErr error
	res, err := eng.Run(runCtx, p.sched, p.bound, func(w *load.Window) {
		if err := rw.Window(0, w); err != nil && writeErr == nil {
			writeErr = err
			cancel(err)
		}
		prog.window(w)
		if abort.missed(w) {
			cancel(errSLOAbort)
		}
	})
	prog.done()
	if err != nil {
		finish(run.StatusFailed, err.Error())
		return Exit(ExitUsage, err)
	}

	sum := res.Summary(f.maxInflight)
	sum.RunDir = dir.Path()
	interrupted := ctx.Err() != nil
	aborted := !interrupted && errors.Is(context.Cause(runCtx), errSLOAbort)
	if aborted {
		sum.Status = "aborted"
	}
	met := sum.CheckThresholds(f.sloP99, p.sloErrors)
	if err := dir.WriteJSON(load.SummaryFile, sum); err != nil && writeErr == nil {
		writeErr = err
	}
	switch {
	case writeErr != nil:
		finish(run.StatusFailed, writeErr.Error())
	case interrupted:
		finish(run.StatusPartial, "interrupted")
	case aborted:
		finish(run.StatusComplete, errSLOAbort.Error())
	default:
		finish(run.StatusComplete, "")
	}
	if err := printSummary(env.Stdout, f.format, &sum); err != nil {
		return Exit(ExitInternal, err)
	}
	switch {
	case writeErr != nil:
		return Exit(ExitInternal, writeErr)
	case interrupted:
		return Exit(ExitInterrupted, nil)
	case res.Unreachable():
		return Exit(ExitUnreachable, fmt.Errorf("target unreachable: no request could connect (%s)", fmtClasses(sum.ErrorsByClass)))
	case !met || aborted:
		return Exit(ExitThreshold, nil)
	}
	return nil
}

func printSummary(w io.Writer, format string, s *load.Summary) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return load.WriteText(w, s)
}

func fmtClasses(m map[string]int64) string {
	var parts []string
	for _, k := range []string{"refused", "dns"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// preflight dials each origin once. It fails only when none can be reached
// because the connection is refused or the name does not resolve — the
// target is not there at all; anything else (a slow accept) is for the run
// to measure.
func preflight(ctx context.Context, origins []string, timeout time.Duration) error {
	var errs []error
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil {
			return nil // the engine reports bad URLs
		}
		port := u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
		if err == nil {
			c.Close()
			return nil
		}
		if c := load.ClassifyError(err); c != load.ClassRefused && c != load.ClassDNS {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", o, err))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("target unreachable: %w", errors.Join(errs...))
}

// sloWatch decides --abort-on-slo: after the grace period, abortAfterWindows
// consecutive windows missing an objective end the run.
type sloWatch struct {
	p99     time.Duration
	errors  float64
	grace   time.Duration
	on      bool
	start   time.Time
	missing int
}

func (s *sloWatch) missed(w *load.Window) bool {
	if !s.on {
		return false
	}
	if s.start.IsZero() {
		s.start = w.Start
	}
	if w.End.Sub(s.start) <= s.grace || w.All.Requests < abortMinRequests {
		s.missing = 0
		return false
	}
	miss := false
	if s.p99 > 0 && time.Duration(w.All.Latency.ValueAtQuantile(99))*time.Microsecond > s.p99 {
		miss = true
	}
	if s.errors >= 0 && w.All.ErrorRate() > s.errors {
		miss = true
	}
	if !miss {
		s.missing = 0
		return false
	}
	s.missing++
	return s.missing >= abortAfterWindows
}

// progress draws one live line on a terminal's stderr; nothing otherwise.
type progress struct {
	env   *Env
	total time.Duration
	start time.Time
	drawn bool
}

func (p *progress) window(w *load.Window) {
	if !p.env.Interactive {
		return
	}
	if p.start.IsZero() {
		p.start = w.Start
	}
	elapsed := w.End.Sub(p.start)
	left := max(p.total-elapsed, 0)
	offered := "closed"
	if !w.Closed {
		offered = fmt.Sprintf("%.0f/s", w.OfferedRPS)
	}
	fmt.Fprintf(p.env.Stderr, "\r\033[K%5.1fs  offered %s  achieved %.0f/s  p50 %.2fms  p99 %.2fms  errors %d  late %d  dropped %d  left %s",
		elapsed.Seconds(), offered, w.AchievedRPS,
		float64(w.All.Latency.ValueAtQuantile(50))/1000, float64(w.All.Latency.ValueAtQuantile(99))/1000,
		w.All.Errors, w.Late, w.Dropped, left.Round(time.Second))
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.env.Stderr, "\r\033[K")
	}
}
