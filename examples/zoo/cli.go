package zoo

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit statuses of Main.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// shutdownTimeout bounds Close after serve is interrupted.
const shutdownTimeout = 10 * time.Second

const usage = `zoo: a shop service with switchable bottlenecks

usage:
  zoo serve [--listen ADDR] [--dsn DSN] [--bottleneck NAME[,NAME]] [--fixed] [--otlp URL] [--pool-size N] [--data-dir DIR]
  zoo seed  --dsn DSN [--scale N]
  zoo modes [--json]

The DSN defaults to $ZOO_DSN. serve runs until interrupted.
`

// Main runs the zoo command line (args without the program name) and
// returns the exit status. getenv reads the environment (nil: none).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], stdout, stderr, getenv)
	case "seed":
		err = seedCmd(ctx, args[1:], stdout, stderr, getenv)
	case "modes":
		err = modesCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		err = usageError{fmt.Errorf("unknown command %q", args[0])}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "zoo: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "zoo: %v\n", err)
		return exitError
	}
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("zoo "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("serve", stderr)
	var cfg Config
	var bottleneck string
	fs.StringVar(&cfg.Addr, "listen", "127.0.0.1:8080", "listen address")
	fs.StringVar(&cfg.DSN, "dsn", getenv("ZOO_DSN"), "PostgreSQL DSN (default $ZOO_DSN)")
	fs.StringVar(&bottleneck, "bottleneck", "none", "mode(s) to switch on, comma-separated (see zoo modes)")
	fs.BoolVar(&cfg.Fixed, "fixed", false, "apply each mode's fix")
	fs.StringVar(&cfg.OTLPEndpoint, "otlp", "", "OTLP/HTTP endpoint for traces, e.g. http://127.0.0.1:4318")
	fs.IntVar(&cfg.PoolSize, "pool-size", 0, "database pool size (0: the mode's default)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for io.disk's events (default: a temporary one)")
	verbose := fs.Bool("v", false, "log requests that fail")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Bottlenecks = strings.Split(bottleneck, ",")
	cfg.Isolated = true
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "zoo serving %s (pricing http://%s)\n", s.URL(), s.PricingAddr())
	for _, u := range s.Endpoints() {
		fmt.Fprintf(stdout, "  %s\n", u)
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	return s.Close(cctx)
}

func seedCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("seed", stderr)
	dsn := fs.String("dsn", getenv("ZOO_DSN"), "PostgreSQL DSN (default $ZOO_DSN)")
	scale := fs.Int("scale", 1, fmt.Sprintf("data size: %d customers and %d orders per unit", customersPerScale, ordersPerScale))
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dsn == "" {
		return usageError{errors.New("seed: --dsn is required")}
	}
	start := time.Now()
	if err := Seed(ctx, *dsn, *scale); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "zoo seeded at scale %d in %s\n", *scale, time.Since(start).Round(time.Millisecond))
	return nil
}

func modesCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("modes", stderr)
	asJSON := fs.Bool("json", false, "print the ground truth as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(Modes())
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tDB\tDESCRIPTION")
	for _, m := range Modes() {
		db := ""
		if m.NeedsDB {
			db = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, db, m.Description)
	}
	return tw.Flush()
}
