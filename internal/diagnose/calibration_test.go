package diagnose

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/report"
)

// TestConfidenceCalibration runs every rule on every recorded case and
// labels each candidate, reported or not: right when it is the case's
// expected first finding with the expected locus; wrong when the case says
// its kind must not fire, or when the case expects nothing of note and the
// candidate is major or critical. It prints how right and wrong candidates
// spread over confidence (docs/accuracy.md records the table), lists those
// close to the threshold, and fails when a wrong candidate reaches
// MinConfidence or a right one misses it: the threshold must separate them.
func TestConfidenceCalibration(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "cases", "*"))
	if err != nil {
		t.Fatal(err)
	}
	type point struct {
		conf  float64
		right bool
		what  string
	}
	var pts []point
	for _, d := range dirs {
		in, exp := loadCase(t, d)
		for _, r := range Rules() {
			for _, c := range safeCheck(r, in).Findings {
				kind := c.Kind
				if kind == "" {
					kind = r.Kind()
				}
				what := filepath.Base(d) + ": " + kind
				switch {
				case kind == exp.First && locusMatches(exp.Locus, c.Locus):
					pts = append(pts, point{c.Confidence, true, what})
				case slices.Contains(exp.Not, kind),
					(exp.First == "" || exp.NoMajor) && (c.Severity == report.SeverityCritical || c.Severity == report.SeverityMajor):
					pts = append(pts, point{c.Confidence, false, what})
				}
			}
		}
	}
	bins := []float64{0, 0.5, MinConfidence, 0.7, 0.8, 0.9, 1.01}
	var tab strings.Builder
	fmt.Fprintf(&tab, "| confidence | right | wrong |\n|---|---:|---:|\n")
	for i := 0; i+1 < len(bins); i++ {
		var right, wrong int
		for _, p := range pts {
			if p.conf >= bins[i] && p.conf < bins[i+1] {
				if p.right {
					right++
				} else {
					wrong++
				}
			}
		}
		fmt.Fprintf(&tab, "| %.2f–%.2f | %d | %d |\n", bins[i], min(bins[i+1], 1), right, wrong)
	}
	t.Logf("candidates on %d recorded cases:\n%s", len(dirs), tab.String())
	lowestRight, highestWrong := 1.0, 0.0
	var thin []string
	for _, p := range pts {
		if p.right {
			lowestRight = min(lowestRight, p.conf)
			if p.conf < MinConfidence {
				t.Errorf("right candidate %s at confidence %.2f, below the threshold %.2f", p.what, p.conf, MinConfidence)
			} else if p.conf < MinConfidence+calibrationMargin-1e-9 {
				thin = append(thin, fmt.Sprintf("%s %.2f", p.what, p.conf))
			}
		} else {
			highestWrong = max(highestWrong, p.conf)
			if p.conf >= MinConfidence {
				t.Errorf("wrong candidate %s at confidence %.2f, at or above the threshold %.2f", p.what, p.conf, MinConfidence)
			} else if p.conf > MinConfidence-calibrationMargin+1e-9 {
				thin = append(thin, fmt.Sprintf("%s %.2f", p.what, p.conf))
			}
		}
	}
	t.Logf("lowest right %.2f, highest wrong %.2f, threshold %.2f; within %.2f of it: %v", lowestRight, highestWrong, MinConfidence, calibrationMargin, thin)
}

// calibrationMargin: candidates this close to the threshold, on either
// side, are listed — they would flip on the next run's noise.
const calibrationMargin = 0.05

func locusMatches(want, got report.Locus) bool {
	eq := func(w, g string) bool { return w == "" || w == g }
	return eq(want.Endpoint, got.Endpoint) && eq(want.Function, got.Function) && eq(want.Query, got.Query) &&
		eq(want.Table, got.Table) && eq(want.Downstream, got.Downstream) && eq(want.Process, got.Process) &&
		eq(want.Resource, got.Resource) &&
		(len(want.Columns) == 0 || slices.Equal(want.Columns, got.Columns)) &&
		(want.Limit == 0 || want.Limit == got.Limit)
}
