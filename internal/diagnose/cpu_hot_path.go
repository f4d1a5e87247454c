package diagnose

import (
	"fmt"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of cpu.hot-path.
const (
	// cpuSaturated: the target uses at least this share of the CPU it can
	// get (its quota, else the machine's cores not used by the generator).
	// Go's scheduler keeps a saturated process at 90-100%; 80% leaves room
	// for one-second sampling noise.
	cpuSaturated = 0.80
	// hotPathMinShare: one application function must carry at least this
	// share of CPU samples to be "the" hot path rather than spread-out cost.
	hotPathMinShare = 0.20
	// hotPathSpeedup is the improvement the gain estimate assumes for the
	// hot function (halving it is what an algorithmic fix or a cache
	// usually brings; stated in the method).
	hotPathSpeedup = 2.0
)

type cpuHotPath struct{}

func (cpuHotPath) Kind() string { return "cpu.hot-path" }

func (r cpuHotPath) Check(in *Input) Result {
	step := in.FocusStep()
	if step < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	sat, satWhy, ok := cpuSaturation(in, step)
	if !ok {
		return Result{RuledOut: "could not check: no CPU samples of the target process (give --pid, or run the target on this machine)"}
	}
	if sat.share < cpuSaturated {
		return Result{RuledOut: fmt.Sprintf("the target used %s of the CPU it could get at %.0f req/s (%.2f of %.2f cores), below the %s that marks CPU-bound", pct(sat.share), in.Steps[step].OfferedRPS, sat.used, sat.limit, pct(cpuSaturated))}
	}
	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Resource: "cpu"},
		Evidence: []report.Evidence{
			{Source: "proc", What: "target CPU share of what it can use at the knee", Value: round3(sat.share), Unit: "ratio"},
			{Source: "proc", What: "target CPU used at the knee", Value: round3(sat.used), Unit: "cores"},
			{Source: "proc", What: "CPU available to the target", Value: round3(sat.limit), Unit: "cores"},
		},
	}
	conf := 0.6
	impact := sat.share
	top, gcShare, profOK := hotFunction(in, step)
	switch {
	case profOK && top.Share >= hotPathMinShare && gcShare < top.Share:
		f.Locus.Function = top.Function
		f.Title = fmt.Sprintf("CPU-bound: %s takes %s of the CPU", top.Function, pct(top.Share))
		f.Evidence = append([]report.Evidence{{Source: "pprof", What: "share of CPU samples in " + top.Function + " (and what it calls)", Value: round3(top.Share), Unit: "ratio"}}, f.Evidence...)
		f.Recommendation = fmt.Sprintf("Make %s cheaper: profile it (go tool pprof -list '%s'), remove repeated work, choose a better algorithm or cache its result; the target is CPU-bound (%s).", top.Function, top.Function, satWhy)
		f.ExpectedGain = amdahlGain(in, top.Share, hotPathSpeedup, top.Function)
		impact = top.Share
		conf = 0.9
	case profOK:
		return Result{RuledOut: fmt.Sprintf("the target is CPU-bound (%s) but no application function takes %s of the CPU (top: %s at %s; GC/allocation %s)", satWhy, pct(hotPathMinShare), top.Function, pct(top.Share), pct(gcShare))}
	default:
		f.Title = fmt.Sprintf("CPU-bound at %.0f req/s (no CPU profile to name the code path)", in.Steps[step].OfferedRPS)
		f.Recommendation = "The target is CPU-bound (" + satWhy + "). Expose a CPU profile (Go: import net/http/pprof; give --pprof URL) so chokepoint can name the function to optimise."
	}
	f.Impact = round3(impact)
	f.Confidence = conf
	return Result{Findings: []Candidate{{Finding: f, Limiting: true}}}
}

type saturation struct {
	used, limit, share float64
}

// cpuSaturation measures how much of the CPU it could get the target used
// at a step. The limit is its cgroup quota when set, else the machine's
// cores minus what the load generator used (they share the machine).
func cpuSaturation(in *Input, step int) (saturation, string, bool) {
	tgt := in.procStats(evidence.RoleTarget, step)
	if tgt.N == 0 {
		return saturation{}, "", false
	}
	cores := float64(in.Cores)
	if m := in.machineCores(step); m > 0 {
		cores = float64(m)
	}
	if cores <= 0 {
		cores = 1
	}
	limit := cores
	why := fmt.Sprintf("%.2f of %.0f cores", tgt.CPUCores, cores)
	if tgt.QuotaCores > 0 && tgt.QuotaCores < limit {
		limit = tgt.QuotaCores
		why = fmt.Sprintf("%.2f of its %.2f-core quota", tgt.CPUCores, limit)
	} else if lg := in.procStats(evidence.RoleLoadgen, step); lg.N > 0 {
		limit = cores - lg.CPUCores
		why = fmt.Sprintf("%.2f of the %.2f cores the load generator left (%.2f used by it)", tgt.CPUCores, limit, lg.CPUCores)
	}
	if limit <= 0.05 {
		limit = 0.05
	}
	return saturation{used: tgt.CPUCores, limit: limit, share: clamp01(tgt.CPUCores / limit)}, why, true
}

func (in *Input) machineCores(step int) int {
	start, end := in.StepSpan(step)
	for _, r := range in.ProcIn(evidence.RoleMachine, start, end) {
		if r.Machine != nil && r.Machine.Cores > 0 {
			return r.Machine.Cores
		}
	}
	return 0
}

// hotFunction reads the step's CPU profile: the top application function's
// share and the GC+allocation share. ok is false without a usable profile.
func hotFunction(in *Input, step int) (profilesum.Share, float64, bool) {
	rec, ok := in.ProfileFor(evidence.ProfileCPU, "", step)
	if !ok || in.OpenProfile == nil {
		return profilesum.Share{}, 0, false
	}
	p, err := in.OpenProfile(rec.File)
	if err != nil {
		return profilesum.Share{}, 0, false
	}
	attr, err := profilesum.Attribute(p, "cpu", profilesum.Options{})
	if err != nil || attr.Total == 0 {
		return profilesum.Share{}, 0, false
	}
	top, ok := attr.TopApplication()
	if !ok {
		return profilesum.Share{}, 0, false
	}
	gc, err := profilesum.GC(p)
	if err != nil {
		return top, 0, true
	}
	return top, gc.Share, true
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
