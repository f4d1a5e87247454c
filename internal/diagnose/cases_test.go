package diagnose

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

// Each directory under testdata/cases is one recorded run (a trimmed run
// directory: report.json with steps, SLO, capacity and coverage, plus the
// evidence streams and profiles) and an expect.json saying what the rules
// must conclude:
//
//	{"first": "db.missing-index",            // kind of findings[0] ("" = no finding)
//	 "locus": {"table": "orders", ...},        // fields findings[0].locus must have
//	 "limited_by": "db.missing-index",         // optional
//	 "not": ["cpu.hot-path"],                  // kinds that must not be reported at all
//	 "no_major": true}                         // no finding of severity critical or major
//
// Add a case by copying a real run directory (bench/accuracy.sh keeps them)
// and trimming what the rules do not need.
type expectation struct {
	First     string       `json:"first"`
	Locus     report.Locus `json:"locus"`
	LimitedBy string       `json:"limited_by"`
	Not       []string     `json:"not"`
	NoMajor   bool         `json:"no_major"`
	Cores     int          `json:"cores"`
}

var caseFilter = flag.String("case", "", "run only the testdata/cases whose name contains this")

func TestRecordedCases(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "cases", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		name := filepath.Base(d)
		if *caseFilter != "" && !strings.Contains(name, *caseFilter) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			in, exp := loadCase(t, d)
			d := Run(in, Rules())
			var got []string
			for _, f := range d.Findings {
				got = append(got, f.Kind+"/"+f.Severity)
			}
			t.Logf("findings: %v; limited_by %s", got, d.LimitedBy)
			if exp.First == "" {
				if len(d.Findings) > 0 && d.Findings[0].Severity != report.SeverityInfo && d.Findings[0].Severity != report.SeverityMinor {
					t.Errorf("want no finding of note, got %s", d.Findings[0].Kind)
				}
			} else {
				if len(d.Findings) == 0 || d.Findings[0].Kind != exp.First {
					t.Fatalf("first finding %v, want %s; ruled out: %+v", got, exp.First, d.RuledOut)
				}
				checkLocus(t, exp.Locus, d.Findings[0].Locus)
			}
			if exp.LimitedBy != "" && d.LimitedBy != exp.LimitedBy {
				t.Errorf("limited_by %s, want %s", d.LimitedBy, exp.LimitedBy)
			}
			for _, f := range d.Findings {
				if slices.Contains(exp.Not, f.Kind) {
					t.Errorf("%s must not fire here: %s", f.Kind, f.Title)
				}
				if exp.NoMajor && (f.Severity == report.SeverityCritical || f.Severity == report.SeverityMajor) {
					t.Errorf("no major finding expected, got %s %s", f.Severity, f.Kind)
				}
			}
		})
	}
}

func checkLocus(t *testing.T, want, got report.Locus) {
	t.Helper()
	eq := func(field, w, g string) {
		if w != "" && w != g {
			t.Errorf("locus.%s = %q, want %q", field, g, w)
		}
	}
	eq("endpoint", want.Endpoint, got.Endpoint)
	eq("function", want.Function, got.Function)
	eq("query", want.Query, got.Query)
	eq("table", want.Table, got.Table)
	eq("downstream", want.Downstream, got.Downstream)
	eq("process", want.Process, got.Process)
	eq("resource", want.Resource, got.Resource)
	if len(want.Columns) > 0 && !slices.Equal(want.Columns, got.Columns) {
		t.Errorf("locus.columns = %v, want %v", got.Columns, want.Columns)
	}
	if want.Limit > 0 && want.Limit != got.Limit {
		t.Errorf("locus.limit = %d, want %d", got.Limit, want.Limit)
	}
}

// loadCase reads a recorded case directory: the rules' input and what the
// rules must conclude.
func loadCase(t *testing.T, d string) (*Input, expectation) {
	t.Helper()
	var exp expectation
	b, err := os.ReadFile(filepath.Join(d, "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatalf("%s: expect.json: %v", d, err)
	}
	dir, err := run.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	var rep report.Report
	if err := dir.ReadJSON(run.ReportFile, &rep); err != nil {
		t.Fatal(err)
	}
	if exp.Cores == 0 {
		exp.Cores = 2
	}
	in, err := Load(dir, &rep, exp.Cores)
	if err != nil {
		t.Fatal(err)
	}
	return in, exp
}
