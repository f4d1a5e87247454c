package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// redundantMinShare: the repeated identical calls must waste at least this
// share of request latency at the knee. Lower than the other latency
// kinds' line: the fix is mechanical (reuse the first answer) and never
// costs anything, so a tenth of the latency is worth naming.
const redundantMinShare = 0.1

type downstreamRedundant struct{ c *traceCache }

func (downstreamRedundant) Kind() string { return "downstream.redundant" }

func (r downstreamRedundant) Check(in *Input) Result {
	v := r.c.get(in)
	if why := v.why(in); why != "" {
		return Result{RuledOut: why}
	}
	focus := v.focus
	if focus.requests < traceMinRequests {
		return Result{RuledOut: fmt.Sprintf("could not check: only %d requests traced at the knee (need %d)", focus.requests, traceMinRequests)}
	}
	var best *trace.PatternStats
	var bestEP *trace.EndpointStats
	bestImpact, rarest := 0.0, ""
	for i := range focus.endpoints {
		ep := &focus.endpoints[i]
		for j := range ep.Redundant {
			p := &ep.Redundant[j]
			if !redundantCandidate(focus, p.Resource) {
				continue
			}
			if p.Share < traceMinRequestShare {
				rarest = fmt.Sprintf("identical calls of %s repeat in only %s of %s's requests (need %s)", p.Resource.Name, pct(p.Share), ep.Endpoint, pct(traceMinRequestShare))
				continue
			}
			impact := clamp01(p.MeanWastedMS * float64(p.Requests) / focus.totalMS)
			if best == nil || impact > bestImpact {
				best, bestEP, bestImpact = p, ep, impact
			}
		}
	}
	if best == nil {
		if rarest != "" {
			return Result{RuledOut: rarest}
		}
		return Result{RuledOut: fmt.Sprintf("no request repeats an identical call (same statement and parameters, or same method and URL) among %d traced at the knee", focus.requests)}
	}
	if bestImpact < redundantMinShare {
		return Result{RuledOut: fmt.Sprintf("%s repeats identical calls of %s %.1f times per request, wasting %s, %s of request latency at the knee, below %s", bestEP.Endpoint, best.Resource.Name, best.MeanExtra, trMS(best.MeanWastedMS), pct(bestImpact), pct(redundantMinShare))}
	}
	ep, p := bestEP, best
	f := report.Finding{
		Kind:   r.Kind(),
		Impact: round3(bestImpact),
		Locus:  report.Locus{Endpoint: ep.Endpoint},
		Evidence: []report.Evidence{
			{Source: "otlp", What: "share of request latency at the knee spent repeating identical calls", Value: round3(bestImpact), Unit: "ratio"},
			{Source: "otlp", What: "identical calls per affected request", Value: round1(p.MeanCount), Unit: "calls"},
			{Source: "otlp", What: "repeats of an earlier identical call per affected request", Value: round1(p.MeanExtra), Unit: "calls"},
			{Source: "otlp", What: "time in the repeats per affected request", Value: round3(p.MeanWastedMS), Unit: "ms"},
			{Source: "otlp", What: "share of the endpoint's requests that show it", Value: round3(p.Share), Unit: "ratio"},
		},
	}
	what := downstreamLocus(p.Resource)
	if p.Resource.Kind == trace.KindDB {
		f.Locus.Query = p.Resource.Name
		what = trShortQuery(p.Resource.Name)
	} else {
		f.Locus.Downstream = what
	}
	times := p.MeanCount
	if p.MeanDistinct > 0 {
		times = p.MeanCount / p.MeanDistinct
	}
	f.Title = fmt.Sprintf("%s makes the identical call to %s %.0f times per request: the repeats are %s of its latency at the knee", ep.Endpoint, what, times, pct(bestImpact))
	conf := confTraces
	if p.Share >= traceCommonShare {
		conf += confConsistency
	}
	if p.Resource.Kind == trace.KindDB {
		// pg_stat_statements counts the repeats too: calls per request at
		// least the traced identical calls per request.
		if stmts, ok := trStatements(in, v.focusStep); ok {
			if s := stmts[p.Resource.Name]; s != nil {
				if load := trLoadOf(in, v.focusStep); load.requests > 0 {
					cpr := float64(s.calls) / float64(load.requests)
					f.Evidence = append(f.Evidence, report.Evidence{Source: "postgres", What: "calls of the statement per request served (pg_stat_statements)", Value: round1(cpr), Unit: "calls"})
					if cpr >= p.MeanCount*float64(p.Requests)/float64(focus.requests)/2 {
						conf += confSignal
					}
				}
			}
		}
	}
	baseShare := 0.0
	if v.base != nil {
		if bep := v.base.endpoint(ep.Endpoint); bep != nil {
			for _, bp := range bep.Redundant {
				if bp.Resource == p.Resource && bp.Share >= traceMinRequestShare {
					f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "repeats per affected request at low load", Value: round1(bp.MeanExtra), Unit: "calls"})
					conf += confConsistency
					baseShare = bp.LatencyShare * bp.Share
				}
			}
		}
	}
	f.Confidence = round3(min(conf, confCeiling))
	limiting, ofService := patternLimiting(in, v.focusStep, p.MeanWastedMS*float64(p.Requests)/float64(focus.requests))
	if ofService > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "share of the mean service time at the knee spent repeating identical calls", Value: round3(ofService), Unit: "ratio"})
	}
	f.Recommendation = fmt.Sprintf("Make the call to %s once per request and pass its answer to the code that needs it (or memoise it in the request's context); each %s request repeats it %.1f times.", what, ep.Endpoint, p.MeanExtra)
	f.ExpectedGain = criticalPathGain(in, v, limiting, ep.Endpoint, bestImpact, baseShare, math.Inf(1), "the repeated identical calls")
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}

// redundantCandidate reports whether repeating a resource identically is
// waste: downstream reads (GET, HEAD, other calls whose parameters the
// spans identify), and statements that only read (repeating BEGIN,
// or an identical write, is not the same call twice by mistake).
func redundantCandidate(st *stepTraces, r trace.Resource) bool {
	switch r.Kind {
	case trace.KindHTTP:
		// Only safe methods: the URL identifies a GET, not a POST (its
		// body is not in the span).
		return strings.HasPrefix(r.Name, "GET ") || strings.HasPrefix(r.Name, "HEAD ")
	case trace.KindCall:
		return true
	case trace.KindDB:
		return st.isStatement(r) && trReadStatement(r.Name)
	}
	return false
}
