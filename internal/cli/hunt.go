package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/chokepoint/chokepoint/internal/capacity"
	"github.com/chokepoint/chokepoint/internal/hunt"
	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/scenario"
	"github.com/chokepoint/chokepoint/internal/secret"
	"github.com/chokepoint/chokepoint/internal/version"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Defaults of hunt (CONTRACT.md §1).
const (
	defaultHuntSLOP99      = 500 * time.Millisecond
	defaultHuntSLOErrors   = "1%"
	defaultHuntMaxRate     = 100000
	defaultHuntMaxDuration = 3 * time.Minute
)

type huntFlags struct {
	file        string
	headers     []string
	sloP99      time.Duration
	sloErrors   string
	maxRate     float64
	maxDuration time.Duration
	startRate   float64
	minStep     time.Duration
	maxStep     time.Duration
	maxInflight int
	timeout     time.Duration
	pprof       string
	metrics     string
	pid         int
	postgres    string
	otlpHTTP    string
	otlpGRPC    string
	noProbes    bool
	dryRun      bool
	out         string
	format      string
}

func newHuntCmd(env *Env) *cobra.Command {
	f := &huntFlags{}
	cmd := &cobra.Command{
		Use:   "hunt [URL...]",
		Short: "Find the capacity and the principal bottleneck",
		Long: `hunt ramps open-model load on the target until its objective breaks, collects
evidence from every source it can reach on the same clock, and names the
principal bottleneck with its evidence, fix and expected gain.

Targets on this machine are probed automatically (process, /debug/pprof,
/metrics); a target elsewhere is hunted only with an explicit --max-rate.`,
		Example: `  chokepoint hunt http://127.0.0.1:8080/orders
  chokepoint hunt http://127.0.0.1:8080/orders --postgres "$DATABASE_URL" --slo-p99 200ms
  chokepoint hunt -f scenario.yaml --max-duration 90s --format json
  chokepoint hunt http://127.0.0.1:8080/ --dry-run`,
		RunE: func(cmd *cobra.Command, args []string) error { return runHunt(cmd.Context(), env, cmd, f, args) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "scenario file (YAML, see docs/scenarios.md)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "header 'Name: value' sent with every request (repeatable)")
	fl.DurationVar(&f.sloP99, "slo-p99", defaultHuntSLOP99, "latency objective at the 99th percentile, from the intended send time")
	fl.StringVar(&f.sloErrors, "slo-errors", defaultHuntSLOErrors, "error-rate objective (percent)")
	fl.Float64Var(&f.maxRate, "max-rate", defaultHuntMaxRate, "never offer more than this many requests/s")
	fl.DurationVar(&f.maxDuration, "max-duration", defaultHuntMaxDuration, "hard bound on the whole hunt, probes included")
	fl.Float64Var(&f.startRate, "start-rate", 0, "first rate offered, requests/s (0: the search's default)")
	fl.DurationVar(&f.minStep, "min-step", 0, "shortest measured step (0: the search's default)")
	fl.DurationVar(&f.maxStep, "max-step", 0, "longest measured step (0: the search's default)")
	fl.IntVar(&f.maxInflight, "max-inflight", load.DefaultMaxInflight, "requests in flight at most; arrivals beyond are dropped and counted")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "per-request timeout")
	fl.StringVar(&f.pprof, "pprof", "", "the target's net/http/pprof base URL (default: auto for local targets)")
	fl.StringVar(&f.metrics, "metrics", "", "the target's Prometheus endpoint (default: auto for local targets)")
	fl.IntVar(&f.pid, "pid", 0, "the target's process ID (default: the local process listening on the target's port)")
	fl.StringVar(&f.postgres, "postgres", "", "DSN of a PostgreSQL the target uses, read-only (default: $CHOKEPOINT_POSTGRES)")
	fl.StringVar(&f.otlpHTTP, "otlp-listen", "", "where to receive OTLP/HTTP traces (default 127.0.0.1:4318 when free; 'off' to disable)")
	fl.StringVar(&f.otlpGRPC, "otlp-grpc-listen", "", "where to receive OTLP/gRPC traces (default 127.0.0.1:4317 when free; 'off' to disable)")
	fl.BoolVar(&f.noProbes, "no-probes", false, "collect client-side evidence only")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan and send nothing")
	fl.StringVar(&f.out, "out", "", "run directory (default ./chokepoint-runs/<UTC timestamp>); must not exist or be empty")
	fl.StringVar(&f.format, "format", "text", "what to print when done: text, json or markdown")
	return cmd
}

func runHunt(ctx context.Context, env *Env, cmd *cobra.Command, f *huntFlags, args []string) error {
	src, search, err := f.validate(cmd.Flags(), args)
	if err != nil {
		return err
	}
	postgres := f.postgres
	if postgres == "" && env.Getenv != nil {
		postgres = env.Getenv("CHOKEPOINT_POSTGRES")
	}
	popts := hunt.ProbeOptions{
		URLs: src.URLs(), PprofURL: f.pprof, MetricsURL: f.metrics, PID: f.pid,
		PostgresDSN: secret.String(postgres), OTLPHTTP: f.otlpHTTP, OTLPGRPC: f.otlpGRPC, Off: f.noProbes,
	}
	if len(args) > 0 {
		popts.Target = args[0] // plain URLs are requested with GET
	}
	if f.dryRun {
		return printDryRun(ctx, env.Stdout, f, src, search, popts)
	}
	if err := preflight(ctx, src.URLs(), min(f.timeout, preflightTimeout)); err != nil {
		return Exit(ExitUnreachable, err)
	}

	dir, m, err := createRun(f.out, "hunt", cmd.Flags(), args)
	if err != nil {
		return err
	}
	defer dir.Close()

	logger := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	built := hunt.BuildProbes(ctx, popts, logger)
	for _, n := range built.Notes {
		if n.Status != "ok" && env.Interactive {
			fmt.Fprintf(env.Stderr, "chokepoint: %s: %s\n", n.Source, n.Detail)
		}
	}
	prog := &huntProgress{env: env, limit: f.maxDuration}
	rep, err := hunt.Run(ctx, hunt.Config{
		Load:      load.Config{Source: src, MaxInflight: f.maxInflight, Timeout: f.timeout},
		Search:    search,
		URLs:      targetNames(src, args),
		PID:       built.PID,
		Probes:    built.Probes,
		Notes:     built.Notes,
		Discovery: built.Discovery,
		Dir:       dir,
		Logger:    logger,
		Progress:  prog.show,
	})
	prog.done()
	interrupted := ctx.Err() != nil
	status, note := run.StatusComplete, ""
	switch {
	case interrupted:
		status, note = run.StatusPartial, "interrupted"
	case err != nil:
		status, note = run.StatusFailed, err.Error()
	}
	m.EndMS, m.Status, m.StatusNote = time.Now().UnixMilli(), status, note
	if werr := dir.WriteJSON(run.ManifestFile, m); werr != nil && err == nil {
		err = werr
	}
	if rep != nil {
		if perr := printReport(env.Stdout, f.format, rep, dir.Path()); perr != nil {
			return Exit(ExitInternal, perr)
		}
	}
	switch {
	case interrupted:
		return Exit(ExitInterrupted, nil)
	case errors.Is(err, hunt.ErrUnreachable):
		return Exit(ExitUnreachable, err)
	case err != nil:
		return Exit(ExitInternal, err)
	}
	return nil
}

// validate checks the flags and builds the request source and the search.
func (f *huntFlags) validate(fl *pflag.FlagSet, args []string) (*scenario.Scenario, capacity.SearchConfig, error) {
	var sc capacity.SearchConfig
	switch f.format {
	case "text", "json", "markdown":
	default:
		return nil, sc, Usagef("--format %q: want text, json or markdown", f.format)
	}
	sloErr, err := parsePercent(f.sloErrors)
	if err != nil {
		return nil, sc, Usagef("--slo-errors: %v", err)
	}
	switch {
	case f.sloP99 <= 0:
		return nil, sc, Usagef("--slo-p99 %s: want > 0", f.sloP99)
	case f.maxRate <= 0 || f.maxRate > load.MaxRate:
		return nil, sc, Usagef("--max-rate %g: want between 0 and %d", f.maxRate, load.MaxRate)
	case f.maxDuration <= 0:
		return nil, sc, Usagef("--max-duration %s: want > 0", f.maxDuration)
	case f.maxInflight < 1:
		return nil, sc, Usagef("--max-inflight %d: want at least 1", f.maxInflight)
	case f.timeout <= 0:
		return nil, sc, Usagef("--timeout %s: want > 0", f.timeout)
	case f.startRate < 0:
		return nil, sc, Usagef("--start-rate %g: must not be negative", f.startRate)
	}
	var headers []scenario.Header
	for _, h := range f.headers {
		sh, err := scenario.ParseHeader(h)
		if err != nil {
			return nil, sc, Usagef("--header: %v", err)
		}
		headers = append(headers, sh)
	}
	var src *scenario.Scenario
	switch {
	case f.file != "" && len(args) > 0:
		return nil, sc, Usagef("--file: give a scenario file or URLs, not both")
	case f.file != "":
		src, err = scenario.Load(f.file, headers)
	case len(args) > 0:
		src, err = scenario.FromURLs(args, headers)
	default:
		return nil, sc, Usagef("hunt: give the URLs to request, or a scenario file with -f")
	}
	if err != nil {
		return nil, sc, Usagef("%v", err)
	}
	if !fl.Changed("max-rate") {
		for _, o := range src.URLs() {
			if !isLocalURL(o) {
				return nil, sc, Usagef("--max-rate: %s is not on this machine; a hunt pushes a service past its objective, so give an explicit --max-rate for it", o)
			}
		}
	}
	sc = capacity.SearchConfig{
		SLOP99: f.sloP99, SLOErrorRate: sloErr, MaxRPS: f.maxRate, MaxDuration: f.maxDuration,
		StartRPS: f.startRate, MinStep: f.minStep, MaxStep: f.maxStep,
	}
	if err := sc.Validate(); err != nil {
		var fe *capacity.FieldError
		if errors.As(err, &fe) {
			return nil, sc, Usagef("--%s: %s", flagForField(fe.Field), fe.Problem)
		}
		return nil, sc, Usagef("%v", err)
	}
	return src, sc, nil
}

func flagForField(field string) string {
	switch field {
	case "SLOP99":
		return "slo-p99"
	case "SLOErrorRate":
		return "slo-errors"
	case "MaxRPS":
		return "max-rate"
	case "MaxDuration":
		return "max-duration"
	case "StartRPS":
		return "start-rate"
	case "MinStep":
		return "min-step"
	case "MaxStep":
		return "max-step"
	}
	return strings.ToLower(field)
}

// isLocalURL reports whether an origin's host is a loopback or local address.
func isLocalURL(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func targetNames(src *scenario.Scenario, args []string) []string {
	if len(args) > 0 {
		return args
	}
	return src.URLs()
}

// createRun creates the run directory out (default
// ./chokepoint-runs/<UTC timestamp>) and writes its first manifest, with the
// command line redacted. Its errors carry their exit status.
func createRun(out, command string, fl *pflag.FlagSet, args []string) (*run.Dir, run.Manifest, error) {
	if out == "" {
		out = filepath.Join("chokepoint-runs", time.Now().UTC().Format("20060102T150405Z"))
	}
	m := run.Manifest{
		Schema:    run.ManifestSchema,
		Command:   command,
		Args:      secret.Args(commandLine(fl, args)),
		Version:   version.String(),
		GoVersion: version.Go(),
		Machine:   run.ThisMachine(),
		StartMS:   time.Now().UnixMilli(),
		Status:    run.StatusRunning,
	}
	dir, err := run.Create(out)
	if errors.Is(err, run.ErrNotEmpty) {
		return nil, m, Usagef("--out %s: exists and is not empty", out)
	}
	if err != nil {
		return nil, m, Exit(ExitInternal, err)
	}
	if err := dir.WriteJSON(run.ManifestFile, m); err != nil {
		dir.Close()
		return nil, m, Exit(ExitInternal, err)
	}
	return dir, m, nil
}

func printDryRun(ctx context.Context, w io.Writer, f *huntFlags, src *scenario.Scenario, sc capacity.SearchConfig, popts hunt.ProbeOptions) error {
	fmt.Fprintf(w, "hunt plan (dry run: nothing is sent)\n")
	fmt.Fprintf(w, "  targets:      %s\n", strings.Join(src.URLs(), ", "))
	fmt.Fprintf(w, "  endpoints:    %s\n", strings.Join(src.Endpoints(), ", "))
	fmt.Fprintf(w, "  objective:    p99 <= %s, errors <= %s\n", sc.SLOP99, f.sloErrors)
	var rates []string
	for _, r := range sc.Ladder() {
		rates = append(rates, fmt.Sprintf("%g", r))
	}
	fmt.Fprintf(w, "  rates:        %s req/s (then refined by bisection)\n", strings.Join(rates, ", "))
	fmt.Fprintf(w, "  bounds:       max rate %g req/s, max duration %s, max in flight %d\n", f.maxRate, f.maxDuration, f.maxInflight)
	for _, c := range hunt.PlanProbes(ctx, popts) {
		fmt.Fprintf(w, "  probe %-8s %s: %s\n", c.Source, c.Status, c.Detail)
	}
	return nil
}

func printReport(w io.Writer, format string, rep *report.Report, dir string) error {
	switch format {
	case "json":
		return report.WriteJSON(w, rep)
	case "markdown":
		return report.WriteMarkdown(w, rep)
	default:
		if err := report.WriteText(w, rep); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "\nrun directory: %s (report.json, timeline.jsonl, profiles/ ...)\n", dir)
		return err
	}
}

// huntProgress draws the live view on a terminal.
type huntProgress struct {
	env   *Env
	limit time.Duration
	drawn bool
}

func (p *huntProgress) show(pr hunt.Progress) {
	if !p.env.Interactive {
		return
	}
	p.drawn = true
	fmt.Fprintf(p.env.Stderr, "\r\033[Kstep %d %-7s offered %7.0f/s achieved %7.0f/s  p99 %8s (SLO %s)  errors %5.2f%%  %s/%s  probes: %s",
		pr.Step, pr.Phase, pr.OfferedRPS, pr.AchievedRPS, pr.P99.Round(100*time.Microsecond), pr.SLOP99, pr.ErrorRate*100,
		pr.Elapsed.Round(time.Second), p.limit, strings.Join(pr.Probes, ","))
}

func (p *huntProgress) done() {
	if p.drawn {
		fmt.Fprint(p.env.Stderr, "\r\033[K")
	}
}
