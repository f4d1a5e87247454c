package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// Thresholds of cache.opportunity.
const (
	// cacheMinShare: the identical read must take at least this share of
	// request latency at the knee to be "expensive" (CONTRACT.md §4's
	// major/minor line; a cheap identical read is not worth a cache's
	// staleness).
	cacheMinShare = MajorImpact
	// cacheRowsTolerance: rows per call count as constant when they vary
	// by at most this share across the step's windows (pg_stat_statements
	// deltas are exact; the tolerance only absorbs a write that lands
	// mid-step).
	cacheRowsTolerance = 0.01
	// cacheMaxHitRatio caps the hit ratio the gain assumes: expiry keeps
	// a real cache below the ideal one (stated in the method).
	cacheMaxHitRatio = 0.9
	// pgCacheMinCallsPerRequest: without spans, a parameterless statement
	// must run in at least half of the requests ("most requests").
	pgCacheMinCallsPerRequest = traceMinRequestShare
)

type cacheOpportunity struct{ c *traceCache }

func (cacheOpportunity) Kind() string { return "cache.opportunity" }

func (r cacheOpportunity) Check(in *Input) Result {
	v := r.c.get(in)
	if why := v.why(in); why != "" {
		return r.fromStatements(in, why)
	}
	focus := v.focus
	if focus.requests < traceMinRequests {
		return Result{RuledOut: fmt.Sprintf("could not check: only %d requests traced at the knee (need %d)", focus.requests, traceMinRequests)}
	}
	var best *trRead
	bestImpact, bestOverMS := 0.0, 0.0
	commonest := ""
	for i := range focus.reads {
		rd := &focus.reads[i]
		if rd.share < traceMinRequestShare {
			if commonest == "" {
				commonest = fmt.Sprintf("no read repeats with identical parameters in most requests of an endpoint (most: %s in %s of %s's requests; %d distinct parameter sets in %d calls)", rd.resource.Name, pct(rd.share), rd.endpoint, rd.distinct, rd.calls)
			}
			continue
		}
		// The identical calls' own time, and the connections they waited
		// for (an expensive read fills the pool).
		overMS := 0.0
		if rd.calls > 0 {
			overMS = focus.overheadMS[rd.endpoint][rd.resource] * float64(rd.identCalls) / float64(rd.calls)
		}
		impact := clamp01((rd.timeMS + overMS) / focus.totalMS)
		if best == nil || impact > bestImpact {
			best, bestImpact, bestOverMS = rd, impact, overMS
		}
	}
	if best == nil && !trHasStatements(focus) {
		// Reads the database does may still be visible to pg_stat_statements.
		res := r.fromStatements(in, "the traces carry no SQL statement spans")
		if len(res.Findings) > 0 || commonest == "" {
			return res
		}
		return Result{RuledOut: commonest + "; " + res.RuledOut}
	}
	if best == nil {
		if commonest != "" {
			return Result{RuledOut: commonest}
		}
		return Result{RuledOut: fmt.Sprintf("no read with known parameters among %d requests traced at the knee (statement spans need their parameter values or literals; HTTP calls their URL)", focus.requests)}
	}
	if bestImpact < cacheMinShare {
		return Result{RuledOut: fmt.Sprintf("%s repeats the identical read %s in %s of its requests, but it takes %s of request latency at the knee (%s per call), below %s", best.endpoint, best.resource.Name, pct(best.share), pct(bestImpact), trMS(best.meanCallMS), pct(cacheMinShare))}
	}
	rd := best
	f := report.Finding{
		Kind:   r.Kind(),
		Impact: round3(bestImpact),
		Locus:  report.Locus{Endpoint: rd.endpoint},
		Evidence: []report.Evidence{
			{Source: "otlp", What: "share of request latency at the knee in the identical read", Value: round3(bestImpact), Unit: "ratio"},
			{Source: "otlp", What: "share of the endpoint's requests making the identical read", Value: round3(rd.share), Unit: "ratio"},
			{Source: "otlp", What: "mean time of one call", Value: round3(rd.meanCallMS), Unit: "ms"},
			{Source: "otlp", What: "distinct parameter sets among the read's calls at the knee", Value: float64(rd.distinct), Unit: "sets"},
			{Source: "otlp", What: "calls of the read at the knee", Value: float64(rd.calls), Unit: "calls"},
		},
	}
	if bestOverMS > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "time waiting for pooled connections before the identical calls, per request making them", Value: round3(bestOverMS / float64(rd.requests)), Unit: "ms"})
	}
	what := rd.resource.Name
	if rd.resource.Kind == trace.KindDB {
		f.Locus.Query = rd.resource.Name
		what = trShortQuery(rd.resource.Name)
	} else {
		f.Locus.Downstream = downstreamLocus(rd.resource)
	}
	conf := confTraces
	if rd.share >= traceCommonShare {
		conf += confConsistency
	}
	if rd.resource.Kind == trace.KindDB {
		// Identical results: pg_stat_statements' rows per call must not
		// move across the step's windows.
		if stmts, ok := trStatements(in, v.focusStep); ok {
			if s := stmts[rd.resource.Name]; s != nil {
				f.Evidence = append(f.Evidence,
					report.Evidence{Source: "postgres", What: "rows per call, lowest window", Value: round3(s.minRowsPerCall), Unit: "rows"},
					report.Evidence{Source: "postgres", What: "rows per call, highest window", Value: round3(s.maxRowsPerCall), Unit: "rows"},
					report.Evidence{Source: "postgres", What: "mean execution time in the server", Value: round3(s.meanExecMS()), Unit: "ms"})
				if !trRowsConstant(s) {
					return Result{RuledOut: fmt.Sprintf("%s repeats %s with identical parameters, but its rows per call vary from %.1f to %.1f across the step: the results change, so a cache would serve stale ones", rd.endpoint, what, s.minRowsPerCall, s.maxRowsPerCall)}
				}
				conf += confSignal
			}
		}
	}
	baseShare := 0.0
	if v.base != nil {
		for _, br := range v.base.reads {
			if br.endpoint == rd.endpoint && br.resource == rd.resource && br.share >= traceMinRequestShare {
				baseShare = br.timeShare
				f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "share of requests making the identical read at low load", Value: round3(br.share), Unit: "ratio"})
				conf += confConsistency
			}
		}
	}
	f.Confidence = round3(min(conf, confCeiling))
	perReqMS := (rd.timeMS + bestOverMS) / float64(focus.requests)
	limiting, ofService := patternLimiting(in, v.focusStep, perReqMS)
	if ofService > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "share of the mean service time at the knee in the identical read", Value: round3(ofService), Unit: "ratio"})
	}
	f.Title = fmt.Sprintf("%s makes the identical read %s in %s of its requests: %s of latency at the knee could come from a cache", rd.endpoint, what, pct(rd.share), pct(bestImpact))
	f.Recommendation = fmt.Sprintf("Cache the result of %s for as long as it may be stale (seconds are usually enough), with request coalescing so that one call refreshes it while the others wait; or keep a precomputed copy updated when the underlying data changes.", what)
	hit := cacheMaxHitRatio // every identical call after the first could be a hit
	f.ExpectedGain = criticalPathGain(in, v, limiting, rd.endpoint, bestImpact, baseShare, 1/(1-hit),
		fmt.Sprintf("the identical read (a cache answering %.0f%% of it)", hit*100))
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}

// trRowsConstant reports whether a statement returned as many rows per call
// in every window of the step.
func trRowsConstant(s *trStatement) bool {
	return s.maxRowsPerCall-s.minRowsPerCall <= cacheRowsTolerance*math.Max(1, s.maxRowsPerCall)
}

// fromStatements is the lower-confidence path without statement spans: a
// statement without parameters returns the same rows to every call; when
// it runs in most requests, returns as many rows in every window and its
// execution is a large share of the service time, it is a cache
// opportunity.
func (r cacheOpportunity) fromStatements(in *Input, noTraces string) Result {
	step := in.FocusStep()
	if step < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	stmts, ok := trStatements(in, step)
	load := trLoadOf(in, step)
	if !ok || load.requests == 0 {
		return Result{RuledOut: noTraces + "; and no pg_stat_statements samples to find repeated parameterless reads (give --postgres with pg_stat_statements installed)"}
	}
	prefix := noTraces + "; from pg_stat_statements: "
	var best *trStatement
	bestShare := 0.0
	for _, s := range stmts {
		if strings.Contains(s.query, "$") || !trReadStatement(s.query) {
			continue
		}
		cpr := float64(s.calls) / float64(load.requests)
		if cpr < pgCacheMinCallsPerRequest || !trRowsConstant(s) || load.meanServiceMS <= 0 {
			continue
		}
		share := clamp01(cpr * s.meanExecMS() / load.meanServiceMS)
		if best == nil || share > bestShare {
			best, bestShare = s, share
		}
	}
	if best == nil {
		return Result{RuledOut: prefix + "no parameterless read runs in most requests with constant rows per call"}
	}
	if bestShare < cacheMinShare {
		return Result{RuledOut: fmt.Sprintf("%sthe parameterless read %q runs in most requests but its execution is %s of the mean service time at the knee, below %s", prefix, best.query, pct(bestShare), pct(cacheMinShare))}
	}
	cpr := float64(best.calls) / float64(load.requests)
	f := report.Finding{
		Kind:   r.Kind(),
		Impact: round3(bestShare),
		Locus:  report.Locus{Query: best.query},
		Evidence: []report.Evidence{
			{Source: "postgres", What: "share of the mean service time at the knee in the statement's execution", Value: round3(bestShare), Unit: "ratio"},
			{Source: "postgres", What: "calls per request served (pg_stat_statements)", Value: round3(cpr), Unit: "calls"},
			{Source: "postgres", What: "rows per call (constant across the step)", Value: round3(best.maxRowsPerCall), Unit: "rows"},
			{Source: "postgres", What: "mean execution time in the server", Value: round3(best.meanExecMS()), Unit: "ms"},
		},
	}
	conf := confStatementsOnly + confConsistency // no parameters and constant rows: identical results
	if b := in.BaselineStep(); b >= 0 && b != step {
		bs, ok := trStatements(in, b)
		bl := trLoadOf(in, b)
		if s := bs[best.query]; ok && s != nil && bl.requests > 0 && float64(s.calls)/float64(bl.requests) >= pgCacheMinCallsPerRequest {
			conf += confConsistency
		}
	}
	if names := trLoadEndpoints(in, step); len(names) == 1 {
		f.Locus.Endpoint = names[0]
	}
	f.Confidence = round3(conf)
	f.Title = fmt.Sprintf("The parameterless read %s runs in %.0f%% of requests and returns the same rows each time (from pg_stat_statements)", trShortQuery(best.query), math.Min(cpr, 1)*100)
	f.Recommendation = fmt.Sprintf("Cache the result of %q for as long as it may be stale, with request coalescing (one query in flight per expiry), or keep a precomputed copy updated when the underlying data changes. Export the target's traces (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318) to see which endpoint runs it.", best.query)
	return Result{Findings: []Candidate{{Finding: f}}}
}
