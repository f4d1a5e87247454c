package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/compare"
	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/schemas"
)

// chokepoint runs the CLI in-process.
func chokepoint(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

// writeSyntheticHunt writes a hunt's run directory: steps 100, 200, 400,
// ... up to the first rate above capacity, five windows each, p99 around
// p99 ms below capacity and 2 s above.
func writeSyntheticHunt(t *testing.T, capacity, p99 float64, findings ...report.Finding) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hunt")
	d, err := run.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := int64(1_790_000_000_000)
	m := run.Manifest{Schema: run.ManifestSchema, Command: "hunt", Args: []string{"http://127.0.0.1:8080/orders"}, Version: "v0.1.0",
		StartMS: start, Status: run.StatusComplete, Machine: run.Machine{Hostname: "ci", OS: "linux", Arch: "amd64", Cores: 4}}
	if err := d.WriteJSON(run.ManifestFile, m); err != nil {
		t.Fatal(err)
	}
	rep := report.Report{Schema: report.Schema, Status: "complete",
		Target:   report.Target{URLs: []string{"http://127.0.0.1:8080/orders"}},
		SLO:      report.SLO{P99MS: 500, ErrorRate: 0.01},
		Findings: append([]report.Finding{}, findings...), RuledOut: []report.RuledOut{}, Coverage: []report.Coverage{},
		Capacity: report.Capacity{LimitedBy: report.LimitedUnexplained}}
	tm := start
	step := 0
	for rate := 100.0; ; rate *= 2 {
		step++
		met := rate <= capacity
		var last float64
		for w := range 5 {
			v := p99 * (0.95 + 0.025*float64((w*7+step)%5))
			if !met {
				v = 2000
			}
			last = v
			r := rate
			rec := evidence.WindowRecord{T: tm + 1000, StartMS: tm, EndMS: tm + 1000, Step: step, Window: w, OfferedRPS: &r,
				AchievedRPS: min(rate, capacity), Requests: int64(min(rate, capacity)), LatencyMS: evidence.WindowLatency{P50: v / 4, P99: v},
				Endpoints: []evidence.WindowEndpoint{{Name: "GET /orders", Requests: int64(min(rate, capacity)), LatencyMS: evidence.WindowLatency{P50: v / 4, P99: v}}}}
			if err := d.Append(run.TimelineFile, rec); err != nil {
				t.Fatal(err)
			}
			tm += 1000
		}
		rep.Steps = append(rep.Steps, report.Step{Index: step, OfferedRPS: rate, AchievedRPS: min(rate, capacity), MetSLO: met,
			Latency: report.Latency{P50: last / 4, P99: last}})
		if met {
			rep.Capacity.MaxRPS = &rep.Steps[len(rep.Steps)-1].OfferedRPS
			continue
		}
		rep.Capacity.FirstFailingRPS = &rep.Steps[len(rep.Steps)-1].OfferedRPS
		break
	}
	rep.Endpoints = []report.Endpoint{{Name: "GET /orders", Requests: 1000, Latency: report.Latency{P50: p99 / 4, P99: p99}}}
	if err := d.WriteJSON(run.ReportFile, rep); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompareCommand(t *testing.T) {
	idx := report.Finding{Kind: "db.missing-index", Title: "Sequential scan of orders", Severity: report.SeverityCritical,
		Locus: report.Locus{Table: "orders", Columns: []string{"customer_id"}, Query: "SELECT * FROM orders WHERE customer_id = $1"}}
	slow := writeSyntheticHunt(t, 800, 40, idx)
	slow2 := writeSyntheticHunt(t, 800, 41, idx)
	fast := writeSyntheticHunt(t, 3200, 8)

	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   string
		validate bool
	}{
		{"improved", []string{"compare", slow, fast}, ExitOK, []string{"improved: capacity 800 → 3200 req/s (×4.00", "resolved  db.missing-index"}, "", false},
		{"improved json", []string{"compare", slow, fast, "--format", "json"}, ExitOK, []string{`"verdict": "improved"`, `"ratio": 4`}, "", true},
		{"improved markdown", []string{"compare", slow, fast, "--format", "markdown"}, ExitOK, []string{"## chokepoint compare: improved"}, "", false},
		{"regressed without the gate", []string{"compare", fast, slow}, ExitOK, []string{"regressed: capacity 3200 → 800"}, "", false},
		{"regressed with the gate", []string{"compare", fast, slow, "--fail-on-regression"}, ExitThreshold, []string{"regressed"}, "regressed beyond the tolerances", false},
		{"unchanged with the gate", []string{"compare", slow, slow2, "--fail-on-regression", "--format", "json"}, ExitOK, []string{`"verdict": "no-significant-change"`}, "", true},
		{"tolerance accepts percent", []string{"compare", slow, slow2, "--tolerance-capacity", "2.5%", "--tolerance-p99", "20"}, ExitOK, []string{"no significant change"}, "", false},
		{"missing run", []string{"compare", slow, filepath.Join(slow, "nope")}, ExitUsage, nil, filepath.Join(slow, "nope"), false},
		{"bad tolerance", []string{"compare", slow, fast, "--tolerance-p99", "-3"}, ExitUsage, nil, "--tolerance-p99", false},
		{"bad format", []string{"compare", slow, fast, "--format", "html"}, ExitUsage, nil, "--format", false},
		{"one argument", []string{"compare", slow}, ExitUsage, nil, "accepts 2 arg", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := chokepoint(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			if !strings.Contains(stderr, tt.stderr) || (tt.stderr == "" && stderr != "") {
				t.Errorf("stderr %q, want %q", stderr, tt.stderr)
			}
			if tt.code == ExitUsage && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("stderr is more than one line: %q", stderr)
			}
			if tt.validate {
				if err := schemas.Validate(compare.Schema, []byte(stdout)); err != nil {
					t.Errorf("json does not match the schema: %v", err)
				}
			}
		})
	}
}

// Two real load runs against one server, the second with a slower
// handler (150 ms: well above the p99 spikes a busy shared machine adds):
// compare finds the p99 regression and gates on it.
func TestCompareRealLoadRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load for 10 seconds")
	}
	var delay atomic.Int64 // the handler's work, set before each run
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(delay.Load()))
		w.Write([]byte("ok"))
	}))
	runs := map[string]string{}
	for _, c := range []struct {
		name  string
		delay time.Duration
	}{{"fast", time.Millisecond}, {"slow", 150 * time.Millisecond}} {
		delay.Store(int64(c.delay))
		dir := filepath.Join(t.TempDir(), c.name)
		code, _, stderr := chokepoint("load", srv.URL+"/item", "--rate", "100", "--duration", "5s", "--out", dir, "--format", "json")
		if code != ExitOK {
			t.Fatalf("load %s: exit %d: %s", c.name, code, stderr)
		}
		runs[c.name] = dir
	}
	code, stdout, stderr := chokepoint("compare", runs["fast"], runs["slow"], "--format", "json", "--fail-on-regression")
	if code != ExitThreshold {
		t.Fatalf("exit %d, want %d (stderr %s)\n%s", code, ExitThreshold, stderr, stdout)
	}
	if err := schemas.Validate(compare.Schema, []byte(stdout)); err != nil {
		t.Errorf("json does not match the schema: %v", err)
	}
	var res compare.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Verdict != compare.Regressed || len(res.Endpoints) != 1 || res.Endpoints[0].Name != "GET /item" ||
		res.Endpoints[0].PValue == nil || *res.Endpoints[0].PValue >= 0.05 || res.Endpoints[0].Change != compare.ChangeRegressed {
		t.Errorf("result %s", stdout)
	}
	if code, stdout, _ := chokepoint("compare", runs["fast"], runs["fast"]); code != ExitOK || !strings.HasPrefix(stdout, "no significant change") {
		t.Errorf("a run against itself: exit %d\n%s", code, stdout)
	}
}
