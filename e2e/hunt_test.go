package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/cli"
	"github.com/chokepoint/chokepoint/internal/report"
)

// sweepTolerance: the hunt's capacity must be within 15% of an independent
// constant-rate sweep (issue 5).
const sweepTolerance = 0.15

// TestHuntCapacityMatchesSweep hunts a mode whose capacity does not depend
// on the machine's CPU (a worker pool of 2 waiting on a downstream), then
// offers constant rates around the result with `chokepoint load`: the
// highest rate that meets the objective must be within 15% of max_rps.
func TestHuntCapacityMatchesSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	machineLock(t)
	m, _ := zoo.LookupMode(zoo.ConcurrencyLimit)
	p := startZoo(t, m.Name, false, "")
	urls := make([]string, len(m.Paths))
	for i, path := range m.Paths {
		urls[i] = p.URL() + path
	}
	rep := hunt(t, urls, huntOpts{postgres: zooDSN(t)})
	if rep.Capacity.MaxRPS == nil {
		t.Fatalf("no capacity: limited_by %s", rep.Capacity.LimitedBy)
	}
	hunted := *rep.Capacity.MaxRPS
	slo := time.Duration(rep.SLO.P99MS * float64(time.Millisecond))

	best := 0.0
	for _, f := range []float64{0.8, 0.9, 1.0, 1.1, 1.2} {
		rate := math.Round(hunted * f)
		args := append([]string{"load"}, urls...)
		args = append(args, "--rate", fmt.Sprint(rate), "--duration", "5s", "--slo-p99", slo.String(),
			"--out", filepath.Join(t.TempDir(), "sweep"))
		var out, errb bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errb})
		switch code {
		case cli.ExitOK:
			best = rate
			t.Logf("sweep %.0f req/s: met", rate)
		case cli.ExitThreshold:
			t.Logf("sweep %.0f req/s: missed", rate)
		default:
			t.Fatalf("load exited %d: %s", code, errb.String())
		}
	}
	if best == 0 {
		t.Fatalf("no sweep rate met the objective; hunted max_rps %.0f", hunted)
	}
	if d := math.Abs(best-hunted) / best; d > sweepTolerance {
		t.Errorf("hunted max_rps %.0f vs sweep %.0f: %.0f%% apart, want within %.0f%%", hunted, best, d*100, sweepTolerance*100)
	}
}

// TestHuntStarvedGeneratorSaysSo: with one request in flight at most, the
// generator cannot offer the rates the hunt asks for; the report must say
// the generator was the limit and give no capacity.
func TestHuntStarvedGeneratorSaysSo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	machineLock(t)
	m, _ := zoo.LookupMode(zoo.DownstreamSlow)
	p := startZoo(t, m.Name, false, "")
	rep := hunt(t, []string{p.URL() + m.Paths[0]}, huntOpts{extra: []string{"--max-inflight", "1"}})
	if rep.Capacity.LimitedBy != report.LimitedLoadgen {
		t.Fatalf("limited_by %s, want %s", rep.Capacity.LimitedBy, report.LimitedLoadgen)
	}
	if rep.Capacity.MaxRPS != nil {
		t.Errorf("max_rps %v, want null when the generator was the limit", *rep.Capacity.MaxRPS)
	}
	if len(rep.Findings) == 0 || rep.Findings[0].Kind != report.LimitedLoadgen {
		t.Errorf("first finding %v, want loadgen.saturated", kinds(rep.Findings))
	}
}
