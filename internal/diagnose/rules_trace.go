package diagnose

import (
	"fmt"
	"math"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// traceRules read OpenTelemetry spans (and, where they agree or stand in,
// pg_stat_statements). They share one analysis of the spans.
func traceRules() []Rule {
	c := &traceCache{}
	return []Rule{
		nPlusOne{c},
		downstreamSlow{c},
		downstreamSerial{c},
		downstreamRedundant{c},
		cacheOpportunity{c},
	}
}

// Thresholds shared by the trace rules.
const (
	// traceMinRequests is the fewest traced requests at the knee for a
	// pattern's shares to mean anything (below it one slow request moves
	// them by several percent).
	traceMinRequests = 10
	// traceMinRequestShare: a pattern must show in at least half of an
	// endpoint's requests ("most requests"); rarer ones are a branch of
	// the code, not the endpoint's behaviour.
	traceMinRequestShare = 0.5
	// traceLimitingShare: a latency pattern is what broke the objective
	// when its time per request is at least half of the mean service time
	// the load generator measured at the knee. Below that, most of the
	// latency that broke the objective was spent elsewhere (queueing
	// outside the traced code: CPU, a concurrency limit, the network).
	traceLimitingShare = 0.5
	// traceCommonShare: a pattern in at least 80% of an endpoint's
	// requests is its normal path (adds confidence).
	traceCommonShare = 0.8
)

// Confidence scores of the trace rules. Each rule starts from what the
// traces alone show and adds one step per independent signal that agrees;
// MinConfidence (0.6) therefore needs the traces plus one more signal, or
// traces that show the pattern on the endpoint's common path.
const (
	confTraces      = 0.5 // the pattern in the traces at the knee
	confSignal      = 0.2 // a second, independent source agrees (pg_stat_statements, parameters)
	confConsistency = 0.1 // the pattern also holds at low load / on the common path
	confCeiling     = 0.95
)

// patternLimiting decides whether a latency pattern taking perRequestMS of
// each request at the knee is what broke the objective: the step at the
// knee missed the latency objective (not only the error one) and the
// pattern is most of the mean service time the load generator measured
// there. It also returns that share.
func patternLimiting(in *Input, step int, perRequestMS float64) (bool, float64) {
	load := trLoadOf(in, step)
	if load.meanServiceMS <= 0 || step < 0 || step >= len(in.Steps) {
		return false, 0
	}
	share := clamp01(perRequestMS / load.meanServiceMS)
	s := in.Steps[step]
	latencyBreach := !s.MetSLO && in.SLO.P99MS > 0 && s.Latency.P99 > in.SLO.P99MS
	return latencyBreach && share >= traceLimitingShare, share
}

// criticalPathGain estimates what removing part of the critical path brings.
// For a limiting pattern: capacity by Amdahl's law on the critical path
// (requests hold their concurrency for less time, so by Little's law the
// same concurrency serves more of them). Otherwise: the endpoint's median
// latency at low load. kneeShare and baseShare are the pattern's share of
// request time at the knee and at low load (0: not measured there, the
// knee's is used), and speedup how many times cheaper the fix makes it
// (+Inf removes it).
func criticalPathGain(in *Input, v *traceView, limiting bool, endpoint string, kneeShare, baseShare, speedup float64, what string) *report.ExpectedGain {
	share := kneeShare
	if !limiting && baseShare > 0 {
		share = baseShare
	}
	if share <= 0 || speedup <= 1 {
		return nil
	}
	share = math.Min(share, maxGainShare)
	left := 1 - share + share/speedup
	how := "removing it"
	if !math.IsInf(speedup, 1) {
		how = fmt.Sprintf("making it %.0fx cheaper", speedup)
	}
	if limiting {
		base := capacityBase(in)
		if base <= 0 {
			return nil
		}
		return &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(base / left),
			Method: fmt.Sprintf("Amdahl's law on the critical path: %.0f%% of request time at the knee is in %s; %s leaves %.0f%% of the time, and by Little's law the same concurrency then serves proportionally more requests", share*100, what, how, left*100)}
	}
	step := v.baseStep
	if step < 0 {
		step = v.focusStep
	}
	p50, _, ok := trLoadOf(in, step).latencyFor(in, step, endpoint)
	if !ok || p50 <= 0 {
		return nil
	}
	return &report.ExpectedGain{Metric: "p50_ms", From: round1(p50), To: round1(p50 * left),
		Method: fmt.Sprintf("critical path: %.0f%% of %s's request time is in %s; %s leaves %.0f%% of the median latency at low load", share*100, endpoint, what, how, left*100)}
}

// trSerialSlow is the verdict between downstream.serial and downstream.slow
// on one downstream of one endpoint: both explain the same critical-path
// time (the calls to it), so one of them must come first.
type trSerialSlow struct {
	knee, base trSplit
	// serialGrowthMS and slowGrowthMS are how much of the request latency
	// growth from low load to the knee each explains, per request: the
	// growth of the time the calls' order costs (orderMS) and of the wait
	// left if they ran at once (waitMS).
	serialGrowthMS, slowGrowthMS float64
	// serialFires and slowFires say whether each pattern passes its own
	// rule's thresholds on this endpoint.
	serialFires, slowFires bool
	// serialFirst: the order explains more of the growth (or the
	// dependency's wait alone does not dominate).
	serialFirst bool
	// limiting: the downstream's time on the critical path (serial and
	// own together) is what broke the objective; ofService is its share of
	// the mean service time at the knee. The explanation that comes first
	// takes it; the other keeps its own (which this includes), and
	// yieldRank puts it right after the first.
	limiting  bool
	ofService float64
}

// trJudgeSerialSlow compares the two explanations of a downstream's time on
// an endpoint. The order of the calls explains the growth of what running
// them at once would save; the dependency explains the growth of what would
// be left. Ties go to the dependency: when each call's own latency grew as
// much as the order costs, the order only multiplies it.
func trJudgeSerialSlow(in *Input, v *traceView, endpoint string, res trace.Resource) trSerialSlow {
	var j trSerialSlow
	focus := v.focus
	j.knee = focus.split(endpoint, res)
	j.serialGrowthMS, j.slowGrowthMS = j.knee.orderMS, j.knee.waitMS
	if v.base != nil {
		if j.base = v.base.split(endpoint, res); j.base.requests > 0 {
			j.serialGrowthMS -= j.base.orderMS
			j.slowGrowthMS -= j.base.waitMS
		}
	}
	if focus.totalMS <= 0 || j.knee.requests == 0 {
		return j
	}
	perFocus := float64(j.knee.requests) / focus.totalMS // ms per endpoint request -> share of focus latency
	for _, p := range focus.serial {
		if p.endpoint == endpoint && p.downstream == res && p.share >= traceMinRequestShare {
			j.serialFires = j.knee.serialMS*perFocus >= serialMinShare
		}
	}
	j.slowFires = j.knee.ownMS*perFocus >= slowMinShare && j.knee.ownMS >= slowMinObjectiveShare*in.SLO.P99MS
	j.serialFirst = j.serialFires && (!j.slowFires || j.serialGrowthMS > j.slowGrowthMS)
	j.limiting, j.ofService = patternLimiting(in, v.focusStep, (j.knee.serialMS+j.knee.ownMS)*float64(j.knee.requests)/float64(focus.requests))
	return j
}

// evidence describes the verdict for a finding of either kind.
func (j trSerialSlow) evidence() []report.Evidence {
	return []report.Evidence{
		{Source: "otlp", What: "latency growth from low load to the knee explained by the calls' order (their time beyond one typical call per run), per request", Value: round3(j.serialGrowthMS), Unit: "ms"},
		{Source: "otlp", What: "latency growth from low load to the knee explained by the downstream's own wait (what would be left with the calls at once), per request", Value: round3(j.slowGrowthMS), Unit: "ms"},
	}
}

// maxGainShare caps the share a gain estimate removes: the request's own
// work and the network never vanish, and a share measured near 100% would
// promise an unbounded gain.
const maxGainShare = 0.95

// trMS formats milliseconds for titles and reasons.
func trMS(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 1:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}
