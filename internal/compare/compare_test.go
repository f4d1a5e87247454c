package compare

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/schemas"
)

var missingIndex = report.Finding{
	Kind: "db.missing-index", Title: "Sequential scan of orders on every GET /orders", Severity: report.SeverityCritical,
	Impact: 0.8, Confidence: 0.9,
	Locus:          report.Locus{Endpoint: "GET /orders", Query: "SELECT id FROM orders WHERE customer_id = $1", Table: "orders", Columns: []string{"customer_id"}},
	Evidence:       []report.Evidence{{Source: "postgres", What: "rows scanned per call", Value: 1.2e6, Unit: "rows"}},
	Recommendation: "CREATE INDEX CONCURRENTLY ON orders (customer_id);",
}

var poolFinding = report.Finding{
	Kind: "db.pool-exhausted", Title: "Requests wait for a connection", Severity: report.SeverityMajor,
	Locus: report.Locus{Resource: "db-pool", Limit: 10},
}

func readBoth(t *testing.T, pa, pb string) (*Run, *Run) {
	t.Helper()
	a, err := ReadRun(context.Background(), pa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadRun(context.Background(), pb)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func hasWarning(res *Result, code string, decisive bool) bool {
	for _, w := range res.Warnings {
		if w.Code == code && w.Decisive == decisive {
			return true
		}
	}
	return false
}

func TestCompareHunts(t *testing.T) {
	before := huntSpec{capacity: 812, p99: 40, seed: 1, findings: []report.Finding{missingIndex, poolFinding}}
	tests := []struct {
		name        string
		a, b        huntSpec
		verdict     string
		capChange   string
		ratioAbout  float64 // 0: not checked
		warn        string  // a warning that must be present ("" none checked)
		warnDecides bool
		check       func(t *testing.T, res *Result)
	}{
		{
			name: "same target twice with noise",
			a:    before, b: huntSpec{capacity: 800, p99: 41, seed: 2, findings: []report.Finding{missingIndex, poolFinding}},
			verdict: NoChange, capChange: ChangeUnchanged,
			check: func(t *testing.T, res *Result) {
				if len(res.Findings.Remaining) != 2 || len(res.Findings.Resolved) != 0 || len(res.Findings.New) != 0 {
					t.Errorf("findings = %+v, want both remaining", res.Findings)
				}
				for _, e := range res.Endpoints {
					if e.PValue == nil {
						t.Errorf("%s: no p-value", e.Name)
					}
				}
			},
		},
		{
			name: "fixed: more capacity and lower p99",
			a:    before, b: huntSpec{capacity: 4100, p99: 8, seed: 3, findings: []report.Finding{{Kind: "cpu.hot-path", Title: "json encoding",
				Severity: report.SeverityCritical, Locus: report.Locus{Function: "main.render", Resource: "cpu"}}, poolFinding}},
			verdict: Improved, capChange: ChangeImproved, ratioAbout: 4100.0 / 812,
			check: func(t *testing.T, res *Result) {
				if len(res.Findings.Resolved) != 1 || res.Findings.Resolved[0].Kind != "db.missing-index" {
					t.Errorf("resolved = %+v, want the missing index", res.Findings.Resolved)
				}
				if len(res.Findings.New) != 1 || res.Findings.New[0].Kind != "cpu.hot-path" {
					t.Errorf("new = %+v, want cpu.hot-path", res.Findings.New)
				}
				if len(res.Findings.Remaining) != 1 || res.Findings.Remaining[0].SeverityB != report.SeverityMajor {
					t.Errorf("remaining = %+v, want the pool finding", res.Findings.Remaining)
				}
				if !strings.Contains(res.Summary, "×") {
					t.Errorf("summary %q has no ratio", res.Summary)
				}
				e := res.Endpoints[0]
				if e.Name != "GET /orders" || e.Change != ChangeImproved || e.PValue == nil || *e.PValue >= alpha {
					t.Errorf("GET /orders = %+v, want improved and significant", e)
				}
			},
		},
		{
			name: "reversed: the fix undone",
			a:    huntSpec{capacity: 4100, p99: 8, seed: 3}, b: before,
			verdict: Regressed, capChange: ChangeRegressed, ratioAbout: 812.0 / 4100,
			check: func(t *testing.T, res *Result) {
				if !res.Regression {
					t.Error("regression = false")
				}
				if len(res.Findings.New) != 2 {
					t.Errorf("new findings = %+v, want 2", res.Findings.New)
				}
			},
		},
		{
			name: "different chokepoint version and machine",
			a:    before, b: huntSpec{capacity: 812, p99: 40, seed: 4, version: "v0.4.0", host: "laptop", findings: []report.Finding{missingIndex, poolFinding}},
			verdict: NoChange, capChange: ChangeUnchanged,
			check: func(t *testing.T, res *Result) {
				if !hasWarning(res, WarnVersion, false) || !hasWarning(res, WarnMachine, false) {
					t.Errorf("warnings = %+v, want version-differs and machine-differs (not decisive)", res.Warnings)
				}
			},
		},
		{
			name: "different URLs",
			a:    before, b: huntSpec{capacity: 4100, p99: 8, seed: 5, urls: []string{"http://127.0.0.1:8080/products"}},
			verdict: NotComparable, warn: WarnTarget, warnDecides: true,
		},
		{
			name: "same paths on another port",
			a:    before, b: huntSpec{capacity: 812, p99: 40, seed: 6, urls: []string{"http://127.0.0.1:9090/orders?customer=7"}, findings: []report.Finding{missingIndex, poolFinding}},
			verdict: NoChange, warn: WarnTarget, warnDecides: false,
		},
		{
			name: "different objective",
			a:    before, b: huntSpec{capacity: 812, p99: 40, seed: 7, sloP99: 200},
			verdict: NotComparable, warn: WarnSLO, warnDecides: true,
		},
		{
			name:    "brackets overlap more than the change",
			a:       huntSpec{capacity: 812, p99: 40, seed: 8, maxRPS: 800, firstFailing: 1600},
			b:       huntSpec{capacity: 812, p99: 40, seed: 9, maxRPS: 1000, firstFailing: 1200},
			verdict: NotComparable, capChange: ChangeUnknown, warn: WarnSamples, warnDecides: true,
		},
		{
			name: "partial run",
			a:    before, b: huntSpec{capacity: 4100, p99: 8, seed: 10, status: "partial"},
			verdict: Improved, warn: WarnPartial, warnDecides: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := readBoth(t, writeHunt(t, tt.a), writeHunt(t, tt.b))
			res := Compare(a, b, Options{})
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s\nsummary: %s\nwarnings: %+v\ncapacity: %+v", res.Verdict, tt.verdict, res.Summary, res.Warnings, res.Capacity)
			}
			if tt.capChange != "" && res.Capacity.Change != tt.capChange {
				t.Errorf("capacity change %s, want %s (%+v)", res.Capacity.Change, tt.capChange, res.Capacity)
			}
			if tt.ratioAbout != 0 {
				c := res.Capacity
				if c.Ratio == nil || c.RatioLow == nil || c.RatioHigh == nil {
					t.Fatalf("capacity = %+v, want a ratio with its range", c)
				}
				if *c.Ratio < tt.ratioAbout*0.85 || *c.Ratio > tt.ratioAbout*1.15 {
					t.Errorf("ratio %.3f, want about %.3f", *c.Ratio, tt.ratioAbout)
				}
				if !(*c.RatioLow <= *c.Ratio && *c.Ratio <= *c.RatioHigh) {
					t.Errorf("ratio %.3f outside [%.3f, %.3f]", *c.Ratio, *c.RatioLow, *c.RatioHigh)
				}
			}
			if tt.warn != "" && !hasWarning(res, tt.warn, tt.warnDecides) {
				t.Errorf("warnings %+v, want %s (decisive %v)", res.Warnings, tt.warn, tt.warnDecides)
			}
			if tt.check != nil {
				tt.check(t, res)
			}
			if res.Regression != (res.Verdict == Regressed) {
				t.Errorf("regression %v with verdict %s", res.Regression, res.Verdict)
			}
			validate(t, res)
		})
	}
}

func TestCompareLoadRuns(t *testing.T) {
	tests := []struct {
		name    string
		a, b    loadSpec
		verdict string
		change  string
		warn    string
	}{
		{"same", loadSpec{rate: 500, p99: 20, seed: 1}, loadSpec{rate: 500, p99: 20, seed: 2}, NoChange, ChangeUnchanged, ""},
		{"slower", loadSpec{rate: 500, p99: 20, seed: 1}, loadSpec{rate: 500, p99: 30, seed: 2}, Regressed, ChangeRegressed, ""},
		{"faster", loadSpec{rate: 500, p99: 30, seed: 1}, loadSpec{rate: 500, p99: 20, seed: 2}, Improved, ChangeImproved, ""},
		{"faster but failing", loadSpec{rate: 500, p99: 30, seed: 1}, loadSpec{rate: 500, p99: 5, errRate: 0.2, seed: 2}, Regressed, ChangeRegressed, ""},
		{"different rate", loadSpec{rate: 500, p99: 20, seed: 1}, loadSpec{rate: 1000, p99: 20, seed: 2}, NotComparable, ChangeUnknown, WarnRates},
		{"too short", loadSpec{rate: 500, p99: 20, seed: 1, windows: 3}, loadSpec{rate: 500, p99: 40, seed: 2, windows: 3}, NoChange, ChangeUnknown, WarnSamples},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := readBoth(t, writeLoad(t, tt.a), writeLoad(t, tt.b))
			if a.Kind != KindLoad {
				t.Fatalf("kind %s, want load", a.Kind)
			}
			res := Compare(a, b, Options{})
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s (%s; %+v)", res.Verdict, tt.verdict, res.Summary, res.Warnings)
			}
			if len(res.Endpoints) != 1 || res.Endpoints[0].Change != tt.change {
				t.Errorf("endpoints %+v, want one %s", res.Endpoints, tt.change)
			}
			if res.Capacity.Change != ChangeUnknown || res.Capacity.Ratio != nil {
				t.Errorf("capacity %+v for load runs, want unknown", res.Capacity)
			}
			if tt.warn != "" && !hasWarning(res, tt.warn, tt.verdict == NotComparable) {
				t.Errorf("warnings %+v, want %s", res.Warnings, tt.warn)
			}
			validate(t, res)
		})
	}
}

// Tolerances decide what counts: a 25% slower p99 is no change under a 30%
// tolerance.
func TestTolerance(t *testing.T) {
	a, b := readBoth(t, writeLoad(t, loadSpec{rate: 500, p99: 20, seed: 1}), writeLoad(t, loadSpec{rate: 500, p99: 25, seed: 2}))
	for _, tt := range []struct {
		tol  float64
		want string
	}{{10, Regressed}, {30, NoChange}} {
		if got := Compare(a, b, Options{ToleranceP99Pct: tt.tol}).Verdict; got != tt.want {
			t.Errorf("tolerance %g%%: verdict %s, want %s", tt.tol, got, tt.want)
		}
	}
}

func TestReadRunErrors(t *testing.T) {
	empty := t.TempDir()
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "report.json"), []byte(`{"schema": "something/v9"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	torn := t.TempDir()
	if err := os.WriteFile(filepath.Join(torn, "load.json"), []byte(`{"schema": "chokepoint.load/v1", "status": `), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"missing", filepath.Join(empty, "nope"), "nope"},
		{"empty dir", empty, "neither report.json nor load.json"},
		{"a file", file, "not a directory"},
		{"foreign report", bad, "not a chokepoint report"},
		{"torn load.json", torn, "load.json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadRun(context.Background(), tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("err = %v, want it to name %s and say %q", err, tt.path, tt.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadRun(ctx, writeLoad(t, loadSpec{rate: 10, p99: 1})); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: err = %v", err)
	}
}

func TestRender(t *testing.T) {
	a, b := readBoth(t, writeHunt(t, huntSpec{capacity: 812, p99: 40, seed: 1, findings: []report.Finding{missingIndex}}),
		writeHunt(t, huntSpec{capacity: 4100, p99: 8, seed: 3, version: "v9"}))
	res := Compare(a, b, Options{})
	var text, md bytes.Buffer
	if err := WriteText(&text, res); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&md, res); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"text": text.String(), "markdown": md.String()} {
		for _, want := range []string{"improved", "792", "3997", "×5.05", "GET /orders", "db.missing-index", "version-differs"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q:\n%s", name, want, out)
			}
		}
	}
	if first, _, _ := strings.Cut(text.String(), "\n"); !strings.HasPrefix(first, "improved: capacity") {
		t.Errorf("first line %q, want the verdict", first)
	}
}

// Text from a run directory cannot become markup in markdown or escape
// sequences in a terminal.
func TestRenderEscapes(t *testing.T) {
	evil := "<script>alert(1)</script>\x1b[2J|`x`"
	res := &Result{Schema: Schema, Verdict: NoChange, Summary: "no significant change",
		Capacity:  CapacityChange{Change: ChangeUnknown},
		Endpoints: []EndpointDiff{{Name: evil, Change: ChangeUnknown}},
		Findings:  FindingDiff{Resolved: []FindingRef{{Kind: "db.slow-query", Locus: report.Locus{Query: evil}}}},
		Warnings:  []Warning{{Code: WarnScenario, Message: evil}}}
	var text, md bytes.Buffer
	if err := WriteText(&text, res); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&md, res); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text.String(), "\x1b") {
		t.Error("text output carries an escape sequence")
	}
	if strings.Contains(md.String(), "<script>") || strings.Contains(md.String(), "|`x`") {
		t.Errorf("markdown output carries markup:\n%s", md.String())
	}
}

func validate(t *testing.T, res *Result) {
	t.Helper()
	var b bytes.Buffer
	if err := WriteJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate("compare.v1.json", b.Bytes()); err != nil {
		t.Errorf("output does not match compare.v1.json: %v\n%s", err, b.String())
	}
}
