// Command overhead measures what chokepoint's probes cost the target: the
// zoo's CPU time per request at a fixed rate with every probe on and with
// them off, in alternating runs, and the spread of each side. Run it with
// bench/overhead.sh on a quiet machine; it prints a markdown table for
// docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/hunt"
	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/scenario"
	"github.com/chokepoint/chokepoint/internal/secret"
	"github.com/chokepoint/chokepoint/internal/testpg"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		// Re-executed as the zoo: a process of its own.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := zoo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	rate := flag.Float64("rate", 1000, "fixed offered rate, requests/s")
	dur := flag.Duration("duration", 10*time.Second, "length of each run")
	runs := flag.Int("runs", 5, "runs per side (on, off), alternated")
	mode := flag.String("mode", zoo.None, "zoo mode to load")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := measure(ctx, os.Stdout, *mode, *rate, *dur, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

func measure(ctx context.Context, w io.Writer, mode string, rate float64, dur time.Duration, runs int) error {
	m, ok := zoo.LookupMode(mode)
	if !ok {
		return fmt.Errorf("no zoo mode %q", mode)
	}
	var dsn string
	if m.NeedsDB {
		c, err := testpg.Start(ctx, testpg.Options{})
		if err != nil {
			return err
		}
		defer c.Stop(context.WithoutCancel(ctx))
		if dsn, err = c.CreateDatabase(ctx, "zoo"); err != nil {
			return err
		}
		if err := zoo.Seed(ctx, dsn, 1); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	p, err := zoo.StartProcess(ctx, exe, zoo.Config{DSN: dsn, Bottlenecks: []string{mode}}, os.Stderr)
	if err != nil {
		return err
	}
	defer p.Close(context.WithoutCancel(ctx))
	urls := make([]string, len(m.Paths))
	for i, path := range m.Paths {
		urls[i] = p.URL() + path
	}
	src, err := scenario.FromURLs(urls, nil)
	if err != nil {
		return err
	}
	eng, err := load.NewEngine(load.Config{Source: src})
	if err != nil {
		return err
	}
	defer eng.Close()
	// Warm up connections, pools and caches.
	if _, err := eng.Run(ctx, load.Constant(rate), load.Bound{Duration: 3 * time.Second}, nil); err != nil {
		return err
	}
	var on, off []float64
	for i := 0; i < 2*runs && ctx.Err() == nil; i++ {
		probes := i%2 == 0
		us, err := oneRun(ctx, eng, p.Pid(), urls, dsn, probes, rate, dur)
		if err != nil {
			return err
		}
		if probes {
			on = append(on, us)
		} else {
			off = append(off, us)
		}
		fmt.Fprintf(os.Stderr, "run %d probes=%v: %.1f µs of target CPU per request\n", i+1, probes, us)
	}
	mOn, mOff := median(on), median(off)
	fmt.Fprintf(w, "| zoo mode | rate | runs a side | CPU/request probes off (median, min–max) | probes on (median, min–max) | overhead |\n|---|---:|---:|---|---|---:|\n")
	fmt.Fprintf(w, "| %s | %.0f req/s | %d | %.1f µs (%.1f–%.1f) | %.1f µs (%.1f–%.1f) | %+.1f%% |\n",
		mode, rate, runs, mOff, slices.Min(off), slices.Max(off), mOn, slices.Min(on), slices.Max(on), 100*(mOn-mOff)/mOff)
	return nil
}

// oneRun offers rate for dur and returns the target's CPU microseconds per
// completed request, with every probe running or none.
func oneRun(ctx context.Context, eng *load.Engine, pid int, urls []string, dsn string, probes bool, rate float64, dur time.Duration) (float64, error) {
	dir, err := run.Create(filepath.Join(os.TempDir(), fmt.Sprintf("chokepoint-overhead-%d-%d", os.Getpid(), time.Now().UnixNano())))
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir.Path())
	defer dir.Close()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var built hunt.Built
	var wg sync.WaitGroup
	if probes {
		built = hunt.BuildProbes(ctx, hunt.ProbeOptions{URLs: urls, PID: pid, PostgresDSN: secret.String(dsn), OTLPHTTP: "off", OTLPGRPC: "off"}, slog.New(slog.DiscardHandler))
		for _, pr := range built.Probes {
			wg.Go(func() { pr.Run(pctx, dir) })
		}
	}
	step := probe.Step{Index: 0, OfferedRPS: rate, Start: time.Now(), Planned: dur}
	for _, pr := range built.Probes {
		if o, ok := pr.(probe.StepObserver); ok {
			o.StepStarted(ctx, step)
		}
	}
	before, err := cpuTicks(pid)
	if err != nil {
		return 0, err
	}
	res, err := eng.Run(ctx, load.Constant(rate), load.Bound{Duration: dur}, nil)
	if err != nil {
		return 0, err
	}
	after, err := cpuTicks(pid)
	if err != nil {
		return 0, err
	}
	for _, pr := range built.Probes {
		if o, ok := pr.(probe.StepObserver); ok {
			o.StepEnded(ctx, step)
		}
	}
	cancel()
	wg.Wait()
	if res.Requests() == 0 {
		return 0, fmt.Errorf("no request completed")
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return float64(after-before) / ticksPerSecond * 1e6 / float64(res.Requests()), nil
}

// cpuTicks reads a process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return u + st, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
