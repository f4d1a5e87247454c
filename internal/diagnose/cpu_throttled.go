package diagnose

import (
	"fmt"
	"math"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of cpu.throttled.
const (
	// throttledMinShare: the cgroup was throttled in at least this share of
	// its CFS periods at the knee. A process that fits its quota is
	// throttled in almost none; one that needs more than its quota is
	// throttled in most (the kernel stops it as soon as the quota is spent).
	// A quarter separates the two with room for bursty load.
	throttledMinShare = 0.25
	// idleMinCores: "the machine has idle CPU" means at least half a core
	// unused on average over the step (one-second /proc samples of a busy
	// machine read within a few hundredths of full).
	idleMinCores = 0.5
	// quotaTightShare: a quota at or below half of the cores the generator
	// leaves is the tighter limit even when other work keeps the machine
	// busy: without it the target would get at least its fair share.
	quotaTightShare = 0.5
	// throttledRise: throttling at the knee at least this many times the
	// low-load share (or rising from none) shows it grew with the load.
	throttledRise = 2.0
)

type cpuThrottled struct{}

func (cpuThrottled) Kind() string { return "cpu.throttled" }

// quotaThrottling says whether a step's CPU limit is the target's cgroup
// quota, spent and throttled, while the machine has room (idle cores, or a
// quota well below the cores the generator leaves), with the numbers.
func quotaThrottling(in *Input, step int, sat saturation) (bool, string) {
	tgt := in.procStats(evidence.RoleTarget, step)
	if tgt.QuotaCores <= 0 {
		return false, "the target's cgroup has no CPU quota"
	}
	if sat.limitedBy != "quota" || sat.share < cpuSaturated {
		return false, fmt.Sprintf("the target used %s of its %.2f-core quota (%.2f cores), below %s", pct(sat.used/tgt.QuotaCores), tgt.QuotaCores, sat.used, pct(cpuSaturated))
	}
	if tgt.ThrottledShare < throttledMinShare {
		return false, fmt.Sprintf("the cgroup was throttled in %s of its periods, below %s", pct(tgt.ThrottledShare), pct(throttledMinShare))
	}
	room, roomWhy := machineRoom(in, step, tgt.QuotaCores, sat)
	if !room {
		return false, roomWhy
	}
	return true, fmt.Sprintf("%.2f of its %.2f-core quota, throttled in %s of periods; %s", sat.used, tgt.QuotaCores, pct(tgt.ThrottledShare), roomWhy)
}

// machineRoom says whether the machine could give the target more CPU than
// its quota.
func machineRoom(in *Input, step int, quota float64, sat saturation) (bool, string) {
	free := in.coresLeftByLoadgen(step)
	if sat.idle >= idleMinCores {
		return true, fmt.Sprintf("the machine had %.2f idle cores", sat.idle)
	}
	if free > 0 && quota <= quotaTightShare*free {
		return true, fmt.Sprintf("the quota is %s of the %.2f cores the generator leaves", pct(quota/free), free)
	}
	idle := "not measured"
	if sat.idle >= 0 {
		idle = fmt.Sprintf("%.2f cores", sat.idle)
	}
	return false, fmt.Sprintf("the machine had no idle CPU to give (idle %s, below %.1f; quota %.2f of %.2f free cores)", idle, idleMinCores, quota, free)
}

// coresLeftByLoadgen is the machine's cores minus the generator's CPU.
func (in *Input) coresLeftByLoadgen(step int) float64 {
	cores := float64(in.Cores)
	if m := in.machineCores(step); m > 0 {
		cores = float64(m)
	}
	if lg := in.procStats(evidence.RoleLoadgen, step); lg.N > 0 {
		cores -= lg.CPUCores
	}
	return cores
}

func (r cpuThrottled) Check(in *Input) Result {
	if in.FocusStep() < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	// The knee, else the step that led to it (a failing step can stall
	// and read low).
	var (
		step     = -1
		sat      saturation
		thr      bool
		why      string
		firstWhy string
	)
	for _, s := range in.kneeSteps() {
		st, _, ok := cpuSaturation(in, s)
		if !ok || !in.hasCgroup(s) {
			continue
		}
		step, sat = s, st
		thr, why = quotaThrottling(in, s, st)
		if firstWhy == "" {
			firstWhy = why + fmt.Sprintf(" at %.0f req/s", in.Steps[s].OfferedRPS)
		}
		if thr {
			break
		}
	}
	if step < 0 {
		return Result{RuledOut: "could not check: no CPU samples of the target process with cgroup CPU statistics (give --pid; cpu.max/cpu.stat are read on Linux only)"}
	}
	if !thr {
		return Result{RuledOut: firstWhy}
	}
	tgt := in.procStats(evidence.RoleTarget, step)
	thrShare := unit(tgt.ThrottledShare)
	free := in.coresLeftByLoadgen(step)
	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Resource: "cpu", Endpoint: in.dominantEndpoint(step)},
		Title: fmt.Sprintf("CPU quota of %.2f cores throttles the target in %s of periods at %.0f req/s", tgt.QuotaCores, pct(thrShare), in.Steps[step].OfferedRPS),
		Evidence: []report.Evidence{
			{Source: "proc", What: "share of cgroup CPU periods throttled at the knee", Value: round3(thrShare), Unit: "ratio"},
			{Source: "proc", What: "cgroup CPU quota", Value: round3(tgt.QuotaCores), Unit: "cores"},
			{Source: "proc", What: "target CPU used at the knee", Value: round3(sat.used), Unit: "cores"},
			{Source: "proc", What: "time throttled per second at the knee", Value: round3(tgt.ThrottledSec / math.Max(1, float64(tgt.N))), Unit: "s/s"},
		},
		Impact: round3(thrShare),
	}
	if sat.idle >= 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "machine idle CPU at the knee", Value: round3(sat.idle), Unit: "cores"})
	}
	conf := 0.3 + 0.3 // CPU at the quota, and throttled in most periods
	if sat.idle >= idleMinCores {
		conf += 0.2
	} else {
		conf += 0.1
	}
	if base := in.BaselineStep(); base >= 0 && base != step {
		b := in.procStats(evidence.RoleTarget, base)
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "share of periods throttled at low load", Value: round3(b.ThrottledShare), Unit: "ratio"})
		if b.ThrottledShare*throttledRise <= thrShare {
			conf += 0.1
		}
	}
	// What the target would get without the quota: the idle cores on top
	// of what it uses, or on a busy machine half of what the generator
	// leaves (a fair share); never more than GOMAXPROCS.
	target := sat.used + math.Max(0, sat.idle)
	if sat.idle < idleMinCores {
		target = math.Max(sat.used, free*quotaTightShare)
	}
	if sat.gomaxprocs > 0 {
		target = math.Min(target, sat.gomaxprocs)
	}
	target = math.Min(target, math.Max(free, sat.used))
	want := math.Ceil(target*10) / 10
	f.Recommendation = fmt.Sprintf("Raise the CPU quota of the target's cgroup from %.2f to at least %.1f cores, or remove it (cgroup v2 cpu.max, docker --cpus, Kubernetes resources.limits.cpu): the target spends its quota early in each period and waits for the next one while the machine has CPU to give (%s). Keep GOMAXPROCS in step with the quota.", tgt.QuotaCores, want, why)
	if base := capacityBase(in); base > 0 && sat.used > 0 && target > sat.used {
		f.ExpectedGain = &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(base * target / sat.used),
			Method: fmt.Sprintf("CPU-bound throughput scales with the CPU it gets: %.2f cores instead of %.2f (the machine's idle cores, or a fair share of a busy machine)", target, sat.used)}
	}
	f.Confidence = round3(min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: true}}}
}

// hasCgroup reports whether the target's samples at a step carry cgroup CPU
// statistics.
func (in *Input) hasCgroup(step int) bool {
	start, end := in.StepSpan(step)
	for _, r := range in.ProcIn(evidence.RoleTarget, start, end) {
		if r.Process != nil && r.Process.Cgroup != nil {
			return true
		}
	}
	return false
}
