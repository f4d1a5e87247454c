package diagnose

import (
	"fmt"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of gc.pressure.
const (
	// gcMinShare: garbage collection plus allocation take at least this
	// share of a CPU-bound target's CPU. The Go GC is paced to spend about
	// 25% of GOMAXPROCS while a cycle runs and far less on average in a
	// service with a modest allocation rate (the Go GC guide's examples sit
	// at 5-15%); a third of all CPU is what allocation-heavy code shows.
	gcMinShare = 0.30
	// allocSiteMinShare: the top allocating application function holds at
	// least this share of the step's allocated bytes to be named with
	// confidence (otherwise allocation is spread out).
	allocSiteMinShare = 0.30
	// gcSpeedup is what the gain estimate assumes for the GC and allocation
	// share: GC work is proportional to the allocation rate, and reusing
	// buffers or encoding typed values at least halves it (stated in the
	// method).
	gcSpeedup = 2.0
	// gcCyclesBusy: more GC cycles per second than this corroborates the
	// profile (a service at rest runs one every few seconds at most).
	gcCyclesBusy = 5.0
	// gcOverOwn: GC and allocation at a third of the CPU are the problem
	// unless one function's own work is more than twice as large (then
	// making that function cheaper gains more: cpu.hot-path). Allocation-
	// heavy code does real work too (zoo gc.pressure: 43-49% GC and
	// allocation against 42-49% for the function's own work).
	gcOverOwn = 0.5
)

type gcPressure struct{}

func (gcPressure) Kind() string { return "gc.pressure" }

// gcClaims reports whether a CPU profile's GC and allocation share is
// large and not dwarfed by the top function's own work: then the memory
// manager is what to fix first (gc.pressure), not the code path.
func gcClaims(cp cpuProfile) bool {
	return cp.gc.Share >= gcMinShare && cp.gc.Share >= gcOverOwn*cp.topOwn
}

func (r gcPressure) Check(in *Input) Result {
	if in.FocusStep() < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	step, sat, ok := in.cpuKnee()
	if !ok {
		return Result{RuledOut: "could not check: no CPU samples of the target process (give --pid, or run the target on this machine)"}
	}
	cp, profStep, profOK := in.cpuProfileNear(step)
	gcShare, src := unit(cp.gc.Share), "pprof"
	if cp.gc.Total == 0 {
		share, ok := in.gcShareFromMetrics(step, sat.used)
		if !ok {
			return Result{RuledOut: "could not check: no CPU profile of the step at the knee (Go: import net/http/pprof; give --pprof URL) and no GC CPU time in the metrics (go_cpu_classes_gc_total_cpu_seconds_total)"}
		}
		gcShare, src = unit(share), "metrics"
	}
	if gcShare < gcMinShare {
		return Result{RuledOut: fmt.Sprintf("garbage collection and allocation took %s of the target's CPU at %.0f req/s, below %s", pct(gcShare), in.Steps[step].OfferedRPS, pct(gcMinShare))}
	}
	bound, boundWhy := cpuBound(in, step, sat)
	if !bound {
		return Result{RuledOut: fmt.Sprintf("garbage collection and allocation took %s of the CPU, but CPU is not the limit: %s", pct(gcShare), boundWhy)}
	}
	if profOK && !gcClaims(cp) {
		return Result{RuledOut: fmt.Sprintf("garbage collection and allocation took %s of the CPU, less than half of %s's own work (%s): cpu.hot-path", pct(gcShare), cp.top.Function, pct(cp.topOwn))}
	}
	f := report.Finding{
		Kind:   r.Kind(),
		Locus:  report.Locus{Endpoint: in.dominantRunEndpoint()},
		Impact: round3(gcShare),
		Evidence: []report.Evidence{
			{Source: src, What: "garbage collection and allocation share of CPU at the knee", Value: round3(gcShare), Unit: "ratio"},
		},
	}
	if src == "pprof" {
		f.Evidence = append(f.Evidence,
			report.Evidence{Source: "pprof", What: "garbage collection share of CPU", Value: round3(cp.gc.GCShare), Unit: "ratio"},
			report.Evidence{Source: "pprof", What: "allocation share of CPU", Value: round3(cp.gc.AllocShare), Unit: "ratio"})
	}
	f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "target CPU share of what it can use at the knee", Value: round3(sat.share), Unit: "ratio"})
	conf := 0.3 + 0.3 // CPU is the limit, and GC/allocation take a large share of it
	if sat.share < cpuSaturated {
		conf -= 0.1 // CPU-bound only on a machine others keep busy
	}
	alloc, allocOK := in.topAllocator(profStep)
	site, siteShare, perReq := alloc.fn, alloc.share, alloc.perReq
	entries := alloc.entries
	switch {
	case allocOK && siteShare >= allocSiteMinShare:
		f.Locus.Function = site
		conf += 0.2
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "share of bytes allocated at the knee by " + site, Value: round3(siteShare), Unit: "ratio"})
	case allocOK:
		f.Locus.Function = site
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "share of bytes allocated at the knee by " + site, Value: round3(siteShare), Unit: "ratio"})
	case profOK:
		// No allocation profile: the CPU profile's top function is where
		// the allocation CPU is charged.
		f.Locus.Function = cp.top.Function
		entries = cp.top.Entries
	}
	if ep, _ := in.entryEndpoint(entries); ep != "" {
		f.Locus.Endpoint = ep
	}
	if perReq > 0 {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "bytes allocated per request", Value: round1(perReq), Unit: "bytes"})
	}
	start, end := in.StepSpan(step)
	if cycles, ok := in.metricRate("go_gc_duration_seconds_count", start, end); ok {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "metrics", What: "GC cycles per second at the knee", Value: round1(cycles), Unit: "1/s"})
		if cycles >= gcCyclesBusy {
			conf += 0.1
		}
	}
	if rate, ok := in.metricRate("go_memstats_alloc_bytes_total", start, end); ok {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "metrics", What: "allocation rate at the knee", Value: round1(rate / 1e6), Unit: "MB/s"})
	}
	where := "the code that allocates most"
	if f.Locus.Function != "" {
		where = f.Locus.Function
		f.Title = fmt.Sprintf("Garbage collection and allocation take %s of the CPU; %s allocates most", pct(gcShare), where)
	} else {
		f.Title = fmt.Sprintf("Garbage collection and allocation take %s of the CPU", pct(gcShare))
	}
	f.Recommendation = fmt.Sprintf("Allocate less in %s (go tool pprof -sample_index=alloc_space -list on the allocs profile): reuse buffers (sync.Pool, append into a reused []byte), encode typed structs instead of maps and interfaces, preallocate slices and avoid fmt.Sprintf in loops. If the live heap is small, a higher GOGC or a GOMEMLIMIT trades memory for fewer collections.", where)
	f.ExpectedGain = amdahlGain(in, gcShare, gcSpeedup, "garbage collection and allocation")
	f.Confidence = round3(min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: true}}}
}

// gcAllocSite is the top allocating application function of a step.
type gcAllocSite struct {
	fn     string
	share  float64 // of the bytes allocated
	perReq float64 // bytes allocated per request over the profile's span
	// entries is fn's allocation by the entry point (handler) of its stacks.
	entries []profilesum.EntryCost
}

// topAllocator reads the step's allocs delta profile: the application
// function that allocated the most bytes (runtime and library frames
// charged to their application caller), its share, the handlers it
// allocated under, and bytes allocated per request over the delta's span
// (set even when ok is false, if the profile was read).
func (in *Input) topAllocator(step int) (gcAllocSite, bool) {
	var site gcAllocSite
	rec, found := in.ProfileFor(evidence.ProfileAllocs, evidence.ProfileDelta, step)
	if !found {
		return site, false
	}
	p, err := in.openProfile(rec)
	if err != nil {
		return site, false
	}
	o := profilesum.Options{}
	attr, err := profilesum.Attribute(p, "alloc_space", o)
	if err != nil || attr.Total <= 0 {
		return site, false
	}
	if n := in.requestsBetween(rec.StartMS, rec.EndMS); n > 0 {
		site.perReq = float64(attr.Total) / float64(n)
	}
	top, found := attr.TopApplication()
	if !found {
		return site, false
	}
	site.fn, site.share = top.Function, top.Share
	site.entries, _, _ = profilesum.SiteEntries(p, "alloc_space", top.Function, o)
	return site, true
}

// gcShareFromMetrics estimates the GC's share of the target's CPU from the
// Go runtime's own accounting when the target exports it (client_golang's
// go_cpu_classes_gc_total_cpu_seconds_total), over the CPU /proc measured.
// It covers GC work only (not allocation), so it reads low.
func (in *Input) gcShareFromMetrics(step int, used float64) (float64, bool) {
	start, end := in.StepSpan(step)
	gc, ok := in.metricRate("go_cpu_classes_gc_total_cpu_seconds_total", start, end)
	if !ok || used <= 0 {
		return 0, false
	}
	return clamp01(gc / used), true
}
