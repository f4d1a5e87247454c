package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/cli"
	"github.com/chokepoint/chokepoint/internal/compare"
	"github.com/chokepoint/chokepoint/internal/report"
)

// compareMode is the zoo mode the compare test hunts: a worker pool of 2
// waiting ~3 ms on pricing, so its capacity (~2 / 3.5 ms) does not depend on
// how busy the machine's CPUs are and two hunts of it agree; its fixed twin
// (64 workers) serves several times more.
const compareMode = zoo.ConcurrencyLimit

// fixedRateFactor: the fixed twin is hunted up to this multiple of the
// broken twin's first failing rate, as the accuracy test does: enough to
// show the gain, without measuring the machine's CPU instead of the fix.
const fixedRateFactor = 2

// TestCompareRealRuns compares real hunts (issue 7): two hunts of the same
// unchanged zoo are "no-significant-change"; the broken zoo against its
// fixed twin is "improved" with the capacity ratio in the output; the
// reverse order with --fail-on-regression exits 1.
func TestCompareRealRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end hunts are not short; run without -short")
	}
	machineLock(t)
	m, _ := zoo.LookupMode(compareMode)
	pg := zooDSN(t)

	// Both "unchanged" hunts load the same zoo process with the same flags.
	p := startZooModes(t, []string{compareMode}, false, "")
	urls := modePaths(p.URL(), m.Paths)
	repA, dirA := huntDir(t, "A", urls, huntOpts{postgres: pg})
	repA2, dirA2 := huntDir(t, "A2", urls, huntOpts{postgres: pg})
	limit := 100.0
	switch {
	case repA.Capacity.FirstFailingRPS != nil:
		limit = fixedRateFactor * *repA.Capacity.FirstFailingRPS
	case repA.Capacity.MaxRPS != nil:
		limit = fixedRateFactor * *repA.Capacity.MaxRPS
	}
	fp := startZooModes(t, []string{compareMode}, true, "")
	repB, dirB := huntDir(t, "B-fixed", modePaths(fp.URL(), m.Paths), huntOpts{postgres: pg, maxRate: limit})
	for _, r := range []struct {
		name string
		rep  *report.Report
	}{{"A", repA}, {"A2", repA2}, {"B (fixed)", repB}} {
		c := r.rep.Capacity
		t.Logf("hunt %s: max_rps %s, first_failing_rps %s, limited_by %s; findings %s", r.name, rateText(c.MaxRPS), rateText(c.FirstFailingRPS), c.LimitedBy, kinds(r.rep.Findings))
	}

	t.Run("unchanged", func(t *testing.T) {
		res, text, code := runCompare(t, dirA, dirA2)
		if code != cli.ExitOK {
			t.Errorf("compare exited %d, want 0", code)
		}
		if res.Verdict != compare.NoChange {
			t.Errorf("verdict %s, want %s: two hunts of the same unchanged zoo\n%s", res.Verdict, compare.NoChange, text)
		}
		if !strings.HasPrefix(text, "no significant change") {
			t.Errorf("text does not start with the verdict:\n%s", text)
		}
		for _, e := range res.Endpoints {
			if e.Change == compare.ChangeRegressed || e.Change == compare.ChangeImproved {
				t.Errorf("endpoint %s %s between two hunts of the same zoo (p99 ratio %s, p %s)", e.Name, e.Change, ptrText(e.P99Ratio), ptrText(e.PValue))
			}
		}
		// Same target, same flags: its gates must not fire either.
		_, _, code = runCompare(t, dirA, dirA2, "--fail-on-regression")
		if code != cli.ExitOK {
			t.Errorf("compare --fail-on-regression on an unchanged zoo exited %d, want 0", code)
		}
	})

	t.Run("fixed", func(t *testing.T) {
		res, text, code := runCompare(t, dirA, dirB)
		if code != cli.ExitOK {
			t.Errorf("compare exited %d, want 0", code)
		}
		if res.Verdict != compare.Improved {
			t.Errorf("verdict %s, want %s: the fixed twin serves more\n%s", res.Verdict, compare.Improved, text)
		}
		c := res.Capacity
		if c.Ratio == nil || *c.Ratio <= 1 {
			t.Fatalf("capacity ratio %s, want above 1\n%s", ptrText(c.Ratio), text)
		}
		if want := fmt.Sprintf("×%.2f", *c.Ratio); !strings.Contains(text, want) {
			t.Errorf("text output lacks the capacity ratio %s:\n%s", want, text)
		}
		if !strings.HasPrefix(text, "improved") {
			t.Errorf("text does not start with the verdict:\n%s", text)
		}
		resolved := false
		for _, f := range res.Findings.Resolved {
			resolved = resolved || f.Kind == compareMode
		}
		if len(repA.Findings) > 0 && repA.Findings[0].Kind == compareMode && !resolved {
			t.Errorf("A's %s finding is not listed as resolved: %+v", compareMode, res.Findings)
		}
	})

	t.Run("reverse-fails-on-regression", func(t *testing.T) {
		res, text, code := runCompare(t, dirB, dirA, "--fail-on-regression")
		if code != cli.ExitThreshold {
			t.Errorf("compare B A --fail-on-regression exited %d, want %d\n%s", code, cli.ExitThreshold, text)
		}
		if res.Verdict != compare.Regressed {
			t.Errorf("verdict %s, want %s\n%s", res.Verdict, compare.Regressed, text)
		}
		if !res.Regression {
			t.Errorf("regression is false in the JSON")
		}
	})
}

// huntDir is hunt that also returns the run directory (kept under
// $CHOKEPOINT_E2E_KEEP when set, like hunt's): the same arguments, with
// the directory named after the run.
func huntDir(t *testing.T, name string, urls []string, o huntOpts) (*report.Report, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if keep := os.Getenv("CHOKEPOINT_E2E_KEEP"); keep != "" {
		out = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+"-"+time.Now().Format("150405"))
	}
	if o.maxDuration == 0 {
		o.maxDuration = 40 * time.Second
	}
	otlpHTTP := "off"
	if o.otlp != "" {
		otlpHTTP = o.otlp
	}
	args := append([]string{"hunt"}, urls...)
	args = append(args, "--out", out, "--format", "json", "--otlp-listen", otlpHTTP, "--otlp-grpc-listen", "off")
	if os.Getenv("CHOKEPOINT_E2E_FULL") != "1" {
		args = append(args, "--max-duration", o.maxDuration.String(), "--min-step", "2s", "--max-step", "4s")
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
		t.Fatalf("hunt %s exited %d: %s", name, code, stderr.String())
	}
	var rep report.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("hunt %s output is not a report: %v\n%s", name, err, stdout.String())
	}
	t.Logf("run %s kept at %s", name, out)
	return &rep, out
}

// runCompare runs `chokepoint compare a b` in-process twice, as JSON and as
// text, and returns both with the exit status (the same for both).
func runCompare(t *testing.T, a, b string, flags ...string) (*compare.Result, string, int) {
	t.Helper()
	run := func(format string) (string, int) {
		args := append([]string{"compare", a, b, "--format", format}, flags...)
		var stdout, stderr bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		if code != cli.ExitOK && code != cli.ExitThreshold {
			t.Fatalf("compare %v exited %d: %s", args[1:], code, stderr.String())
		}
		return stdout.String(), code
	}
	js, code := run("json")
	var res compare.Result
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatalf("compare output is not JSON: %v\n%s", err, js)
	}
	text, tcode := run("text")
	if tcode != code {
		t.Errorf("compare exited %d with --format json and %d with text", code, tcode)
	}
	t.Logf("compare %s %s %v:\n%s", filepath.Base(a), filepath.Base(b), flags, text)
	return &res, text, code
}

func ptrText(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.3g", *p)
}
