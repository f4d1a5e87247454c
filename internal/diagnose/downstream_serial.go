package diagnose

import (
	"fmt"
	"math"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of downstream.serial.
const (
	// serialMinShare: running the calls at once must save at least this
	// share of request latency at the knee (CONTRACT.md §4's major/minor
	// line: a millisecond saved on a slow request is not worth the
	// concurrency it adds).
	serialMinShare = MajorImpact
	// serialLoopShare: when most affected requests call one route one
	// item at a time, the calls are a loop over independent items.
	serialLoopShare = 0.5
)

type downstreamSerial struct{ c *traceCache }

func (downstreamSerial) Kind() string { return "downstream.serial" }

func (r downstreamSerial) Check(in *Input) Result {
	v := r.c.get(in)
	if why := v.why(in); why != "" {
		return Result{RuledOut: why}
	}
	focus := v.focus
	if focus.requests < traceMinRequests {
		return Result{RuledOut: fmt.Sprintf("could not check: only %d requests traced at the knee (need %d)", focus.requests, traceMinRequests)}
	}
	best, bestImpact := serialPick(focus)
	where := "at the knee"
	if best == nil || bestImpact < serialMinShare {
		// Past the knee, requests may queue before the code that makes
		// the calls runs (a saturated CPU, a full listen queue), or fail
		// before their later calls: the order then costs a small share
		// of a long wait, or shows in few requests. It is the code's
		// order all the same, and at low load it is most of the latency.
		if b, bi := serialPick(v.base); b != nil && bi >= serialMinShare && v.base.requests >= traceMinRequests {
			best, bestImpact, where = b, bi, "at low load"
		}
	}
	if best == nil {
		if len(focus.serial) > 0 {
			p := focus.serial[0]
			return Result{RuledOut: fmt.Sprintf("downstream calls run one after another in only %s of %s's requests (need %s)", pct(p.share), p.endpoint, pct(traceMinRequestShare))}
		}
		return Result{RuledOut: fmt.Sprintf("no request makes independent downstream calls one after another (%d requests traced at the knee)", focus.requests)}
	}
	if bestImpact < serialMinShare {
		return Result{RuledOut: fmt.Sprintf("running %s's %.1f sequential calls at once would save %s per request, %s of request latency at the knee, below %s", best.endpoint, best.meanCalls, trMS(best.meanSavingMS), pct(bestImpact), pct(serialMinShare))}
	}
	atKnee := where == "at the knee"
	name := downstreamLocus(best.downstream)
	f := report.Finding{
		Kind:   r.Kind(),
		Title:  fmt.Sprintf("%s calls %s %.0f times one after another: running them at once would save %s per request (%s of latency %s)", best.endpoint, name, math.Round(best.meanCalls), trMS(best.meanSavingMS), pct(bestImpact), where),
		Impact: round3(bestImpact),
		Locus:  report.Locus{Endpoint: best.endpoint, Downstream: name},
		Evidence: []report.Evidence{
			{Source: "otlp", What: "share of request latency " + where + " that parallel calls would save (sum minus longest of the sequential stages)", Value: round3(bestImpact), Unit: "ratio"},
			{Source: "otlp", What: "sequential calls per affected request " + where, Value: round1(best.meanCalls), Unit: "calls"},
			{Source: "otlp", What: "stages that ran one after another " + where, Value: round1(best.meanStages), Unit: "stages"},
			{Source: "otlp", What: "time in the sequential calls per affected request " + where, Value: round3(best.meanSumMS), Unit: "ms"},
			{Source: "otlp", What: "time parallel calls would save per affected request " + where, Value: round3(best.meanSavingMS), Unit: "ms"},
			{Source: "otlp", What: "share of the endpoint's requests that show it " + where, Value: round3(best.share), Unit: "ratio"},
		},
	}
	conf := confTraces
	independent := "they look independent (no call starts on data only an earlier one returns, as far as the spans show)"
	if best.sameRoute >= serialLoopShare {
		conf += confSignal // one route, different parameters: a loop over independent items
		independent = "they call one route with different parameters, a loop over independent items"
	}
	if best.share >= traceCommonShare {
		conf += confConsistency
	}
	// The other step: the code's sequence, at any load.
	other, otherWhere := v.base, "at low load"
	if !atKnee {
		other, otherWhere = focus, "at the knee"
	}
	baseShare := 0.0
	if !atKnee {
		baseShare = best.savingShare
	}
	if other != nil {
		for _, op := range other.serial {
			if op.endpoint == best.endpoint && op.downstream == best.downstream && op.share >= traceMinRequestShare {
				f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "time parallel calls would save per affected request " + otherWhere, Value: round3(op.meanSavingMS), Unit: "ms"})
				conf += confConsistency
				if atKnee {
					baseShare = op.savingShare
				}
			}
		}
	}
	f.Confidence = round3(min(conf, confCeiling))
	limiting := false
	var yields string
	if atKnee {
		var ofService float64
		limiting, ofService = patternLimiting(in, v.focusStep, best.meanSavingMS*float64(best.requests)/float64(focus.requests))
		if ofService > 0 {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "share of the mean service time at the knee that parallel calls would save", Value: round3(ofService), Unit: "ratio"})
		}
		// The same calls' time may also make the dependency look slow:
		// the explanation of more of the latency growth comes first (the
		// other yields to it in the ranking) and takes the limit when the
		// calls together broke the objective.
		j := trJudgeSerialSlow(in, v, best.endpoint, best.downstream)
		f.Evidence = append(f.Evidence, j.evidence()...)
		switch {
		case j.serialFirst:
			limiting = limiting || j.limiting
		case j.slowFires:
			yields = "downstream.slow"
		}
	}
	f.Recommendation = fmt.Sprintf("Make %s's calls to %s concurrently (Go: an errgroup.Group with SetLimit; other languages: futures or async gather), or through one batch call if the API has one; %s. Keep a bound on the calls in flight so the downstream is not flooded. (The spans cannot show whether a call needs the previous one's answer, a page cursor for instance: such calls stay in order.)", best.endpoint, name, independent)
	f.ExpectedGain = criticalPathGain(in, v, limiting, best.endpoint, bestImpact, baseShare, math.Inf(1), "the wait for the calls that could overlap")
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting, Yields: yields}}}
}

// serialPick returns the serial pattern of a step that most requests show
// and that saves the largest share of the step's traced latency, with that
// share; nil when no pattern shows in most of its endpoint's requests.
func serialPick(st *stepTraces) (*trSerial, float64) {
	if st == nil || st.totalMS <= 0 {
		return nil, 0
	}
	var best *trSerial
	bestImpact := 0.0
	for i := range st.serial {
		p := &st.serial[i]
		if p.share < traceMinRequestShare || st.endpoint(p.endpoint) == nil {
			continue
		}
		impact := clamp01(p.meanSavingMS * float64(p.requests) / st.totalMS)
		if best == nil || impact > bestImpact {
			best, bestImpact = p, impact
		}
	}
	return best, bestImpact
}
