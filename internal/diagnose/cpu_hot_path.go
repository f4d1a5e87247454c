package diagnose

import (
	"fmt"
	"regexp"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of cpu.hot-path (and of "CPU is the limit", which gc.pressure
// shares).
const (
	// cpuSaturated: the target uses at least this share of the CPU it can
	// get (the smallest of its quota, its GOMAXPROCS and the machine's cores
	// not used by the generator). Go's scheduler keeps a saturated process
	// at 90-100%; 80% leaves room for one-second sampling noise.
	cpuSaturated = 0.80
	// machineSaturated and cpuContendedShare: on a machine whose CPUs are
	// all busy (other processes compete: shared CI hosts, a database on the
	// same machine) a CPU-bound target cannot reach cpuSaturated; it still
	// counts as CPU-bound when the machine is at least 95% busy (the /proc
	// busy share of a fully loaded machine reads 0.97-1.0) and the CPU it
	// wants (what it used plus the time its threads sat runnable in the run
	// queue, from schedstat) is at least half of what the generator leaves,
	// and it waited for a CPU at least as long as it ran (starved). A target
	// limited elsewhere wants a small part of the machine however busy it is.
	// A target whose used and waiting time reach cpuSaturated of the limit
	// is CPU-bound however busy the machine is.
	machineSaturated  = 0.95
	cpuContendedShare = 0.50
	// hotPathMinShare: the hot path (the deepest application function
	// still carrying most of its caller's CPU, profilesum.HotPaths) must
	// hold at least this share of the process's CPU samples at the knee by
	// its own work (its code and the runtime and libraries it calls, not
	// other application functions; allocation, GC, serialising and sending
	// responses excluded: gc.pressure's and payload.large's) to be "the"
	// hot path rather than ordinary request handling. Recorded CPU-bound
	// zoo runs without one put at most 29% there (an indexed search under
	// a CPU quota, cpu.throttled-zoo; services that query a database or
	// encode responses 0-10%: none-zoo-process, memory.leak-zoo,
	// payload.large-zoo); with one, 82% alone (cpu.hot-path-zoo) and 38-52%
	// when a second endpoint's work shares the CPU
	// (cpu.hot-path-zoo-mixed*, issue 6 notes). 30% is the least worth
	// naming (halving it gains 18% of capacity, Amdahl) and sits below the
	// mixed loads' lowest.
	hotPathMinShare = 0.30
	// hotPathSpeedup is the improvement the gain estimate assumes for the
	// hot function (halving it is what an algorithmic fix or a cache
	// usually brings; stated in the method).
	hotPathSpeedup = 2.0
	// minProfileSeconds: a CPU profile with less CPU time than this (100
	// samples at Go's 100 Hz) ranks functions too coarsely to add
	// confidence.
	minProfileSeconds = 1.0
	// cpuPerRequestDrift: CPU per request at the knee within this factor of
	// the low-load CPU per request means the CPU grew with the load (the
	// work is per request, not background).
	cpuPerRequestDrift = 2.0
)

type cpuHotPath struct{}

func (cpuHotPath) Kind() string { return "cpu.hot-path" }

func (r cpuHotPath) Check(in *Input) Result {
	if in.FocusStep() < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	step, sat, ok := in.cpuKnee()
	if !ok {
		return Result{RuledOut: "could not check: no CPU samples of the target process (give --pid, or run the target on this machine)"}
	}
	bound, boundWhy := cpuBound(in, step, sat)
	if !bound {
		return Result{RuledOut: boundWhy}
	}
	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Resource: "cpu", Endpoint: in.dominantRunEndpoint()},
	}
	procEv := []report.Evidence{
		{Source: "proc", What: "target CPU share of what it can use at the knee", Value: round3(sat.share), Unit: "ratio"},
		{Source: "proc", What: "target CPU used at the knee", Value: round3(sat.used), Unit: "cores"},
		{Source: "proc", What: "CPU available to the target (" + sat.limitedBy + ")", Value: round3(sat.limit), Unit: "cores"},
	}
	conf := 0.3
	if sat.share < cpuSaturated {
		conf = 0.2 // CPU-bound only on a machine others keep busy
	}
	if thr, thrWhy := quotaThrottling(in, step, sat); thr {
		// The quota, not the code, is what stops it: any function is "hot"
		// in a process held to a sliver of a CPU.
		return Result{RuledOut: fmt.Sprintf("the target's CPU is capped by its cgroup quota (%s): cpu.throttled", thrWhy)}
	}
	cp, _, profOK := in.cpuProfileNear(step)
	switch {
	case profOK && gcClaims(cp):
		return Result{RuledOut: fmt.Sprintf("the target is CPU-bound (%s) but garbage collection and allocation take %s of its CPU, at least half of the top function's own work (%s at %s): gc.pressure", boundWhy, pct(cp.gc.Share), cp.top.Function, pct(cp.topOwn))}
	case profOK && cp.topOwn >= hotPathMinShare:
		fn := cp.top.Function
		f.Locus.Function = fn
		ep, entry := in.entryEndpoint(cp.top.Entries)
		f.Locus.Endpoint = ep
		f.Title = fmt.Sprintf("CPU-bound: %s takes %s of the CPU", fn, pct(cp.top.Share))
		if ep != "" {
			f.Title += " on " + ep
		}
		f.Evidence = append([]report.Evidence{
			{Source: "pprof", What: "share of CPU samples in " + fn + " (and what it calls)", Value: round3(cp.top.Share), Unit: "ratio"},
			{Source: "pprof", What: "the same without its allocation, GC and response-writing work", Value: round3(cp.topOwn), Unit: "ratio"},
			{Source: "pprof", What: "garbage collection and allocation share of CPU", Value: round3(cp.gc.Share), Unit: "ratio"},
			{Source: "pprof+proc", What: "CPU in " + fn + " at the knee", Value: round3(cp.top.Share * sat.used), Unit: "cores"},
		}, procEv...)
		if entry != "" {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "share of its CPU under the handler " + entry, Value: round3(cp.top.Entries[0].Share), Unit: "ratio"})
		}
		f.Recommendation = fmt.Sprintf("Make %s cheaper: look at it line by line (go tool pprof -list '%s' on the CPU profile), remove repeated work, choose a better algorithm or cache its result; the target is CPU-bound (%s).", fn, regexp.QuoteMeta(fn), boundWhy)
		f.ExpectedGain = amdahlGain(in, cp.top.Share, hotPathSpeedup, fn)
		f.Impact = round3(cp.top.Share)
		conf += 0.4
		if cp.seconds >= minProfileSeconds {
			conf += 0.1
		}
	case profOK:
		return Result{RuledOut: fmt.Sprintf("the target is CPU-bound (%s) but no application code path takes %s of the CPU by its own work (top: %s at %s, %s without allocation, GC and response writing; GC/allocation %s)", boundWhy, pct(hotPathMinShare), cp.top.Function, pct(cp.top.Share), pct(cp.topOwn), pct(cp.gc.Share))}
	default:
		f.Title = fmt.Sprintf("CPU-bound at %.0f req/s (no CPU profile to name the code path)", in.Steps[step].OfferedRPS)
		f.Evidence = procEv
		f.Impact = round3(sat.share)
		f.Recommendation = "The target is CPU-bound (" + boundWhy + "). Expose a CPU profile (Go: import net/http/pprof; give --pprof URL) so chokepoint can name the function to optimise."
		conf += 0.2
	}
	if perRequestCPUSteady(in, step) {
		conf += 0.1
	}
	f.Confidence = round3(min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: true}}}
}

// cpuBound says whether CPU is the target's limit at a step, and why (or
// why not, with the decisive number).
func cpuBound(in *Input, step int, sat saturation) (bool, string) {
	rate := in.Steps[step].OfferedRPS
	if sat.share >= cpuSaturated {
		return true, sat.why
	}
	busy, ok := in.machineBusy(step)
	demand := sat.used + sat.wait
	if demand >= cpuSaturated*sat.limit {
		return true, fmt.Sprintf("%s, and %.2f s/s more waiting for a CPU: it wants %.2f cores", sat.why, sat.wait, demand)
	}
	starved := sat.wait >= sat.used && sat.used > 0
	if ok && busy >= machineSaturated && demand >= cpuContendedShare*sat.limit && starved {
		return true, fmt.Sprintf("%s, and %.2f s/s more waiting for a CPU on a machine %s busy", sat.why, sat.wait, pct(busy))
	}
	why := fmt.Sprintf("the target used %s of the CPU it could get at %.0f req/s (%s), below the %s that marks CPU-bound", pct(sat.share), rate, sat.why, pct(cpuSaturated))
	if ok && busy >= machineSaturated {
		why += fmt.Sprintf(" (the machine was %s busy, but the target wanted only %.2f of %.2f cores: %.2f used, %.2f s/s waiting)", pct(busy), demand, sat.limit, sat.used, sat.wait)
	}
	return false, why
}

// perRequestCPUSteady reports whether the target's CPU per request at a
// step is within cpuPerRequestDrift of the highest step that met the
// objective: the CPU is spent serving requests (at the lowest rates the
// target's background work dominates its CPU, so they are not compared).
func perRequestCPUSteady(in *Input, step int) bool {
	base := in.lastGoodStep()
	if base < 0 || base == step {
		return false
	}
	perReq := func(i int) float64 {
		ps := in.procStats("target", i)
		if ps.N == 0 || in.Steps[i].AchievedRPS <= 0 {
			return 0
		}
		return ps.CPUCores / in.Steps[i].AchievedRPS
	}
	a, b := perReq(base), perReq(step)
	if a <= 0 || b <= 0 {
		return false
	}
	return b/a <= cpuPerRequestDrift && a/b <= cpuPerRequestDrift
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// lastGoodStep is the index of the highest-rate step that met the
// objective, or -1.
func (in *Input) lastGoodStep() int {
	best := -1
	for i, s := range in.Steps {
		if s.MetSLO && s.Requests > 0 && (best < 0 || s.OfferedRPS > in.Steps[best].OfferedRPS) {
			best = i
		}
	}
	return best
}
