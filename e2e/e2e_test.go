// Package e2e hunts the bottleneck zoo end to end: a real zoo process on a
// real PostgreSQL, the chokepoint CLI in-process, and the report checked
// against the zoo's ground truth.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/cli"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/testpg"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the zoo: StartProcess runs it as
	// "<binary> serve ...", a process of its own like a real target.
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := zoo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	os.Exit(testpg.Main(m))
}

var (
	seedOnce sync.Once
	seedDSN  string
	seedErr  error
)

// zooDSN returns a database seeded for the zoo, shared by the package's
// tests (seeding takes seconds; modes do not change the seeded data in ways
// that matter to one another).
func zooDSN(t *testing.T) string {
	t.Helper()
	c := testpg.Shared(t)
	seedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		seedDSN, seedErr = c.CreateDatabase(ctx, "zoo_e2e")
		if seedErr == nil {
			seedErr = zoo.Seed(ctx, seedDSN, 1)
		}
	})
	if seedErr != nil {
		t.Fatalf("seed zoo database: %v", seedErr)
	}
	return seedDSN
}

// startZoo runs the zoo in a process of its own, on the shared seeded
// database when the mode needs one.
func startZoo(t *testing.T, mode string, fixed bool, otlp string) *zoo.Process {
	t.Helper()
	return startZooOn(t, mode, fixed, otlp, "")
}

// startZooOn is startZoo on the database at dsn ("" = the shared one).
func startZooOn(t *testing.T, mode string, fixed bool, otlp, dsn string) *zoo.Process {
	t.Helper()
	m, ok := zoo.LookupMode(mode)
	if !ok {
		t.Fatalf("no zoo mode %q", mode)
	}
	cfg := zoo.Config{Bottlenecks: []string{mode}, Fixed: fixed, OTLPEndpoint: otlp}
	if m.NeedsDB {
		cfg.DSN = dsn
		if dsn == "" {
			cfg.DSN = zooDSN(t)
		}
	}
	var stderr bytes.Buffer
	p, err := zoo.StartProcess(context.Background(), os.Args[0], cfg, &lockedWriter{w: &stderr})
	if err != nil {
		t.Fatalf("start zoo %s: %v\n%s", mode, err, stderr.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// huntOpts are the shortened steps of CI hunts (full-length hunts belong to
// bench/accuracy.sh).
type huntOpts struct {
	maxRate     float64
	maxDuration time.Duration
	postgres    string
	otlp        string // the OTLP/HTTP receiver's address, "" = off
	extra       []string
}

// limitTolerance: a limit estimated from Little's law over one-second
// windows is within a quarter of the real N (or within one for small N).
const limitTolerance = 0.25

// hunt runs `chokepoint hunt` in-process against urls and returns the report.
func hunt(t *testing.T, urls []string, o huntOpts) *report.Report {
	t.Helper()
	out := filepath.Join(t.TempDir(), "run")
	if keep := os.Getenv("CHOKEPOINT_E2E_KEEP"); keep != "" {
		// Keep run directories for inspection and for recording rule cases.
		out = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-"+time.Now().Format("150405"))
	}
	args := append([]string{"hunt"}, urls...)
	if o.maxDuration == 0 {
		o.maxDuration = 40 * time.Second
	}
	otlpHTTP := "off"
	if o.otlp != "" {
		otlpHTTP = o.otlp
	}
	args = append(args, "--out", out, "--format", "json", "--otlp-listen", otlpHTTP, "--otlp-grpc-listen", "off")
	if os.Getenv("CHOKEPOINT_E2E_FULL") != "1" {
		// CI: short steps. bench/accuracy.sh sets CHOKEPOINT_E2E_FULL=1 for
		// hunts with the default flags.
		args = append(args, "--max-duration", o.maxDuration.String(), "--min-step", "2s", "--max-step", "3s")
	}
	if o.maxRate > 0 {
		args = append(args, "--max-rate", fmt.Sprint(o.maxRate))
	}
	if o.postgres != "" {
		args = append(args, "--postgres", o.postgres)
	}
	args = append(args, o.extra...)
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	if code != cli.ExitOK {
		t.Fatalf("hunt exited %d: %s", code, stderr.String())
	}
	var rep report.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("hunt output is not a report: %v\n%s", err, stdout.String())
	}
	t.Logf("run directory kept at %s", out)
	return &rep
}

// locusMatches compares a finding's locus with the ground truth: every field
// the truth sets must match (downstream hosts are the zoo's own pricing
// address, unknown in advance).
func locusMatches(truth, got report.Locus) (bool, string) {
	var bad []string
	check := func(field, want, have string) {
		if want != "" && want != have {
			bad = append(bad, fmt.Sprintf("%s %q, want %q", field, have, want))
		}
	}
	check("endpoint", truth.Endpoint, got.Endpoint)
	check("function", truth.Function, got.Function)
	check("query", truth.Query, got.Query)
	check("table", truth.Table, got.Table)
	check("resource", truth.Resource, got.Resource)
	if len(truth.Columns) > 0 && !slices.Equal(truth.Columns, got.Columns) {
		bad = append(bad, fmt.Sprintf("columns %v, want %v", got.Columns, truth.Columns))
	}
	if truth.Downstream != "" {
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(truth.Downstream), regexp.QuoteMeta(zoo.PricingHost), `127\.0\.0\.1:\d+`) + "$")
		if !re.MatchString(got.Downstream) {
			bad = append(bad, fmt.Sprintf("downstream %q, want %q", got.Downstream, truth.Downstream))
		}
	}
	if truth.Limit > 0 && math.Abs(float64(got.Limit-truth.Limit)) > math.Max(1, limitTolerance*float64(truth.Limit)) {
		bad = append(bad, fmt.Sprintf("limit %d, want %d", got.Limit, truth.Limit))
	}
	return len(bad) == 0, strings.Join(bad, "; ")
}

// machineLock serialises end-to-end hunts across test processes on this
// machine (flock on a file in the temp dir): two hunts at once would measure
// each other. It is released when the test ends.
func machineLock(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "chokepoint-e2e.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("machine lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("machine lock: %v", err)
	}
	t.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// smallClusterConnections is max_connections of the cluster the
// connections-saturated mode is hunted on: small enough that a short CI
// hunt reaches it (the zoo's own test uses 30).
const smallClusterConnections = 20

// smallClusterDSN starts a PostgreSQL of its own with few connections,
// seeds it for the zoo and stops it when the test ends.
func smallClusterDSN(t *testing.T) string {
	t.Helper()
	if err := testpg.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testpg.Start(ctx, testpg.Options{MaxConnections: smallClusterConnections})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	dsn, err := c.CreateDatabase(ctx, "zoo_small")
	if err != nil {
		t.Fatal(err)
	}
	if err := zoo.Seed(ctx, dsn, 1); err != nil {
		t.Fatal(err)
	}
	return dsn
}
