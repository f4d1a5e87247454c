package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/report"
)

// diagnosed lists the zoo modes whose rule is built: their end-to-end test
// must pass in CI. The others run with CHOKEPOINT_E2E_ALL=1 (and in
// bench/accuracy.sh), so the table shows where the diagnosis stands.
var diagnosed = map[string]bool{
	zoo.None:                true,
	zoo.DBMissingIndex:      true,
	zoo.DBLockWait:          true,
	zoo.ConcurrencyLimit:    true,
	zoo.IODisk:              true,
	zoo.NetConnectionLimit:  true,
	zoo.ErrorsUnderLoad:     true,
	zoo.PayloadLarge:        true,
	zoo.CPUHotPath:          true,
	zoo.GCPressure:          true,
	zoo.LockContention:      true,
	zoo.CPUThrottled:        true,
	zoo.MemoryLeak:          true,
	zoo.DBNPlusOne:          true,
	zoo.DownstreamSlow:      true,
	zoo.DownstreamRedundant: true,
	zoo.CacheOpportunity:    true,
	zoo.DBSlowQuery:         true,
	zoo.DBPoolExhausted:     true,
	// Each request holds its connection across an ~80 ms carrier call, so
	// the small cluster's 20 connections are reached near 200 req/s, within
	// a CI-length climb.
	zoo.DBConnectionsSaturate: true,
	zoo.DBConnectionChurn:     true,
	// Serial and slow are told apart by the growth of what the call order
	// costs against the growth of the calls' own wait (rules_trace.go);
	// hunted below the machine's collapse (see healthyMaxRate).
	zoo.DownstreamSerial: true,
}

// latencyFixes are modes whose fix shortens each request rather than raise
// the capacity on this machine (parallel downstream calls add concurrency to
// a downstream on the same two cores): their twin must halve the low-load
// p50 instead.
var latencyFixes = map[string]bool{
	zoo.DownstreamSerial: true,
}

// shortLatencyFixes are judged as latencyFixes at CI length only. Repeated
// calls cost capacity too (the full-length table: 3,620 -> 7,561 req/s), but
// a CI-length climb doubles from 2,560 straight to 5,120 req/s, past this
// box's CPU collapse, where the zoo's trace exporter drops spans (from ~9
// per trace to under 2) and garbage collection rightly claims the knee.
var shortLatencyFixes = map[string]bool{
	zoo.DownstreamRedundant: true,
}

// latencyFix reports whether mode m's twin is judged by its low-load p50
// (see latencyFixes) in this run.
func latencyFix(m string) bool {
	return latencyFixes[m] || shortLatencyFixes[m] && os.Getenv("CHOKEPOINT_E2E_FULL") != "1"
}

// healthyMaxRate is the --max-rate of the healthy zoo's hunt: well below
// what one 2-core machine serves with the generator on it (~7,000 req/s
// measured), so that "none-found" is the right answer.
const healthyMaxRate = 1000

// CI budgets of the hunts (bench/accuracy.sh runs them at full length).
const (
	bottleneckHuntDuration = 30 * time.Second
	fixedHuntDuration      = 15 * time.Second
	// bottleneckStartRate skips the first rung of the climb (10 req/s): every
	// zoo bottleneck sits above 80 req/s, and 20 req/s is still low load.
	bottleneckStartRate = 20
)

type row struct {
	mode, expected, got, locus string
	before, after              string
	ok                         bool
}

var (
	tableMu sync.Mutex
	table   []row
)

func record(r row) {
	tableMu.Lock()
	defer tableMu.Unlock()
	table = append(table, r)
}

func rateText(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f", *p)
}

// TestZooAccuracy hunts each zoo mode and its fixed twin: the first finding
// must have the mode's kind and locus; on --fixed it must be gone and the
// capacity higher. The healthy mode must yield no major or critical finding.
func TestZooAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end hunts are not short; run without -short")
	}
	all := os.Getenv("CHOKEPOINT_E2E_ALL") == "1"
	only := os.Getenv("CHOKEPOINT_E2E_MODES")
	for _, m := range zoo.Modes() {
		if only != "" && !strings.Contains(","+only+",", ","+m.Name+",") {
			continue
		}
		if m.Process {
			if err := zoo.CPUQuotaSupported(); err != nil {
				t.Run(m.Name, func(t *testing.T) { t.Skipf("needs a CPU quota: %v", err) })
				continue
			}
		}
		t.Run(m.Name, func(t *testing.T) {
			if !diagnosed[m.Name] && !all && only == "" {
				t.Skipf("rule for %s not built yet (CHOKEPOINT_E2E_ALL=1 runs it)", m.Name)
			}
			checkMode(t, m)
		})
	}
	t.Cleanup(printTable(t))
}

func checkMode(t *testing.T, m zoo.Mode) {
	machineLock(t)
	var pg string
	if m.NeedsDB {
		pg = zooDSN(t)
	}
	if m.Name == zoo.DBConnectionsSaturate {
		// The server's connection cap must be within a short hunt's reach.
		pg = smallClusterDSN(t)
	}
	// Traces go to the hunt's own OTLP receiver on a free low port.
	otlpAddr, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	p := startZooOn(t, m.Name, false, "http://"+otlpAddr, pg)
	urls := make([]string, len(m.Paths))
	for i, path := range m.Paths {
		urls[i] = p.URL() + path
	}
	o := huntOpts{postgres: pg, otlp: otlpAddr, maxDuration: bottleneckHuntDuration}
	if os.Getenv("CHOKEPOINT_E2E_FULL") != "1" {
		o.extra = append(o.extra, "--start-rate", fmt.Sprint(bottleneckStartRate))
	}
	if m.Name == zoo.None || latencyFix(m.Name) {
		// The healthy zoo is limited only by this machine's CPU, shared
		// with the generator and PostgreSQL: hunt it below that. So is a
		// latency bottleneck (serial calls cost each request time, not the
		// service capacity): above ~2,500 req/s the whole box collapses
		// (CPU, descriptors, listen queue) and other rules rightly claim
		// that collapse, in the broken and the fixed zoo alike.
		o.maxRate = healthyMaxRate
	}
	rep := hunt(t, urls, o)
	r := row{mode: m.Name, expected: m.Name, before: rateText(rep.Capacity.MaxRPS)}
	if len(rep.Findings) > 0 {
		r.got = rep.Findings[0].Kind
	} else {
		r.got = rep.Capacity.LimitedBy
	}
	t.Logf("limited_by %s; findings %s", rep.Capacity.LimitedBy, kinds(rep.Findings))

	if m.Name == zoo.None {
		r.expected = report.LimitedNoneFound
		r.got = rep.Capacity.LimitedBy
		r.ok = rep.Capacity.LimitedBy == report.LimitedNoneFound
		for _, f := range rep.Findings {
			if f.Severity == report.SeverityCritical || f.Severity == report.SeverityMajor {
				r.ok = false
				t.Errorf("healthy zoo has a %s finding: %s %s", f.Severity, f.Kind, f.Title)
			}
		}
		if !r.ok {
			t.Errorf("healthy zoo: limited_by %s, want none-found", rep.Capacity.LimitedBy)
		}
		record(r)
		return
	}
	if len(rep.Findings) == 0 || rep.Findings[0].Kind != m.Name {
		record(r)
		t.Fatalf("first finding %s, want %s (limited_by %s; ruled out: %v)", r.got, m.Name, rep.Capacity.LimitedBy, rep.RuledOut)
	}
	ok, why := locusMatches(m.Truth, rep.Findings[0].Locus)
	r.locus = "ok"
	if !ok {
		r.locus = why
		t.Errorf("locus: %s", why)
	}

	// The fixed twin: hunt up to twice the bottleneck's failing rate.
	limit := 100.0
	if rep.Capacity.FirstFailingRPS != nil {
		limit = 2 * *rep.Capacity.FirstFailingRPS
	} else if rep.Capacity.MaxRPS != nil {
		limit = 2 * *rep.Capacity.MaxRPS
	}
	// The broken twin goes first: its idle pooled connections would count
	// against the fixed twin's server, and its process against the CPU.
	stopZoo(t, p)
	fp := startZooOn(t, m.Name, true, "http://"+otlpAddr, pg)
	furls := make([]string, len(m.Paths))
	for i, path := range m.Paths {
		furls[i] = fp.URL() + path
	}
	// The twin's hunt starts at the bottleneck's capacity: it only has to
	// show the fix holds the objective above it (and the finding is gone).
	fo := huntOpts{postgres: pg, maxRate: limit, otlp: otlpAddr, maxDuration: fixedHuntDuration}
	if b := rep.Capacity.MaxRPS; b != nil && *b > 0 && os.Getenv("CHOKEPOINT_E2E_FULL") != "1" && !latencyFix(m.Name) {
		fo.extra = append(fo.extra, "--start-rate", fmt.Sprintf("%.0f", *b))
	}
	fixed := hunt(t, furls, fo)
	r.after = rateText(fixed.Capacity.MaxRPS)
	for _, f := range fixed.Findings {
		if f.Kind == m.Name && (f.Severity == report.SeverityCritical || f.Severity == report.SeverityMajor) {
			t.Errorf("fixed twin still has %s (%s): %s", f.Kind, f.Severity, f.Title)
			ok = false
		}
	}
	switch {
	case m.Name == zoo.MemoryLeak:
		// The leak does not limit a short hunt: its finding being gone is the test.
	case latencyFix(m.Name):
		before, after := lowLoadP50(rep), lowLoadP50(fixed)
		r.after += fmt.Sprintf(" (p50 %.1f→%.1f ms)", before, after)
		if after <= 0 || before <= 0 || after > before/2 {
			t.Errorf("fixed twin's low-load p50 %.1f ms is not half of %.1f ms", after, before)
			ok = false
		}
	default:
		if fixed.Capacity.MaxRPS == nil || (rep.Capacity.MaxRPS != nil && *fixed.Capacity.MaxRPS <= *rep.Capacity.MaxRPS) {
			t.Errorf("fixed capacity %s is not above %s", r.after, r.before)
			ok = false
		}
	}
	r.ok = ok
	record(r)
}

// stopZooTimeout bounds a zoo's graceful shutdown (its requests in flight
// last milliseconds).
const stopZooTimeout = 10 * time.Second

// stopZoo stops a zoo before the test ends (its cleanup then finds it gone).
func stopZoo(t *testing.T, p *zoo.Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stopZooTimeout)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Logf("stop zoo: %v", err)
	}
}

func kinds(fs []report.Finding) string {
	var k []string
	for _, f := range fs {
		k = append(k, f.Kind+"("+f.Severity+")")
	}
	return strings.Join(k, ", ")
}

// printTable logs the accuracy table and, with CHOKEPOINT_ACCURACY_OUT set,
// writes it there as markdown (bench/accuracy.sh records it in
// docs/accuracy.md).
func printTable(t *testing.T) func() {
	return func() {
		tableMu.Lock()
		defer tableMu.Unlock()
		var b strings.Builder
		b.WriteString("| mode | expected | got | locus | capacity before | capacity fixed | pass |\n|---|---|---|---|---:|---:|---|\n")
		for _, r := range table {
			pass := "yes"
			if !r.ok {
				pass = "NO"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.mode, r.expected, r.got, r.locus, r.before, r.after, pass)
		}
		t.Logf("accuracy table:\n%s", b.String())
		if out := os.Getenv("CHOKEPOINT_ACCURACY_OUT"); out != "" {
			if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
				t.Errorf("write accuracy table: %v", err)
			}
		}
	}
}

// lowLoadP50 is the p50 latency (ms) of a hunt's lowest-rate measured step.
func lowLoadP50(rep *report.Report) float64 {
	best := -1
	for i, s := range rep.Steps {
		if s.Requests > 0 && (best < 0 || s.OfferedRPS < rep.Steps[best].OfferedRPS) {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	return rep.Steps[best].Latency.P50
}
