package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/testpg"
	"github.com/spf13/cobra"
)

// DemoChildEnv marks a process started by `chokepoint demo` to serve the
// zoo: main runs the zoo instead of the CLI when it is set.
const DemoChildEnv = "CHOKEPOINT_DEMO_ZOO"

// Demo defaults: the marquee example needs PostgreSQL; without it, a mode
// that needs no database.
const (
	demoModeDB   = zoo.DBMissingIndex
	demoModeNoDB = zoo.CPUHotPath
	demoSeedWait = 3 * time.Minute
)

type demoFlags struct {
	bottleneck  string
	fixed       bool
	maxDuration time.Duration
	out         string
	format      string
}

func newDemoCmd(env *Env) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Hunt a bundled sample service with a known bottleneck",
		Long: `demo starts the bottleneck zoo (a small shop service with one switchable
bottleneck) in a process of its own — on a throwaway PostgreSQL from the
installed binaries when there are any — hunts it, and prints the diagnosis
and the path of the report. Run it again with --fixed to see the fix work,
and compare the two runs with 'chokepoint compare'.`,
		Example: `  chokepoint demo
  chokepoint demo --bottleneck lock.contention
  chokepoint demo --bottleneck db.missing-index --fixed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), env, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.bottleneck, "bottleneck", "", fmt.Sprintf("zoo mode to hunt (default %s with PostgreSQL, %s without); see 'zoo modes'", demoModeDB, demoModeNoDB))
	fl.BoolVar(&f.fixed, "fixed", false, "apply the mode's textbook fix")
	fl.DurationVar(&f.maxDuration, "max-duration", 90*time.Second, "hard bound on the hunt")
	fl.StringVar(&f.out, "out", "", "run directory (default ./chokepoint-runs/demo-<mode>-<UTC timestamp>)")
	fl.StringVar(&f.format, "format", "text", "text, json or markdown")
	return cmd
}

func runDemo(ctx context.Context, env *Env, f *demoFlags) error {
	say := func(format string, a ...any) { fmt.Fprintf(env.Stderr, "demo: "+format+"\n", a...) }
	pgErr := testpg.Available()
	mode := f.bottleneck
	if mode == "" {
		mode = demoModeDB
		if pgErr != nil {
			mode = demoModeNoDB
		}
	}
	m, ok := zoo.LookupMode(mode)
	if !ok {
		return Usagef("--bottleneck %q: not a zoo mode (chokepoint demo --help lists where to find them)", mode)
	}
	if m.Process {
		if err := zoo.CPUQuotaSupported(); err != nil {
			return Usagef("--bottleneck %s: this machine cannot set a CPU quota: %v", mode, err)
		}
	}
	var dsn string
	if m.NeedsDB {
		if pgErr != nil {
			return Usagef("--bottleneck %s needs PostgreSQL: %v", mode, pgErr)
		}
		say("starting a throwaway PostgreSQL")
		c, err := testpg.Start(ctx, testpg.Options{})
		if err != nil {
			return Exit(ExitInternal, fmt.Errorf("start PostgreSQL: %w", err))
		}
		defer c.Stop(context.WithoutCancel(ctx))
		if dsn, err = c.CreateDatabase(ctx, "zoo"); err != nil {
			return Exit(ExitInternal, err)
		}
		say("seeding 200,000 orders")
		sctx, cancel := context.WithTimeout(ctx, demoSeedWait)
		err = zoo.Seed(sctx, dsn, 1)
		cancel()
		if err != nil {
			return Exit(ExitInternal, fmt.Errorf("seed: %w", err))
		}
	} else if pgErr != nil {
		say("no PostgreSQL binaries here (%v): hunting %s, which needs no database", pgErr, mode)
	}

	exe, err := os.Executable()
	if err != nil {
		return Exit(ExitInternal, err)
	}
	// The zoo runs as a process of its own (this binary, told so by the
	// environment) so that its CPU, memory and threads are its own.
	fixed := ""
	if f.fixed {
		fixed = " (fixed)"
	}
	// Traces go to the hunt's own receiver, on a free port.
	otlpAddr, err := lowport.Addr()
	if err != nil {
		return Exit(ExitInternal, err)
	}
	say("starting the zoo with bottleneck %s%s", mode, fixed)
	p, err := zoo.StartProcess(ctx, exe, zoo.Config{DSN: dsn, Bottlenecks: []string{mode}, Fixed: f.fixed, OTLPEndpoint: "http://" + otlpAddr,
		Env: []string{DemoChildEnv + "=1"}}, io.Discard)
	if err != nil {
		return Exit(ExitInternal, err)
	}
	defer p.Close(context.WithoutCancel(ctx))

	out := f.out
	if out == "" {
		tag := mode
		if f.fixed {
			tag += "-fixed"
		}
		out = filepath.Join("chokepoint-runs", "demo-"+tag+"-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	args := []string{"hunt", "--out", out, "--format", f.format, "--max-duration", f.maxDuration.String(),
		"--otlp-listen", otlpAddr, "--otlp-grpc-listen", "off"}
	for _, path := range m.Paths {
		args = append(args, p.URL()+path)
	}
	if dsn != "" {
		args = append(args, "--postgres", dsn)
	}
	say("hunting %s (up to %s)", p.URL(), f.maxDuration)
	root := newRoot(env)
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		return err
	}
	say("done; compare with the fix: chokepoint demo --bottleneck %s --fixed, then chokepoint compare %s <that run>", mode, out)
	return nil
}
