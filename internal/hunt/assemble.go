package hunt

import (
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/chokepoint/chokepoint/internal/capacity"
	"github.com/chokepoint/chokepoint/internal/diagnose"
	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

func usec(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

// windowStat converts an engine window to what the search judges.
func windowStat(w *load.Window) capacity.WindowStat {
	ws := capacity.WindowStat{
		Duration:     w.End.Sub(w.Start),
		OfferedRPS:   w.OfferedRPS,
		AchievedRPS:  w.AchievedRPS,
		InflightMean: w.InflightMean,
	}
	if a := w.All; a != nil {
		ws.Requests = a.Requests
		ws.Errors = a.Errors
		if a.Latency != nil && a.Latency.TotalCount() > 0 {
			ws.P50 = usec(a.Latency.ValueAtQuantile(50))
			ws.P99 = usec(a.Latency.ValueAtQuantile(99))
			ws.Max = usec(a.Latency.Max())
		}
	}
	return ws
}

// stepResult merges a step's run into what the search records.
func stepResult(r *load.Result) capacity.StepResult {
	t := r.Total()
	sr := capacity.StepResult{
		AchievedRPS:     r.AchievedRPS(),
		Duration:        r.Sending,
		Requests:        t.Requests,
		Errors:          t.Errors,
		Late:            r.Late,
		Dropped:         r.Dropped,
		LagP99:          r.LagP99(),
		LoadgenCPULimit: float64(runtime.GOMAXPROCS(0)),
	}
	if rps, ok := r.OfferedRPS(); ok {
		sr.OfferedRPS = rps
	}
	if s := r.Sending.Seconds(); s > 0 {
		sr.LoadgenCPU = r.CPUSeconds / s
		if sr.AchievedRPS > 0 && t.Requests > 0 {
			sr.InflightMean = t.ServiceSum.Seconds() / s
		}
	}
	if h := t.Latency; h != nil && h.TotalCount() > 0 {
		sr.P50 = usec(h.ValueAtQuantile(50))
		sr.P90 = usec(h.ValueAtQuantile(90))
		sr.P99 = usec(h.ValueAtQuantile(99))
		sr.Max = usec(h.Max())
		sr.MeanLatency = time.Duration(h.Mean() * float64(time.Microsecond))
	}
	if h := t.Service; h != nil && h.TotalCount() > 0 {
		sr.ServiceP99 = usec(h.ValueAtQuantile(99))
	}
	return sr
}

// assemble builds report.json from the search so far (no diagnosis).
func (h *hunter) assemble(status string) *report.Report {
	rep := h.baseReport()
	rep.Status = status
	res := h.search.Result()

	steps := res.ReportSteps()
	measured := 0
	for _, st := range res.Steps {
		if !st.Plan.Phase.Measured() {
			continue
		}
		if measured < len(steps) {
			s := &steps[measured]
			s.Index = st.Plan.Index
			s.Phase = string(st.Plan.Phase)
			if t, ok := h.stepTimes[st.Plan.Index]; ok {
				s.StartMS, s.EndMS = t[0], t[1]
			}
		}
		measured++
	}
	rep.Steps = steps

	c := &rep.Capacity
	c.MaxRPS = res.MaxRPS
	c.FirstFailingRPS = res.FirstFailingRPS
	if k, ok := capacity.Knee(res.Steps); ok {
		c.KneeRPS = &k
	}
	fit := capacity.FitUSL(capacity.USLPoints(res.Steps))
	c.USL = fit.Report()
	switch res.Stop {
	case capacity.StopMaxRate:
		c.LimitedBy = report.LimitedNoneFound
	case capacity.StopLoadgen:
		c.LimitedBy = report.LimitedLoadgen
		c.MaxRPS = nil
	case capacity.StopBreach, capacity.StopPlateau:
		c.LimitedBy = report.LimitedUnexplained // the diagnosis names it
	default:
		c.LimitedBy = report.LimitedNotReached
	}
	if h.cfg.Discovery != "" {
		rep.Notes = append(rep.Notes, "discovery: "+h.cfg.Discovery)
	}
	rep.Notes = append(rep.Notes, res.Notes...)
	if h.total != nil {
		rep.Endpoints = endpoints(h.total)
	}
	if k := c.KneeRPS; k != nil {
		if share, ok := capacity.LoadgenCPUAt(res.Steps, *k); ok {
			rep.Loadgen = &report.LoadgenInfo{SharedMachine: true, CPUShareAtKnee: share / float64(h.cfg.Cores)}
		}
	}
	rep.Coverage = h.coverage()
	return rep
}

// endpoints is the per-endpoint table over the whole hunt.
func endpoints(r *load.Result) []report.Endpoint {
	out := []report.Endpoint{}
	for _, e := range r.Endpoints {
		if e.Requests == 0 {
			continue
		}
		ep := report.Endpoint{Name: e.Name, Requests: e.Requests, ErrorRate: e.ErrorRate()}
		if hst := e.Latency; hst != nil && hst.TotalCount() > 0 {
			ep.Latency = report.Latency{
				P50: ms(hst.ValueAtQuantile(50)), P90: ms(hst.ValueAtQuantile(90)),
				P99: ms(hst.ValueAtQuantile(99)), Max: ms(hst.Max()),
			}
		}
		out = append(out, ep)
	}
	return out
}

func ms(us int64) float64 { return float64(us) / 1000 }

// coverage merges what discovery decided, what each probe reports and the
// load generator's own line.
func (h *hunter) coverage() []report.Coverage {
	out := []report.Coverage{{Source: "loadgen", Status: probe.StatusOK, Detail: "client-side latency, errors and throughput per endpoint"}}
	seen := map[string]bool{"loadgen": true}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.cfg.Probes {
		c := p.Coverage()
		if err, failed := h.probeErrs[p.Source()]; failed {
			c.Status = probe.StatusError
			c.Detail = err.Error()
		}
		out = append(out, report.Coverage{Source: c.Source, Status: c.Status, Detail: c.Detail})
		seen[c.Source] = true
	}
	for _, n := range h.cfg.Notes {
		if !seen[n.Source] {
			out = append(out, n)
			seen[n.Source] = true
		}
	}
	slices.SortStableFunc(out, func(a, b report.Coverage) int { return order(a.Source) - order(b.Source) })
	return out
}

func order(source string) int {
	return slices.Index([]string{"loadgen", "proc", "pprof", "metrics", "postgres", "otlp"}, source)
}

// finish assembles the report, runs the diagnosis over the run directory and
// adds the findings.
func (h *hunter) finish(status string) *report.Report {
	rep := h.assemble(status)
	rep.EndMS = time.Now().UnixMilli()
	if err := h.cfg.Dir.WriteJSON(run.ReportFile, rep); err != nil {
		h.cfg.Logger.Warn("write report", "err", err)
	}
	in, err := diagnose.Load(h.cfg.Dir, rep, h.cfg.Cores)
	if err != nil {
		rep.Notes = append(rep.Notes, "diagnosis skipped: "+err.Error())
		return rep
	}
	d := diagnose.Run(in, diagnose.Rules())
	rep.Findings = d.Findings
	rep.RuledOut = d.RuledOut
	rep.Capacity.LimitedBy = d.LimitedBy
	if rep.Capacity.LimitedBy == report.LimitedLoadgen {
		rep.Findings = append([]report.Finding{h.loadgenFinding()}, rep.Findings...)
	}
	return rep
}

// loadgenFinding says the generator, not the target, was the limit.
func (h *hunter) loadgenFinding() report.Finding {
	res := h.search.Result()
	_, why := capacity.LoadgenSaturated(res.Steps)
	resource := "cpu"
	if strings.Contains(why, "dropped") || strings.Contains(why, "in-flight") {
		resource = "concurrency" // the generator's own in-flight bound
	}
	return report.Finding{
		Kind:       report.LimitedLoadgen,
		Title:      "The load generator limited this test; the result is not the target's capacity",
		Severity:   report.SeverityCritical,
		Impact:     1,
		Confidence: 0.9,
		Locus:      report.Locus{Resource: resource},
		Evidence:   []report.Evidence{{Source: "loadgen", What: why, Value: 1, Unit: "flag"}},
		Recommendation: "Give the generator more CPU (run it on another machine or core), raise --max-inflight, " +
			"or hunt a lower --max-rate; then hunt again.",
	}
}
