package diagnose

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// Thresholds of db.n-plus-one.
const (
	// nPlusOneMinShare: the repeated statement must take at least this
	// share of request latency at the knee to be worth a finding
	// (CONTRACT.md §4's major/minor line: below it, a few cheap lookups
	// per request are not where the time goes).
	nPlusOneMinShare = MajorImpact
	// nPlusOneBatchCost is what the batched statement is assumed to cost,
	// in single calls: it returns all the rows in one round trip, but
	// more rows than one lookup (stated in the gain's method).
	nPlusOneBatchCost = 2.0
	// pgNPlusOneMinCalls is the fewest calls of one statement per request
	// that pg_stat_statements alone takes for n+1 (without spans it cannot
	// see the calls in one request, so it asks for twice trace.NPlusOneMinCalls).
	pgNPlusOneMinCalls = 2 * trace.NPlusOneMinCalls
	// pgNPlusOneMaxRows: each call of an n+1 loads one item, so its rows
	// per call stay near one (a join or a list returns many).
	pgNPlusOneMaxRows = 2.0
	// confStatementsOnly is the confidence of the pg_stat_statements path
	// before its agreeing signals: it sees calls per request on average,
	// not within one request.
	confStatementsOnly = 0.4
)

type nPlusOne struct{ c *traceCache }

func (nPlusOne) Kind() string { return "db.n-plus-one" }

func (r nPlusOne) Check(in *Input) Result {
	v := r.c.get(in)
	if why := v.why(in); why != "" {
		return r.fromStatements(in, why)
	}
	focus := v.focus
	if !trHasStatements(focus) {
		return r.fromStatements(in, "the traces carry no SQL statement spans")
	}
	if focus.requests < traceMinRequests {
		return Result{RuledOut: fmt.Sprintf("could not check: only %d requests traced at the knee (need %d)", focus.requests, traceMinRequests)}
	}
	type cand struct {
		ep     *trace.EndpointStats
		p      trace.PatternStats
		impact float64
		overMS float64 // connection waits attributed to the calls, summed
	}
	var best *cand
	var topCount float64
	var topName string
	for i := range focus.endpoints {
		ep := &focus.endpoints[i]
		for _, p := range ep.NPlusOne {
			if !focus.isStatement(p.Resource) || trTxControl(p.Resource.Name) {
				continue
			}
			if p.MeanCount > topCount {
				topCount, topName = p.MeanCount, ep.Endpoint
			}
			if p.Share < traceMinRequestShare || p.MeanDistinct >= 0 && p.MeanDistinct < p.MeanCount/2 {
				continue // a rare branch, or mostly identical calls (redundant, not n+1)
			}
			// The calls' own time, and the connections they waited for.
			overMS := focus.overheadMS[ep.Endpoint][p.Resource]
			impact := clamp01((p.MeanTimeMS*float64(p.Requests) + overMS) / focus.totalMS)
			if best == nil || impact > best.impact {
				best = &cand{ep: ep, p: p, impact: impact, overMS: overMS}
			}
		}
	}
	if best == nil {
		if topCount > 0 {
			return Result{RuledOut: fmt.Sprintf("no statement repeats with different parameters in most requests of an endpoint (most: %.1f calls per request of %s, in too few of its requests or with identical parameters)", topCount, topName)}
		}
		return Result{RuledOut: fmt.Sprintf("no request runs one statement %d or more times with different parameters (%d requests traced at the knee)", trace.NPlusOneMinCalls, focus.requests)}
	}
	p, ep := best.p, best.ep
	// Another bottleneck can own most of the time at the knee and mask a
	// lesser problem there; at low load nothing queues, so the calls'
	// share of latency there decides whether it is worth naming (then
	// never as what limits capacity).
	atLow := false
	if best.impact < nPlusOneMinShare {
		low, ok := nPlusOneShareAt(v.base, ep.Endpoint, p.Resource)
		if !ok || low < nPlusOneMinShare {
			return Result{RuledOut: fmt.Sprintf("%s runs %q %.0f times per request, but those calls are %s of request latency at the knee, below %s", ep.Endpoint, p.Resource.Name, p.MeanCount, pct(best.impact), pct(nPlusOneMinShare))}
		}
		best.impact, atLow = low, true
	}
	where := "at the knee"
	if atLow {
		where = "at low load"
	}

	q := p.Resource.Name
	// Calls per request: a receiver that sheds spans under load loses some
	// of them at the knee, so low load, where nothing is shed, counts too.
	count := p.MeanCount
	if v.base != nil {
		if bp := trNPlusOneOf(v.base.endpoint(ep.Endpoint), p.Resource); bp != nil {
			count = max(count, bp.MeanCount)
		}
	}
	overPerReq := best.overMS / float64(p.Requests)
	perCall := (p.MeanTimeMS + overPerReq) / p.MeanCount
	f := report.Finding{
		Kind:   r.Kind(),
		Title:  fmt.Sprintf("%s runs %s %.0f times per request (n+1): %s of its latency %s", ep.Endpoint, trShortQuery(q), count, pct(best.impact), where),
		Impact: round3(best.impact),
		Locus:  report.Locus{Endpoint: ep.Endpoint, Query: q},
		Evidence: []report.Evidence{
			{Source: "otlp", What: "share of request latency " + where + " in the repeated statement", Value: round3(best.impact), Unit: "ratio"},
			{Source: "otlp", What: "calls of the statement per affected request", Value: round1(p.MeanCount), Unit: "calls"},
			{Source: "otlp", What: "mean time per call, with its wait for a connection", Value: round3(perCall), Unit: "ms"},
			{Source: "otlp", What: "time in the calls per affected request", Value: round3(p.MeanTimeMS), Unit: "ms"},
			{Source: "otlp", What: "share of the endpoint's requests that show it", Value: round3(p.Share), Unit: "ratio"},
		},
	}
	if overPerReq > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "time waiting for pooled connections before the calls, per affected request", Value: round3(overPerReq), Unit: "ms"})
	}
	conf := confTraces
	if p.MeanDistinct >= 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "distinct parameter sets per affected request", Value: round1(p.MeanDistinct), Unit: "sets"})
		conf += confSignal // the calls are known to differ: a loop over items, not a repeat
	}
	// pg_stat_statements, an independent count: the statement's calls per
	// request over the step must match what the traces show.
	tracedPerReq := p.MeanCount * float64(p.Requests) / float64(focus.requests)
	if stmts, ok := trStatements(in, v.focusStep); ok {
		if s := stmts[q]; s != nil {
			if load := trLoadOf(in, v.focusStep); load.requests > 0 {
				cpr := float64(s.calls) / float64(load.requests)
				f.Evidence = append(f.Evidence,
					report.Evidence{Source: "postgres", What: "calls of the statement per request served (pg_stat_statements)", Value: round1(cpr), Unit: "calls"},
					report.Evidence{Source: "postgres", What: "mean execution time in the server", Value: round3(s.meanExecMS()), Unit: "ms"})
				if cpr >= tracedPerReq/2 {
					conf += confSignal
				}
			}
		}
	}
	baseShare := 0.0
	if v.base != nil {
		if bp := trNPlusOneOf(v.base.endpoint(ep.Endpoint), p.Resource); bp != nil && bp.MeanCount >= trace.NPlusOneMinCalls {
			baseShare = bp.LatencyShare * bp.Share
			f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "calls per affected request at low load", Value: round1(bp.MeanCount), Unit: "calls"})
			conf += confConsistency // the loop is the code's, not the load's
		}
	}
	f.Confidence = round3(min(conf, confCeiling))

	limiting, ofService := patternLimiting(in, v.focusStep, tracedPerReq*perCall)
	limiting = limiting && !atLow
	if ofService > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "share of the mean service time at the knee in the repeated statement", Value: round3(ofService), Unit: "ratio"})
	}
	speedup := count / nPlusOneBatchCost
	f.Recommendation = fmt.Sprintf("Replace the %.0f calls of %q per request with one statement: collect the keys and run %s once, or JOIN it into the query that produced them.", count, q, trBatched(q))
	if speedup > 1 {
		f.ExpectedGain = criticalPathGain(in, v, limiting, ep.Endpoint, best.impact, baseShare, speedup,
			fmt.Sprintf("the n+1 statement (%.0f calls; one batched statement assumed to cost %.0f)", count, nPlusOneBatchCost))
	}
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}

// fromStatements is the lower-confidence path without statement spans:
// pg_stat_statements' calls per request served, far above one for a
// parameterised single-row statement, in the step at the knee and at low
// load alike.
func (r nPlusOne) fromStatements(in *Input, noTraces string) Result {
	step := in.FocusStep()
	if step < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	stmts, ok := trStatements(in, step)
	load := trLoadOf(in, step)
	if !ok || load.requests == 0 {
		return Result{RuledOut: noTraces + "; and no pg_stat_statements samples to count calls per request (give --postgres with pg_stat_statements installed)"}
	}
	var best *trStatement
	var bestCPR float64
	for _, s := range stmts {
		if !strings.Contains(s.query, "$") || trTxControl(s.query) {
			continue
		}
		cpr := float64(s.calls) / float64(load.requests)
		if best == nil || cpr > bestCPR || cpr == bestCPR && s.query < best.query {
			best, bestCPR = s, cpr
		}
	}
	prefix := noTraces + "; from pg_stat_statements: "
	if best == nil {
		return Result{RuledOut: prefix + "no parameterised statement ran during the step at the knee"}
	}
	rowsPerCall := float64(best.rows) / float64(best.calls)
	switch {
	case bestCPR < pgNPlusOneMinCalls:
		return Result{RuledOut: fmt.Sprintf("%sthe most repeated statement runs %.1f times per request, below %d", prefix, bestCPR, pgNPlusOneMinCalls)}
	case rowsPerCall > pgNPlusOneMaxRows:
		return Result{RuledOut: fmt.Sprintf("%s%q runs %.1f times per request but returns %.1f rows per call (not a per-item lookup)", prefix, best.query, bestCPR, rowsPerCall)}
	}
	conf := confStatementsOnly
	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Query: best.query},
	}
	// Without client-side timing only the server's execution time is
	// known: a lower bound of the calls' share of latency (round trips
	// come on top).
	share := 0.0
	if load.meanServiceMS > 0 {
		share = clamp01(bestCPR * best.meanExecMS() / load.meanServiceMS)
	}
	f.Evidence = []report.Evidence{
		{Source: "postgres", What: "share of the mean service time at the knee in the statement's execution (a lower bound: round trips not included)", Value: round3(share), Unit: "ratio"},
		{Source: "postgres", What: "calls of the statement per request served (pg_stat_statements)", Value: round1(bestCPR), Unit: "calls"},
		{Source: "postgres", What: "rows per call", Value: round3(rowsPerCall), Unit: "rows"},
		{Source: "postgres", What: "mean execution time in the server", Value: round3(best.meanExecMS()), Unit: "ms"},
	}
	conf += confConsistency // single-row calls: a per-item lookup
	if b := in.BaselineStep(); b >= 0 && b != step {
		bs, ok := trStatements(in, b)
		bl := trLoadOf(in, b)
		if s := bs[best.query]; ok && s != nil && bl.requests > 0 {
			bcpr := float64(s.calls) / float64(bl.requests)
			f.Evidence = append(f.Evidence, report.Evidence{Source: "postgres", What: "calls per request at low load", Value: round1(bcpr), Unit: "calls"})
			if bcpr >= pgNPlusOneMinCalls {
				conf += confConsistency // per request at any load: the code's loop
			}
		}
	}
	if names := trLoadEndpoints(in, step); len(names) == 1 {
		f.Locus.Endpoint = names[0]
		conf += confConsistency // one endpoint in the load: the calls are its own
	}
	where := f.Locus.Endpoint + " runs"
	if f.Locus.Endpoint == "" {
		where = "the requests run"
	}
	f.Title = fmt.Sprintf("%s %s %.0f times per request (n+1, from pg_stat_statements)", where, trShortQuery(best.query), bestCPR)
	f.Impact = round3(share)
	f.Confidence = round3(conf)
	f.Recommendation = fmt.Sprintf("Replace the per-item calls of %q with one statement: collect the keys and run %s once per request, or JOIN it into the query that produced them. Export the target's traces (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318) to see which endpoint issues them and what they cost per request.", best.query, trBatched(best.query))
	return Result{Findings: []Candidate{{Finding: f}}}
}

// trHasStatements reports whether the traces of a step carry SQL statements.
func trHasStatements(st *stepTraces) bool { return st != nil && len(st.statements) > 0 }

// trNPlusOneOf returns an endpoint's n+1 pattern of a resource, or nil.
// nPlusOneShareAt is the share of all traced request time in a step that
// the repeated statement r of endpoint took (with its connection waits).
func nPlusOneShareAt(st *stepTraces, endpoint string, r trace.Resource) (float64, bool) {
	if st == nil || st.totalMS <= 0 || st.requests < traceMinRequests {
		return 0, false
	}
	bp := trNPlusOneOf(st.endpoint(endpoint), r)
	if bp == nil {
		return 0, false
	}
	return clamp01((bp.MeanTimeMS*float64(bp.Requests) + st.overheadMS[endpoint][r]) / st.totalMS), true
}

func trNPlusOneOf(ep *trace.EndpointStats, r trace.Resource) *trace.PatternStats {
	if ep == nil {
		return nil
	}
	for i := range ep.NPlusOne {
		if ep.NPlusOne[i].Resource == r {
			return &ep.NPlusOne[i]
		}
	}
	return nil
}

// trLoadEndpoints lists the endpoints the load generator served in a step.
func trLoadEndpoints(in *Input, step int) []string {
	seen := map[string]bool{}
	for _, w := range in.WindowsIn(step) {
		for _, e := range w.Endpoints {
			seen[e.Name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// trKeyEquality finds "col = $n" comparisons.
var trKeyEquality = regexp.MustCompile(`(?i)([A-Za-z_][A-Za-z0-9_."]*)\s*=\s*\$(\d+)`)

// trBatched rewrites a one-key lookup "... WHERE id = $1" as the batched
// "... WHERE id = ANY($1)" (one array parameter); other statements get a
// description.
func trBatched(q string) string {
	m := trKeyEquality.FindAllStringSubmatchIndex(q, -1)
	if len(m) != 1 {
		return "one statement for all the keys (WHERE key = ANY($1) with an array of them)"
	}
	loc := m[0]
	col := q[loc[2]:loc[3]]
	n := q[loc[4]:loc[5]]
	return "`" + q[:loc[0]] + col + " = ANY($" + n + ")" + q[loc[1]:] + "`"
}

// trShortQuery abbreviates a statement for a title.
func trShortQuery(q string) string {
	const maxTitleQuery = 60
	if len(q) <= maxTitleQuery {
		return fmt.Sprintf("%q", q)
	}
	cut := q[:maxTitleQuery]
	if i := strings.LastIndexByte(cut, ' '); i > maxTitleQuery/2 {
		cut = cut[:i]
	}
	return fmt.Sprintf("%q", cut+" ...")
}
