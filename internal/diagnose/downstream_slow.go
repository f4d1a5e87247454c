package diagnose

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// Thresholds of downstream.slow.
const (
	// slowMinShare: the dependency's own latency (what is left of its
	// critical-path time once repeated and serial calls are taken out)
	// must be at least half of request latency at the knee: it dominates.
	slowMinShare = 0.5
	// slowSpeedup is the improvement the gain estimate assumes when the
	// answers cannot be cached: halving the dependency's latency (a faster
	// query or a closer replica on its side), stated in the method.
	slowSpeedup = 2.0
	// slowMinHitRatio: when at least this share of the calls repeat an
	// earlier call's URL, a cache is the fix to recommend.
	slowMinHitRatio = 0.5
	// slowMaxHitRatio caps the hit ratio the gain assumes: expiry and
	// invalidation keep a real cache below the ideal one.
	slowMaxHitRatio = 0.9
	// slowClientAgreement: the load generator's median latency of the
	// endpoint must be at least this share of the dependency's time per
	// request for the clients to confirm the wait (medians and means
	// differ, hence below 1).
	slowClientAgreement = 0.8
	// slowMinObjectiveShare: the wait per request must be at least this
	// share of the p99 objective. A dependency can dominate a fast request
	// (a 3 ms call in a 4 ms request) without threatening the objective;
	// one twentieth of it is where it starts to matter.
	slowMinObjectiveShare = 0.05
	// slowMinInsideShare: where the downstream exports its own server
	// spans, they must cover at least half of its calls' time at the knee
	// for the wait to be the dependency's own work; below, the calls wait
	// on the way (connection set-up, the caller's CPU, the queue in front
	// of the downstream's handler). Checked only when the dependency did not
	// dominate at low load already (then it is slow whatever the knee
	// adds).
	slowMinInsideShare = 0.5
)

type downstreamSlow struct{ c *traceCache }

func (downstreamSlow) Kind() string { return "downstream.slow" }

// trSlowCand is one downstream's time on the critical path of the traced
// requests at the knee.
type trSlowCand struct {
	res        trace.Resource
	endpoint   string // the endpoint where it spends the most
	epStats    *trace.EndpointStats
	epRes      trace.ResourceStats
	criticalMS float64 // critical-path time, summed over requests
	avoidMS    float64 // of which serial and redundant calls
	ownMS      float64 // criticalMS - avoidMS
	epOwnMS    float64 // of which in the named endpoint's requests
}

func (r downstreamSlow) Check(in *Input) Result {
	v := r.c.get(in)
	if why := v.why(in); why != "" {
		return Result{RuledOut: why}
	}
	focus := v.focus
	if focus.requests < traceMinRequests {
		return Result{RuledOut: fmt.Sprintf("could not check: only %d requests traced at the knee (need %d)", focus.requests, traceMinRequests)}
	}
	cands := trSlowCandidates(focus)
	if len(cands) == 0 {
		return Result{RuledOut: fmt.Sprintf("no request calls a downstream service (%d requests traced at the knee)", focus.requests)}
	}
	c := cands[0]
	share := clamp01(c.ownMS / focus.totalMS)
	critShare := clamp01(c.criticalMS / focus.totalMS)
	if share < slowMinShare {
		why := fmt.Sprintf("the slowest downstream, %s, takes %s of request latency at the knee", c.res.Name, pct(critShare))
		if c.avoidMS > 0 {
			why += fmt.Sprintf(", %s once its serial and repeated calls are taken out", pct(share))
		}
		return Result{RuledOut: why + fmt.Sprintf(", below the %s that marks it dominant", pct(slowMinShare))}
	}
	perReqMS := c.ownMS / float64(focus.requests)
	name := downstreamLocus(c.res)
	epOwnMS := c.epOwnMS / float64(max(c.epStats.Requests, 1))
	if floor := slowMinObjectiveShare * in.SLO.P99MS; epOwnMS < floor {
		return Result{RuledOut: fmt.Sprintf("%s takes %s of request latency at the knee, but only %s per request of %s, under %s of the %s p99 objective: it cannot move the objective", name, pct(share), trMS(epOwnMS), c.endpoint, pct(slowMinObjectiveShare), trMS(in.SLO.P99MS))}
	}
	f := report.Finding{
		Kind:   r.Kind(),
		Title:  fmt.Sprintf("%s waits on %s: %s of request latency at the knee (%s per call)", c.endpoint, name, pct(share), trMS(c.epRes.MeanCallMS)),
		Impact: round3(share),
		Locus:  report.Locus{Endpoint: c.endpoint, Downstream: name},
		Evidence: []report.Evidence{
			{Source: "otlp", What: "share of request latency at the knee waiting on the downstream (its serial and repeated calls excluded)", Value: round3(share), Unit: "ratio"},
			{Source: "otlp", What: "mean latency of one call at the knee", Value: round3(c.epRes.MeanCallMS), Unit: "ms"},
			{Source: "otlp", What: "calls per request", Value: round3(c.epRes.CallsPerRequest), Unit: "calls"},
			{Source: "otlp", What: "critical-path time per request", Value: round3(c.epRes.MeanCriticalMS), Unit: "ms"},
		},
	}
	conf := confTraces
	if c.epRes.CallsPerRequest >= traceCommonShare {
		conf += confConsistency // on the endpoint's common path
	}
	step := v.focusStep
	if p50, _, ok := trLoadOf(in, step).latencyFor(in, step, c.endpoint); ok {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "median latency of the endpoint at the knee (client side)", Value: round3(p50), Unit: "ms"})
		if p50 >= slowClientAgreement*c.epRes.MeanCriticalMS {
			conf += confSignal // the clients waited that long too
		}
	}
	slowAtLowLoad := false
	if v.base != nil {
		if bep := v.base.endpoint(c.endpoint); bep != nil && bep.MeanDurationMS > 0 {
			for _, br := range bep.Resources {
				if br.Resource == c.res {
					own := clamp01(v.base.split(c.endpoint, c.res).ownMS / bep.MeanDurationMS)
					f.Evidence = append(f.Evidence,
						report.Evidence{Source: "otlp", What: "mean latency of one call at low load", Value: round3(br.MeanCallMS), Unit: "ms"},
						report.Evidence{Source: "otlp", What: "share of request latency waiting on the downstream at low load (its serial and repeated calls excluded)", Value: round3(own), Unit: "ratio"})
					if own >= slowMinShare {
						slowAtLowLoad = true
						conf += confConsistency // slow at any load: the dependency's own latency
					}
				}
			}
		}
	}
	if inside, ok := focus.inside[c.endpoint][c.res].share(); ok {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "share of the calls' time at the knee inside the downstream (its own server spans)", Value: round3(inside), Unit: "ratio"})
		if inside < slowMinInsideShare && !slowAtLowLoad {
			conf -= confSignal // the calls wait on the way to it, not on it
		}
	}
	f.Confidence = round3(min(conf, confCeiling))

	limiting, ofService := patternLimiting(in, step, perReqMS)
	if ofService > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "share of the mean service time at the knee waiting on the downstream", Value: round3(ofService), Unit: "ratio"})
	}
	// Serial calls to it share its time: the explanation of more of the
	// latency growth comes first (the other yields to it in the ranking)
	// and takes the limit when the calls together broke the objective.
	var yields string
	if j := trJudgeSerialSlow(in, v, c.endpoint, c.res); j.serialFires {
		f.Evidence = append(f.Evidence, j.evidence()...)
		if j.serialFirst {
			yields = "downstream.serial"
		} else {
			limiting = limiting || j.limiting
		}
	}
	speedup, what := slowSpeedup, fmt.Sprintf("the wait on %s (halved)", name)
	rec := fmt.Sprintf("%s spends %s per request waiting on %s (%s per call). Ask its owners why it takes that long, give each call a latency budget (a timeout with a fallback), and take it off the critical path where the response does not need it.", c.endpoint, trMS(c.epRes.MeanCriticalMS), name, trMS(c.epRes.MeanCallMS))
	if k, ok := focus.keys[c.res]; ok {
		if h, known := k.idealHitRatio(); known {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "share of calls repeating an earlier call's URL at the knee", Value: round3(h), Unit: "ratio"})
			if h >= slowMinHitRatio {
				hit := math.Min(h, slowMaxHitRatio)
				speedup = 1 / (1 - hit)
				what = fmt.Sprintf("the wait on %s (a cache answering %.0f%% of the calls)", name, hit*100)
				rec = fmt.Sprintf("%s spends %s per request waiting on %s (%s per call), and %d distinct URLs make up %d calls: cache its answers for as long as they stay valid, with request coalescing (one call in flight per key), and give each call a latency budget (a timeout with a fallback).", c.endpoint, trMS(c.epRes.MeanCriticalMS), name, trMS(c.epRes.MeanCallMS), k.distinct, k.calls)
			}
		}
	}
	f.Recommendation = rec
	f.ExpectedGain = criticalPathGain(in, v, limiting, c.endpoint, share, 0, speedup, what)
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting, Yields: yields}}}
}

// trSlowCandidates sums each downstream's critical-path time over the traced
// requests, with the part its serial and redundant calls explain, largest
// own time first.
func trSlowCandidates(st *stepTraces) []trSlowCand {
	byRes := map[trace.Resource]*trSlowCand{}
	best := map[trace.Resource]float64{}
	for i := range st.endpoints {
		ep := &st.endpoints[i]
		n := float64(ep.Requests)
		for _, rs := range ep.Resources {
			if rs.Resource.Kind != trace.KindHTTP && rs.Resource.Kind != trace.KindCall {
				continue
			}
			sp := st.split(ep.Endpoint, rs.Resource)
			crit := sp.criticalMS * n
			avoid := (sp.serialMS + sp.redundantMS) * n
			c := byRes[rs.Resource]
			if c == nil {
				c = &trSlowCand{res: rs.Resource}
				byRes[rs.Resource] = c
			}
			c.criticalMS += crit
			c.avoidMS += avoid
			c.ownMS += crit - avoid
			if own := crit - avoid; own > best[rs.Resource] || c.epStats == nil {
				best[rs.Resource] = own
				c.endpoint, c.epStats, c.epRes, c.epOwnMS = ep.Endpoint, ep, rs, own
			}
		}
	}
	out := make([]trSlowCand, 0, len(byRes))
	for _, c := range byRes {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b trSlowCand) int {
		return cmp.Or(-cmp.Compare(a.ownMS, b.ownMS), cmp.Compare(a.res.Name, b.res.Name))
	})
	return out
}

// downstreamLocus is a resource as CONTRACT.md §4's locus.downstream:
// "METHOD scheme://host:port/route" for HTTP (the resource's name), the
// call's span name and peer otherwise.
func downstreamLocus(r trace.Resource) string { return r.Name }
