// Package compare compares two runs (CONTRACT.md §7, chokepoint.compare/v1):
// capacity with its uncertainty, latency per endpoint with a Mann–Whitney
// test over per-second windows at matching rates, findings resolved, new
// and remaining, and a verdict.
package compare

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

// Schema identifies compare documents.
const Schema = "chokepoint.compare/v1"

// Verdicts.
const (
	Improved      = "improved"
	Regressed     = "regressed"
	NoChange      = "no-significant-change"
	NotComparable = "not-comparable"
)

// Changes of one measure.
const (
	ChangeImproved  = "improved"
	ChangeRegressed = "regressed"
	ChangeUnchanged = "unchanged"
	ChangeUnknown   = "unknown"
)

// Warning codes (schemas/compare.v1.json).
const (
	WarnScenario = "scenario-differs"
	WarnRates    = "rates-differ"
	WarnSLO      = "slo-differs"
	WarnMachine  = "machine-differs"
	WarnVersion  = "version-differs"
	WarnPartial  = "run-partial"
	WarnSamples  = "too-few-samples"
	WarnTarget   = "target-differs"
)

// Defaults of the tolerances (CONTRACT.md §1: compare's flags).
const (
	DefaultToleranceCapacityPct = 5.0
	DefaultToleranceP99Pct      = 10.0
)

// Numbers that decide.
const (
	// alpha: a difference in latency is significant below this p-value,
	// the conventional 5% level.
	alpha = 0.05
	// minWindows: with fewer windows on a side, no ordering of the values
	// reaches p < 0.05 (the smallest exact two-sided p with 3 against 3 is
	// 0.1), so the test is not run.
	minWindows = 4
	// rateMatch: two steps are at the same rate when their offered rates
	// differ by at most 5%; a hunt's ladder and refinement give the same
	// rates for the same settings, and latency below the knee barely moves
	// within 5% of load.
	rateMatch = 0.05
	// maxOverlap: two capacity brackets (max_rps to first_failing_rps)
	// overlapping by more than half of the narrower one cannot tell which
	// capacity is higher.
	maxOverlap = 0.5
	// errorRise: an endpoint whose error rate rises by more than one
	// percentage point (the default --slo-errors) regressed, whatever its
	// latency did (failing fast is not an improvement).
	errorRise = 0.01
	// minErrorRequests: error rates from fewer requests are not compared.
	minErrorRequests = 100
)

// Options are compare's settings; the zero value means the defaults.
type Options struct {
	// ToleranceCapacityPct: a capacity change within this many percent is
	// no change (default DefaultToleranceCapacityPct).
	ToleranceCapacityPct float64
	// ToleranceP99Pct: a p99 change within this many percent is no change
	// (default DefaultToleranceP99Pct).
	ToleranceP99Pct float64
}

func (o Options) withDefaults() Options {
	if o.ToleranceCapacityPct <= 0 {
		o.ToleranceCapacityPct = DefaultToleranceCapacityPct
	}
	if o.ToleranceP99Pct <= 0 {
		o.ToleranceP99Pct = DefaultToleranceP99Pct
	}
	return o
}

// Result is `compare --format json` (schemas/compare.v1.json).
type Result struct {
	Schema  string `json:"schema"`
	Verdict string `json:"verdict"`
	// Regression is true when --fail-on-regression exits 1: the verdict
	// is regressed.
	Regression bool           `json:"regression"`
	A          RunInfo        `json:"a"`
	B          RunInfo        `json:"b"`
	Tolerance  Tolerance      `json:"tolerance"`
	Capacity   CapacityChange `json:"capacity"`
	Endpoints  []EndpointDiff `json:"endpoints"`
	Findings   FindingDiff    `json:"findings"`
	Warnings   []Warning      `json:"warnings"`
	// Summary is the one-line verdict with its numbers, for people.
	Summary string `json:"-"`
	// Reasons say what decided the verdict, for people.
	Reasons []string `json:"-"`
}

// RunInfo identifies one of the two runs.
type RunInfo struct {
	Dir      string       `json:"dir"`
	Status   string       `json:"status"`
	Command  string       `json:"command,omitempty"`
	Version  string       `json:"chokepoint_version,omitempty"`
	StartMS  int64        `json:"start_ms,omitempty"`
	Scenario string       `json:"scenario,omitempty"`
	URLs     []string     `json:"urls,omitempty"`
	Machine  *run.Machine `json:"machine,omitempty"`
}

// Tolerance is what was applied, in percent.
type Tolerance struct {
	CapacityPct float64 `json:"capacity_pct"`
	P99Pct      float64 `json:"p99_pct"`
}

// CapacityChange is the capacity of A and B with their ratio B/A and its
// uncertainty: each hunt's capacity lies between its max_rps (met the
// objective) and its first_failing_rps (did not).
type CapacityChange struct {
	ARPS        *float64 `json:"a_rps"`
	BRPS        *float64 `json:"b_rps"`
	Ratio       *float64 `json:"ratio"`
	RatioLow    *float64 `json:"ratio_low"`
	RatioHigh   *float64 `json:"ratio_high"`
	Uncertainty string   `json:"uncertainty,omitempty"`
	LimitedByA  string   `json:"limited_by_a,omitempty"`
	LimitedByB  string   `json:"limited_by_b,omitempty"`
	Change      string   `json:"change"`
}

// EndpointDiff is one endpoint in A and B.
type EndpointDiff struct {
	Name     string         `json:"name"`
	A        *EndpointStats `json:"a"`
	B        *EndpointStats `json:"b"`
	P50Ratio *float64       `json:"p50_ratio,omitempty"`
	P99Ratio *float64       `json:"p99_ratio,omitempty"`
	PValue   *float64       `json:"p_value"`
	Change   string         `json:"change"`
	// Windows is how many one-second windows of each run were compared.
	Windows int `json:"-"`
	// Why says what decided Change, for people.
	Why string `json:"-"`
}

// EndpointStats is one endpoint in one run. When windows at matching rates
// were compared, p50/p99 are the medians of the per-window percentiles over
// those windows; otherwise the run's own summary.
type EndpointStats struct {
	Requests  int64   `json:"requests"`
	ErrorRate float64 `json:"error_rate"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
}

// FindingDiff matches findings by kind and locus.
type FindingDiff struct {
	Resolved  []FindingRef `json:"resolved"`
	New       []FindingRef `json:"new"`
	Remaining []FindingRef `json:"remaining"`
}

// FindingRef is a finding identified by kind and locus.
type FindingRef struct {
	Kind      string       `json:"kind"`
	Locus     report.Locus `json:"locus"`
	Title     string       `json:"title,omitempty"`
	SeverityA string       `json:"severity_a,omitempty"`
	SeverityB string       `json:"severity_b,omitempty"`
}

// Warning says how the runs differ; Decisive ones make them not comparable.
type Warning struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Decisive bool   `json:"decisive"`
}

// Compare compares run A (before) with run B (after).
func Compare(a, b *Run, opt Options) *Result {
	opt = opt.withDefaults()
	res := &Result{
		Schema:    Schema,
		A:         a.info(),
		B:         b.info(),
		Tolerance: Tolerance{CapacityPct: opt.ToleranceCapacityPct, P99Pct: opt.ToleranceP99Pct},
		Endpoints: []EndpointDiff{},
		Warnings:  []Warning{},
	}
	res.Warnings = append(res.Warnings, runWarnings(a, b)...)
	res.Capacity = compareCapacity(a, b, opt.ToleranceCapacityPct/100)
	pairs := matchGroups(groupWindows(a.Timeline), groupWindows(b.Timeline))
	if len(a.Timeline) > 0 && len(b.Timeline) > 0 && len(pairs) == 0 {
		decisive := a.Kind == KindLoad && b.Kind == KindLoad
		res.Warnings = append(res.Warnings, Warning{Code: WarnRates, Decisive: decisive,
			Message: "no step of A ran at the rate of a step of B (within 5%): latency cannot be compared at equal load"})
	}
	res.Endpoints = compareEndpoints(a, b, pairs, opt.ToleranceP99Pct/100)
	var few []string
	for _, e := range res.Endpoints {
		if e.A != nil && e.B != nil && e.PValue == nil {
			few = append(few, e.Name)
		}
	}
	if len(few) > 0 {
		res.Warnings = append(res.Warnings, Warning{Code: WarnSamples,
			Message: fmt.Sprintf("fewer than %d comparable one-second windows per run for %s: latency not tested", minWindows, strings.Join(few, ", "))})
	}
	res.Findings = compareFindings(a, b)
	decide(res)
	return res
}

// runWarnings compares what ran: targets, scenario, objective, machine,
// version, status and load settings.
func runWarnings(a, b *Run) []Warning {
	var ws []Warning
	add := func(code string, decisive bool, format string, args ...any) {
		ws = append(ws, Warning{Code: code, Decisive: decisive, Message: fmt.Sprintf(format, args...)})
	}
	for _, r := range []struct {
		name string
		run  *Run
	}{{"A", a}, {"B", b}} {
		switch st := r.run.status(); st {
		case run.StatusComplete:
		case run.StatusFailed:
			add(WarnPartial, true, "run %s failed (%s): it measured nothing to compare", r.name, r.run.Dir)
		default:
			add(WarnPartial, false, "run %s is %s: it ended early, so its numbers cover less", r.name, st)
		}
		if r.run.TimelineNote != "" {
			add(WarnSamples, false, "run %s: %s", r.name, r.run.TimelineNote)
		}
	}
	if a.Kind != b.Kind {
		add(WarnRates, false, "A is a %s run and B a %s run: only latency at matching rates is compared", a.Kind, b.Kind)
	}
	ua, ub := a.urls(), b.urls()
	if len(ua) > 0 && len(ub) > 0 {
		pa, pb := urlPaths(ua), urlPaths(ub)
		switch {
		case !slices.Equal(pa, pb):
			add(WarnTarget, true, "the runs requested different URLs (A: %s; B: %s)", strings.Join(ua, " "), strings.Join(ub, " "))
		case !slices.Equal(sortedCopy(ua), sortedCopy(ub)):
			add(WarnTarget, false, "the same paths on a different address (A: %s; B: %s): make sure it is the same service", strings.Join(ua, " "), strings.Join(ub, " "))
		}
	}
	if sa, sb := a.scenario(), b.scenario(); sa != sb {
		add(WarnScenario, false, "scenario files differ (A: %q, B: %q)", sa, sb)
	}
	if ea, eb := endpointNames(a), endpointNames(b); len(ea) > 0 && len(eb) > 0 && !slices.Equal(ea, eb) {
		add(WarnScenario, false, "the runs have different endpoints (A: %s; B: %s)", strings.Join(ea, ", "), strings.Join(eb, ", "))
	}
	if a.Report != nil && b.Report != nil {
		sa, sb := a.Report.SLO, b.Report.SLO
		if sa.P99MS != sb.P99MS || sa.ErrorRate != sb.ErrorRate {
			add(WarnSLO, true, "the objectives differ (A: p99 %g ms, errors %g%%; B: p99 %g ms, errors %g%%): capacity is measured against the objective",
				sa.P99MS, sa.ErrorRate*100, sb.P99MS, sb.ErrorRate*100)
		}
	}
	fa, _ := a.flags()
	fb, _ := b.flags()
	if a.Kind == KindHunt && b.Kind == KindHunt {
		for _, k := range []string{"max-rate", "max-duration", "max-inflight"} {
			if fa[k] != fb[k] {
				add(WarnRates, false, "--%s differs (A: %s, B: %s)", k, orDefault(fa[k]), orDefault(fb[k]))
			}
		}
	}
	if a.Load != nil && b.Load != nil {
		la, lb := a.Load, b.Load
		switch {
		case la.Model != lb.Model:
			add(WarnRates, true, "A ran the %s model and B the %s model: their latencies are not comparable", la.Model, lb.Model)
		case la.Model == "closed" && la.Concurrency != lb.Concurrency:
			add(WarnRates, true, "A ran %d users and B %d", la.Concurrency, lb.Concurrency)
		case la.OfferedRPS != nil && lb.OfferedRPS != nil && !sameRate(*la.OfferedRPS, *lb.OfferedRPS):
			add(WarnRates, true, "A offered %.4g req/s and B %.4g req/s: latency depends on load", *la.OfferedRPS, *lb.OfferedRPS)
		case la.Schedule != lb.Schedule:
			add(WarnRates, false, "the schedules differ (A: %s; B: %s)", la.Schedule, lb.Schedule)
		}
	}
	if a.Manifest != nil && b.Manifest != nil {
		ma, mb := a.Manifest.Machine, b.Manifest.Machine
		if ma != mb {
			add(WarnMachine, false, "the runs ran on different machines (A: %s; B: %s)", machineText(ma), machineText(mb))
		}
		if a.Manifest.Version != b.Manifest.Version {
			add(WarnVersion, false, "different chokepoint versions (A: %s, B: %s)", a.Manifest.Version, b.Manifest.Version)
		}
	}
	return ws
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

func machineText(m run.Machine) string {
	return fmt.Sprintf("%s %s/%s, %d cores, %.1f GiB", m.Hostname, m.OS, m.Arch, m.Cores, float64(m.MemoryBytes)/(1<<30))
}

// urlPaths reduces URLs to what identifies the resource (path and query),
// sorted, so that the same service on another port matches.
func urlPaths(urls []string) []string {
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		rest := u
		if i := strings.Index(rest, "://"); i >= 0 {
			rest = rest[i+3:]
			if j := strings.IndexAny(rest, "/?#"); j >= 0 {
				rest = rest[j:]
			} else {
				rest = "/"
			}
		}
		out = append(out, rest)
	}
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// summaryEndpoints are the endpoints of the run's report.json or load.json,
// in their order.
func summaryEndpoints(r *Run) []string {
	var out []string
	switch {
	case r.Report != nil:
		for _, e := range r.Report.Endpoints {
			out = append(out, e.Name)
		}
	case r.Load != nil:
		for _, e := range r.Load.Endpoints {
			out = append(out, e.Name)
		}
	}
	return out
}

// endpointNames are the run's endpoints, sorted.
func endpointNames(r *Run) []string {
	out := summaryEndpoints(r)
	slices.Sort(out)
	return slices.Compact(out)
}

func sameRate(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= rateMatch*math.Max(math.Abs(a), math.Abs(b))
}

func ptr(v float64) *float64 { return &v }

// finitePtr is ptr for finite values and nil otherwise (JSON has no Inf).
func finitePtr(v float64) *float64 {
	if !finite(v) {
		return nil
	}
	return &v
}

// compareCapacity compares the hunts' capacities. Each lies in [max_rps,
// first_failing_rps) (unbounded above when no step failed), so the ratio
// lies in [B.low/A.high, B.high/A.low].
func compareCapacity(a, b *Run, tol float64) CapacityChange {
	c := CapacityChange{Change: ChangeUnknown}
	if a.Report == nil || b.Report == nil {
		c.Uncertainty = "capacity is measured by hunts only"
		return c
	}
	ca, cb := a.Report.Capacity, b.Report.Capacity
	valid := func(p *float64) *float64 {
		if p == nil || *p < 0 || !finite(*p) {
			return nil
		}
		return p
	}
	c.ARPS, c.BRPS = valid(ca.MaxRPS), valid(cb.MaxRPS)
	c.LimitedByA, c.LimitedByB = ca.LimitedBy, cb.LimitedBy
	if c.ARPS == nil || c.BRPS == nil || *c.ARPS == 0 {
		c.Uncertainty = "a run has no capacity (no step met the objective, or the generator was the limit)"
		return c
	}
	aLo, bLo := *c.ARPS, *c.BRPS
	aHi, bHi := math.Inf(1), math.Inf(1)
	if ca.FirstFailingRPS != nil && *ca.FirstFailingRPS > aLo {
		aHi = *ca.FirstFailingRPS
	}
	if cb.FirstFailingRPS != nil && *cb.FirstFailingRPS > bLo {
		bHi = *cb.FirstFailingRPS
	}
	ratio := bLo / aLo
	if !finite(ratio) {
		c.Uncertainty = "the capacities are out of range"
		return c
	}
	c.Ratio = ptr(ratio)
	if !math.IsInf(aHi, 1) {
		c.RatioLow = finitePtr(bLo / aHi)
	}
	if !math.IsInf(bHi, 1) {
		c.RatioHigh = finitePtr(bHi / aLo)
	}
	c.Uncertainty = fmt.Sprintf("each capacity lies between the highest rate that met the objective and the lowest that did not (A: %s, B: %s); the ratio between the extremes", bracketText(aLo, aHi), bracketText(bLo, bHi))
	overlap := math.Max(0, math.Min(aHi, bHi)-math.Max(aLo, bLo))
	narrower := math.Min(aHi-aLo, bHi-bLo)
	frac := 1.0
	if overlap == 0 {
		frac = 0
	} else if !math.IsInf(narrower, 1) && narrower > 0 {
		frac = overlap / narrower
	}
	switch {
	case math.Abs(ratio-1) <= tol:
		c.Change = ChangeUnchanged
	case frac > maxOverlap:
		c.Change = ChangeUnknown
		c.Uncertainty += fmt.Sprintf("; the brackets overlap by %.0f%% of the narrower one, more than the change can be told from", frac*100)
	case ratio > 1:
		c.Change = ChangeImproved
	default:
		c.Change = ChangeRegressed
	}
	return c
}

func bracketText(lo, hi float64) string {
	if math.IsInf(hi, 1) {
		return fmt.Sprintf("≥ %.4g req/s", lo)
	}
	return fmt.Sprintf("%.4g–%.4g req/s", lo, hi)
}

// group is a run of windows at one rate within one step.
type group struct {
	step    int
	rate    float64 // NaN for the closed model
	windows []evidence.WindowRecord
}

// groupWindows splits a timeline into groups of consecutive windows of one
// step at one rate (within rateMatch of the group's first window).
func groupWindows(tl []evidence.WindowRecord) []group {
	var out []group
	for _, w := range tl {
		rate := math.NaN()
		if w.OfferedRPS != nil && finite(*w.OfferedRPS) {
			rate = *w.OfferedRPS
		}
		if n := len(out); n > 0 {
			g := &out[n-1]
			if g.step == w.Step && (math.IsNaN(g.rate) && math.IsNaN(rate) || sameRate(g.rate, rate)) {
				g.windows = append(g.windows, w)
				continue
			}
		}
		out = append(out, group{step: w.Step, rate: rate, windows: []evidence.WindowRecord{w}})
	}
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// matchGroups pairs each group of A with the unused group of B at the
// closest rate within rateMatch; closed-model groups pair in order.
func matchGroups(ga, gb []group) [][2]group {
	used := make([]bool, len(gb))
	var out [][2]group
	for _, a := range ga {
		best := -1
		for j, b := range gb {
			if used[j] {
				continue
			}
			if math.IsNaN(a.rate) || math.IsNaN(b.rate) {
				if math.IsNaN(a.rate) && math.IsNaN(b.rate) {
					best = j
					break
				}
				continue
			}
			if !sameRate(a.rate, b.rate) {
				continue
			}
			if best < 0 || math.Abs(b.rate-a.rate) < math.Abs(gb[best].rate-a.rate) {
				best = j
			}
		}
		if best >= 0 {
			used[best] = true
			out = append(out, [2]group{a, gb[best]})
		}
	}
	return out
}

// samples are one endpoint's windows of one run.
type samples struct {
	p50, p99         []float64
	requests, errors int64
}

// endpointSamples collects an endpoint's per-window percentiles over the
// matched groups, taking as many windows from each side of a pair (the
// last ones, the steadiest) so that both runs weigh each rate alike.
func endpointSamples(name string, pairs [][2]group) (sa, sb samples) {
	for _, p := range pairs {
		wa, wb := windowsOf(name, p[0].windows), windowsOf(name, p[1].windows)
		k := min(len(wa), len(wb))
		for _, w := range wa[len(wa)-k:] {
			sa.add(w)
		}
		for _, w := range wb[len(wb)-k:] {
			sb.add(w)
		}
	}
	return sa, sb
}

func (s *samples) add(e evidence.WindowEndpoint) {
	s.p50 = append(s.p50, e.LatencyMS.P50)
	s.p99 = append(s.p99, e.LatencyMS.P99)
	s.requests += e.Requests
	s.errors += e.Errors
}

func (s samples) stats() *EndpointStats {
	return sane(&EndpointStats{Requests: s.requests, ErrorRate: rate(s.errors, s.requests), P50MS: round3(median(s.p50)), P99MS: round3(median(s.p99))})
}

func rate(errors, requests int64) float64 {
	if requests <= 0 {
		return 0
	}
	return float64(errors) / float64(requests)
}

// sane clamps what a damaged run directory could hold to the ranges the
// schema allows: counts and latencies not negative, rates within [0, 1].
func sane(s *EndpointStats) *EndpointStats {
	s.Requests = max(s.Requests, 0)
	s.ErrorRate = math.Min(math.Max(s.ErrorRate, 0), 1)
	s.P50MS, s.P99MS = math.Max(s.P50MS, 0), math.Max(s.P99MS, 0)
	if !finite(s.ErrorRate) {
		s.ErrorRate = 0
	}
	return s
}

// windowsOf is the endpoint's part of each window that completed requests.
func windowsOf(name string, ws []evidence.WindowRecord) []evidence.WindowEndpoint {
	var out []evidence.WindowEndpoint
	for _, w := range ws {
		for _, e := range w.Endpoints {
			if e.Name == name && e.Requests > 0 && finite(e.LatencyMS.P99) && finite(e.LatencyMS.P50) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// summaryStats is an endpoint from the run's own summary (no windows).
func summaryStats(r *Run, name string) *EndpointStats {
	switch {
	case r.Report != nil:
		for _, e := range r.Report.Endpoints {
			if e.Name == name {
				return sane(&EndpointStats{Requests: e.Requests, ErrorRate: e.ErrorRate, P50MS: e.Latency.P50, P99MS: e.Latency.P99})
			}
		}
	case r.Load != nil:
		for _, e := range r.Load.Endpoints {
			if e.Name == name {
				return sane(&EndpointStats{Requests: e.Requests, ErrorRate: rate(e.Errors, e.Requests), P50MS: e.LatencyMS.P50, P99MS: e.LatencyMS.P99})
			}
		}
	}
	return nil
}

// allEndpoints lists endpoint names: A's in order, then B's new ones.
func allEndpoints(a, b *Run) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range []*Run{a, b} {
		names := summaryEndpoints(r)
		for _, w := range r.Timeline {
			for _, e := range w.Endpoints {
				names = append(names, e.Name)
			}
		}
		for _, n := range names {
			if n != "" && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

func compareEndpoints(a, b *Run, pairs [][2]group, tol float64) []EndpointDiff {
	out := []EndpointDiff{}
	for _, name := range allEndpoints(a, b) {
		d := EndpointDiff{Name: name, Change: ChangeUnknown}
		sa, sb := endpointSamples(name, pairs)
		if len(sa.p99) > 0 && len(sb.p99) > 0 {
			d.A, d.B = sa.stats(), sb.stats()
			d.Windows = len(sa.p99)
		} else {
			d.A, d.B = summaryStats(a, name), summaryStats(b, name)
		}
		if d.A == nil || d.B == nil {
			d.Why = "only in one run"
			out = append(out, d)
			continue
		}
		if d.A.P50MS > 0 && d.B.P50MS >= 0 {
			d.P50Ratio = finitePtr(round3(d.B.P50MS / d.A.P50MS))
		}
		if d.A.P99MS > 0 && d.B.P99MS >= 0 {
			d.P99Ratio = finitePtr(round3(d.B.P99MS / d.A.P99MS))
		}
		if len(sa.p99) >= minWindows && len(sb.p99) >= minWindows {
			_, p := MannWhitney(sa.p99, sb.p99)
			if finite(p) {
				d.PValue = ptr(math.Round(p*1e6) / 1e6)
			}
		}
		d.Change, d.Why = endpointChange(d, tol)
		out = append(out, d)
	}
	return out
}

// endpointChange decides an endpoint's change from its error rates, p99
// ratio and p-value.
func endpointChange(d EndpointDiff, tol float64) (string, string) {
	if d.A.Requests >= minErrorRequests && d.B.Requests >= minErrorRequests && d.B.ErrorRate-d.A.ErrorRate > errorRise {
		return ChangeRegressed, fmt.Sprintf("errors rose from %.2f%% to %.2f%%", d.A.ErrorRate*100, d.B.ErrorRate*100)
	}
	if d.PValue == nil {
		return ChangeUnknown, "too few windows to test"
	}
	p := *d.PValue
	if d.P99Ratio == nil {
		return ChangeUnknown, "no p99 in A"
	}
	r := *d.P99Ratio
	switch {
	case p >= alpha:
		return ChangeUnchanged, fmt.Sprintf("p99 ×%.2f, not significant (p=%s)", r, pText(d.PValue))
	case r > 1+tol:
		return ChangeRegressed, fmt.Sprintf("p99 %s → %s ms (×%.2f, p=%s)", ms(d.A.P99MS), ms(d.B.P99MS), r, pText(d.PValue))
	case r < 1-tol:
		return ChangeImproved, fmt.Sprintf("p99 %s → %s ms (×%.2f, p=%s)", ms(d.A.P99MS), ms(d.B.P99MS), r, pText(d.PValue))
	}
	return ChangeUnchanged, fmt.Sprintf("p99 ×%.2f, within ±%.0f%%", r, tol*100)
}

func ms(v float64) string { return fmt.Sprintf("%.4g", v) }

// findingKey identifies a finding across runs: its kind and locus, without
// the measured limit (a pool of 10 that is still exhausted at 50 is the
// same finding).
func findingKey(f report.Finding) string {
	l := f.Locus
	cols := slices.Clone(l.Columns)
	slices.Sort(cols)
	return strings.Join([]string{f.Kind, l.Endpoint, l.Function, l.Query, l.Table, strings.Join(cols, ","), l.Downstream, l.Process, l.Resource}, "\x00")
}

func compareFindings(a, b *Run) FindingDiff {
	d := FindingDiff{Resolved: []FindingRef{}, New: []FindingRef{}, Remaining: []FindingRef{}}
	var fa, fb []report.Finding
	if a.Report != nil {
		fa = a.Report.Findings
	}
	if b.Report != nil {
		fb = b.Report.Findings
	}
	inB := map[string]report.Finding{}
	for _, f := range fb {
		if _, ok := inB[findingKey(f)]; !ok {
			inB[findingKey(f)] = f
		}
	}
	inA := map[string]bool{}
	for _, f := range fa {
		k := findingKey(f)
		if inA[k] {
			continue
		}
		inA[k] = true
		ref := FindingRef{Kind: f.Kind, Locus: f.Locus, Title: f.Title, SeverityA: f.Severity}
		if g, ok := inB[k]; ok {
			ref.SeverityB = g.Severity
			d.Remaining = append(d.Remaining, ref)
		} else {
			d.Resolved = append(d.Resolved, ref)
		}
	}
	seen := map[string]bool{}
	for _, f := range fb {
		k := findingKey(f)
		if inA[k] || seen[k] {
			continue
		}
		seen[k] = true
		d.New = append(d.New, FindingRef{Kind: f.Kind, Locus: f.Locus, Title: f.Title, SeverityB: f.Severity})
	}
	return d
}

// decide sets the verdict, the regression flag, the summary and reasons.
func decide(res *Result) {
	var decisive []string
	for _, w := range res.Warnings {
		if w.Decisive {
			decisive = append(decisive, w.Message)
		}
	}
	var better, worse []string
	capText := capacityText(res.Capacity)
	switch res.Capacity.Change {
	case ChangeImproved:
		better = append(better, "capacity "+capText)
	case ChangeRegressed:
		worse = append(worse, "capacity "+capText)
	}
	for _, e := range res.Endpoints {
		switch e.Change {
		case ChangeImproved:
			better = append(better, e.Name+": "+e.Why)
		case ChangeRegressed:
			worse = append(worse, e.Name+": "+e.Why)
		}
	}
	c := res.Capacity
	if len(decisive) == 0 && len(better) == 0 && len(worse) == 0 && c.Change == ChangeUnknown && c.Ratio != nil &&
		math.Abs(*c.Ratio-1) > res.Tolerance.CapacityPct/100 {
		msg := fmt.Sprintf("capacity %s, but the runs' capacity brackets overlap too much to tell: hunt each run longer or with finer steps", capText)
		res.Warnings = append(res.Warnings, Warning{Code: WarnSamples, Decisive: true, Message: msg})
		decisive = append(decisive, msg)
	}
	switch {
	case len(decisive) > 0:
		res.Verdict = NotComparable
		res.Reasons = decisive
		res.Summary = "not comparable: " + decisive[0]
	case len(worse) > 0:
		res.Verdict = Regressed
		res.Reasons = append(worse, better...)
		res.Summary = "regressed: " + strings.Join(worse, "; ")
	case len(better) > 0:
		res.Verdict = Improved
		res.Reasons = better
		res.Summary = "improved: " + strings.Join(better, "; ")
	default:
		res.Verdict = NoChange
		var parts []string
		if c.Ratio != nil {
			parts = append(parts, "capacity "+capText)
		}
		tested := 0
		for _, e := range res.Endpoints {
			if e.PValue != nil {
				tested++
			}
		}
		if tested > 0 {
			parts = append(parts, fmt.Sprintf("no endpoint's p99 changed beyond ±%g%% with significance", res.Tolerance.P99Pct))
		}
		if len(parts) == 0 {
			parts = append(parts, "nothing measured differs beyond the tolerances")
		}
		res.Summary = "no significant change: " + strings.Join(parts, "; ")
		res.Reasons = parts
	}
	res.Regression = res.Verdict == Regressed
	// A stable order for warnings: decisive first, then by code.
	slices.SortStableFunc(res.Warnings, func(x, y Warning) int {
		if x.Decisive != y.Decisive {
			if x.Decisive {
				return -1
			}
			return 1
		}
		return cmp.Compare(x.Code, y.Code)
	})
}

func capacityText(c CapacityChange) string {
	if c.ARPS == nil || c.BRPS == nil {
		return "not measured in both runs"
	}
	s := fmt.Sprintf("%.4g → %.4g req/s", *c.ARPS, *c.BRPS)
	if c.Ratio != nil {
		s += fmt.Sprintf(" (×%.2f", *c.Ratio)
		switch {
		case c.RatioLow != nil && c.RatioHigh != nil:
			s += fmt.Sprintf(", between ×%.2f and ×%.2f)", *c.RatioLow, *c.RatioHigh)
		case c.RatioLow != nil:
			s += fmt.Sprintf(", at least ×%.2f)", *c.RatioLow)
		case c.RatioHigh != nil:
			s += fmt.Sprintf(", at most ×%.2f)", *c.RatioHigh)
		default:
			s += ")"
		}
	}
	return s
}
