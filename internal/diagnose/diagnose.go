// Package diagnose turns a run's evidence into findings: one rule per
// finding kind, each reading evidence records (never a probe), ranked so that
// the first finding is the one that explains where the objective broke.
package diagnose

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds that decide whether a finding may be named at all.
const (
	// MinConfidence: below it a candidate is not reported as a finding
	// (it goes to ruled_out with its numbers). Chosen so that a rule needs
	// at least two agreeing signals (each rule documents how it scores).
	MinConfidence = 0.6
	// MajorImpact is CONTRACT.md §4's line between major and minor.
	MajorImpact = 0.2
)

// Rule checks for one finding kind.
type Rule interface {
	// Kind is the finding kind (CONTRACT.md §5) the rule emits.
	Kind() string
	// Check reads the evidence. It returns candidates (possibly none) and,
	// when it found nothing, why not, with the decisive number.
	Check(in *Input) Result
}

// Result is what one rule concluded.
type Result struct {
	Findings []Candidate
	// Why the rule did not fire (with the decisive number), or what
	// evidence it lacked ("could not check: no pprof profile ...").
	RuledOut string
}

// Candidate is a finding before ranking.
type Candidate struct {
	report.Finding
	// Limiting is true when the finding is a saturated resource or a limit
	// that explains the knee (where the SLO broke); false for lesser
	// problems and context (latency contributors, leaks, opportunities).
	Limiting bool
	// Yields names a finding kind that explains the same evidence better
	// (downstream.slow and downstream.serial share a downstream's time):
	// when a candidate of that kind on the same endpoint is found, this
	// one ranks right after it. "" ranks by Limiting and score alone.
	Yields string
}

// Diagnosis is the outcome over all rules.
type Diagnosis struct {
	Findings  []report.Finding
	RuledOut  []report.RuledOut
	LimitedBy string // a finding kind, or one of report.Limited*
}

// Run applies rules to in and ranks what they found.
func Run(in *Input, rules []Rule) Diagnosis {
	var cands []Candidate
	var d Diagnosis
	for _, r := range rules {
		res := safeCheck(r, in)
		kept := 0
		for _, c := range res.Findings {
			if c.Kind == "" {
				c.Kind = r.Kind()
			}
			if c.Confidence < MinConfidence {
				d.RuledOut = append(d.RuledOut, report.RuledOut{Kind: c.Kind,
					Why: fmt.Sprintf("a candidate (%s) reached confidence %.2f, below the %.2f needed to name it", c.Title, c.Confidence, MinConfidence)})
				continue
			}
			cands = append(cands, c)
			kept++
		}
		if kept == 0 {
			why := res.RuledOut
			if why == "" {
				why = "no evidence of it"
			}
			d.RuledOut = append(d.RuledOut, report.RuledOut{Kind: r.Kind(), Why: why})
		}
	}
	d.Findings, d.LimitedBy = rank(in, cands)
	return d
}

// safeCheck runs a rule, turning a panic on odd evidence into a ruled-out
// note: one rule's bug must not cost the whole report.
func safeCheck(r Rule, in *Input) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{RuledOut: fmt.Sprintf("could not check: internal error in rule: %v", p)}
		}
	}()
	return r.Check(in)
}

// yieldRank moves each candidate that yields to another found on the same
// endpoint to right after it (unless that one yields back: then neither
// moves). At most len(cands) moves, so a ring of yields cannot loop.
func yieldRank(cands []Candidate) {
	moves := 0
	for i := 0; i < len(cands) && moves < len(cands); i++ {
		c := cands[i]
		if c.Yields == "" {
			continue
		}
		for j := i + 1; j < len(cands); j++ {
			w := cands[j]
			if w.Kind == c.Yields && w.Locus.Endpoint == c.Locus.Endpoint && w.Yields != c.Kind {
				copy(cands[i:j], cands[i+1:j+1])
				cands[j] = c
				moves++
				i--
				break
			}
		}
	}
}

// rank orders candidates: the principal bottleneck first (a limiting finding
// that explains the SLO breach), then by impact x confidence.
func rank(in *Input, cands []Candidate) ([]report.Finding, string) {
	score := func(c Candidate) float64 { return c.Impact * c.Confidence }
	slices.SortStableFunc(cands, func(a, b Candidate) int {
		if a.Limiting != b.Limiting {
			if a.Limiting {
				return -1
			}
			return 1
		}
		return cmp.Compare(score(b), score(a))
	})
	yieldRank(cands)
	limitedBy := in.Capacity.LimitedBy
	breached := in.Breached()
	principal := -1
	if breached && len(cands) > 0 && cands[0].Limiting {
		principal = 0
	}
	out := make([]report.Finding, 0, len(cands))
	for i, c := range cands {
		f := c.Finding
		switch {
		case i == principal:
			f.Severity = report.SeverityCritical
		case f.Severity == report.SeverityInfo:
		case f.Impact >= MajorImpact:
			f.Severity = report.SeverityMajor
		default:
			f.Severity = report.SeverityMinor
		}
		if !breached && f.Severity == report.SeverityCritical {
			f.Severity = report.SeverityMajor
		}
		// CONTRACT.md §5: a target with no bottleneck below --max-rate has
		// no critical or major finding.
		if limitedBy == report.LimitedNoneFound && (f.Severity == report.SeverityCritical || f.Severity == report.SeverityMajor) {
			f.Severity = report.SeverityMinor
		}
		out = append(out, f)
	}
	switch {
	case limitedBy == report.LimitedLoadgen || limitedBy == report.LimitedNotReached || limitedBy == report.LimitedNoneFound:
		// Decided by the search, not by the rules.
	case breached && principal == 0:
		limitedBy = out[0].Kind
	case breached:
		limitedBy = report.LimitedUnexplained
	}
	return out, limitedBy
}
