package diagnose

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/google/pprof/profile"
)

// Synthetic evidence for the process rules: steps of ten one-second
// windows, /proc samples each second, and profiles built in memory.

const (
	appPkg   = "example.com/shop"
	hotFn    = appPkg + ".scoreProducts"
	feedFn   = appPkg + ".(*Server).renderFeed"
	quoteFn  = appPkg + ".(*book).quote"
	leakFn   = appPkg + ".(*journal).record"
	cacheFn  = appPkg + ".(*cache).fill"
	handleFn = appPkg + ".(*Server).handle"
	stepMS   = 10_000
	t0       = 1_700_000_000_000
)

type stepSpec struct {
	rps       float64
	met       bool
	tgtCPU    float64 // cores
	lgCPU     float64 // cores
	busy      float64 // machine busy share, 0..1
	quota     float64 // cores, 0 = none
	throttled float64 // share of periods throttled
	latMS     float64 // mean latency
	rss       int64
	heapInuse float64 // go_memstats_heap_inuse_bytes, 0 = no metric
	gomaxproc float64 // go_sched_gomaxprocs_threads, 0 = no metric
	rqWait    float64 // run-queue wait, s/s
}

type synth struct {
	*Input
	profs map[string]*profile.Profile
}

func build(cores int, specs ...stepSpec) *synth {
	s := &synth{Input: &Input{Cores: cores, SLO: report.SLO{P99MS: 500, ErrorRate: 0.01}}, profs: map[string]*profile.Profile{}}
	s.OpenProfile = func(file string) (*profile.Profile, error) {
		p, ok := s.profs[file]
		if !ok {
			return nil, fmt.Errorf("no profile %s", file)
		}
		return p, nil
	}
	for i, sp := range specs {
		start := int64(t0 + i*stepMS)
		end := start + stepMS
		lat := sp.latMS
		if lat == 0 {
			lat = 5
		}
		s.Steps = append(s.Steps, report.Step{Index: i + 1, OfferedRPS: sp.rps, AchievedRPS: sp.rps, InflightMean: sp.rps * lat / 1000,
			StartMS: start, EndMS: end, Requests: int64(sp.rps * stepMS / 1000), MetSLO: sp.met, Latency: report.Latency{P50: lat, P99: 3 * lat}})
		for w := range stepMS / 1000 {
			ws, we := start+int64(w)*1000, start+int64(w+1)*1000
			n := int64(sp.rps)
			s.Windows = append(s.Windows, evidence.WindowRecord{T: we, StartMS: ws, EndMS: we, Step: i + 1, Window: w, AchievedRPS: sp.rps, Requests: n,
				Endpoints: []evidence.WindowEndpoint{{Name: "GET /x", Requests: n, ServiceMS: evidence.WindowLatency{P50: lat}}}})
			cg := &evidence.CgroupCPU{Version: 2, Periods: 10, ThrottledPeriods: uint64(sp.throttled*10 + 0.5)}
			if sp.quota > 0 {
				q := sp.quota
				cg.QuotaCores = &q
			}
			s.Proc = append(s.Proc,
				evidence.ProcRecord{T: we, Role: evidence.RoleTarget, PID: 10, IntervalMS: 1000, Process: &evidence.ProcessSample{Name: "shop", CPUCores: sp.tgtCPU, RSSBytes: sp.rss, Cgroup: cg, RunQueueWaitPerSec: &sp.rqWait}},
				evidence.ProcRecord{T: we, Role: evidence.RoleLoadgen, PID: 11, IntervalMS: 1000, Process: &evidence.ProcessSample{Name: "chokepoint", CPUCores: sp.lgCPU}},
				evidence.ProcRecord{T: we, Role: evidence.RoleMachine, IntervalMS: 1000, Machine: &evidence.MachineSample{Cores: cores, CPUBusy: sp.busy}},
			)
			var ms []evidence.MetricSample
			if sp.heapInuse > 0 {
				ms = append(ms, evidence.MetricSample{Name: "go_memstats_heap_inuse_bytes", Type: evidence.MetricGauge, Value: sp.heapInuse})
			}
			if sp.gomaxproc > 0 {
				ms = append(ms, evidence.MetricSample{Name: "go_sched_gomaxprocs_threads", Type: evidence.MetricGauge, Value: sp.gomaxproc})
			}
			if len(ms) > 0 {
				s.Metrics = append(s.Metrics, evidence.MetricsRecord{T: we, Samples: ms})
			}
		}
	}
	return s
}

// stack is a sample: frames leaf first, and its values.
type stack struct {
	frames []string
	vals   []int64
}

func st(v int64, frames ...string) stack { return stack{frames: frames, vals: []int64{v}} }

func mkProfile(types []string, samples ...stack) *profile.Profile {
	p := &profile.Profile{}
	for _, t := range types {
		typ, unit, _ := strings.Cut(t, "/")
		p.SampleType = append(p.SampleType, &profile.ValueType{Type: typ, Unit: unit})
	}
	fns := map[string]*profile.Function{}
	locs := map[string]*profile.Location{}
	for _, s := range samples {
		ps := &profile.Sample{Value: s.vals}
		for _, f := range s.frames {
			loc := locs[f]
			if loc == nil {
				fn := &profile.Function{ID: uint64(len(fns) + 1), Name: f}
				fns[f] = fn
				p.Function = append(p.Function, fn)
				loc = &profile.Location{ID: uint64(len(locs) + 1), Line: []profile.Line{{Function: fn}}}
				locs[f] = loc
				p.Location = append(p.Location, loc)
			}
			ps.Location = append(ps.Location, loc)
		}
		p.Sample = append(p.Sample, ps)
	}
	return p
}

// add indexes a profile for a step (an index into Steps).
func (s *synth) add(typ, kind string, step int, p *profile.Profile) {
	file := fmt.Sprintf("profiles/%s-%s-%d.pb.gz", typ, kind, step)
	s.profs[file] = p
	rec := evidence.ProfileRecord{Type: typ, Kind: kind, Step: s.Steps[step].Index, File: file, StartMS: s.Steps[step].StartMS, EndMS: s.Steps[step].EndMS, T: s.Steps[step].EndMS}
	for i, t := range p.SampleType {
		var tot int64
		for _, smp := range p.Sample {
			tot += smp.Value[i]
		}
		rec.SampleTypes = append(rec.SampleTypes, t.Type+"/"+t.Unit)
		rec.Totals = append(rec.Totals, tot)
	}
	s.Profiles = append(s.Profiles, rec)
}

// cpuProf is a CPU profile with shares (per mille of 10 s of CPU).
func cpuProf(samples ...stack) *profile.Profile {
	for i := range samples {
		samples[i].vals = []int64{samples[i].vals[0], samples[i].vals[0] * 10_000_000}
	}
	return mkProfile([]string{"samples/count", "cpu/nanoseconds"}, samples...)
}

var serve = []string{"net/http.HandlerFunc.ServeHTTP", "net/http.(*conn).serve"}

func frames(fs ...string) []string { return append(fs, serve...) }

// hotCPU: one function burns 70% of the CPU.
func hotCPU() *profile.Profile {
	return cpuProf(
		st(700, frames(hotFn, handleFn)...),
		st(100, frames("encoding/json.Marshal", handleFn)...),
		st(50, frames("runtime.mallocgc", "runtime.newobject", handleFn)...),
		st(50, "runtime.gcDrain", "runtime.gcBgMarkWorker"),
		st(100, "syscall.Syscall", "internal/poll.(*FD).Read", "net/http.(*conn).serve"),
	)
}

// gcCPU: allocation and collection take half of the CPU; the feed's own
// work a quarter.
func gcCPU() *profile.Profile {
	return cpuProf(
		st(250, frames(feedFn, handleFn)...),
		st(200, frames("runtime.mallocgc", "runtime.makemap", feedFn, handleFn)...),
		st(50, frames("runtime.gcAssistAlloc", "runtime.mallocgc", "encoding/json.Marshal", feedFn, handleFn)...),
		st(250, "runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"),
		st(150, frames("encoding/json.(*encodeState).reflectValue", "encoding/json.Marshal", feedFn, handleFn)...),
		st(100, "syscall.Syscall", "internal/poll.(*FD).Write", "net/http.(*conn).serve"),
	)
}

func allocProf(top string, topBytes, otherBytes int64) *profile.Profile {
	return mkProfile([]string{"alloc_objects/count", "alloc_space/bytes"},
		stack{frames: frames("runtime.makemap", top, handleFn), vals: []int64{topBytes / 64, topBytes}},
		stack{frames: frames("bufio.NewReaderSize", "net/http.(*conn).readRequest"), vals: []int64{otherBytes / 4096, otherBytes}},
	)
}

func ruledOut(d Diagnosis, kind string) string {
	for _, r := range d.RuledOut {
		if r.Kind == kind {
			return r.Why
		}
	}
	return ""
}

func find(d Diagnosis, kind string) (report.Finding, bool) {
	for _, f := range d.Findings {
		if f.Kind == kind {
			return f, true
		}
	}
	return report.Finding{}, false
}

// ramp is a climb to a failing step: the last spec is the knee.
func ramp(knee stepSpec) []stepSpec {
	low := knee
	low.rps, low.met = knee.rps/4, true
	low.tgtCPU, low.lgCPU, low.busy = knee.tgtCPU/4, knee.lgCPU/4, knee.busy/3
	low.throttled = 0
	mid := knee
	mid.rps, mid.met = knee.rps/2, true
	mid.tgtCPU, mid.lgCPU, mid.busy = knee.tgtCPU/2, knee.lgCPU/2, knee.busy/2
	mid.throttled = knee.throttled / 4
	return []stepSpec{low, mid, knee}
}

type processCase struct {
	name  string
	in    func() *synth
	first string // kind of findings[0], "" = none
	fn    string // its locus.function when set
	// fire/absent: kinds that must / must not be reported (any severity).
	fire, absent []string
	// why: substrings of ruled-out reasons by kind.
	why map[string]string
}

func runProcessCases(t *testing.T, cases []processCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Run(tc.in().Input, processRules())
			var got []string
			for _, f := range d.Findings {
				got = append(got, fmt.Sprintf("%s(%s, conf %.2f, %s)", f.Kind, f.Severity, f.Confidence, f.Locus.Function))
			}
			t.Logf("findings %v, limited_by %s", got, d.LimitedBy)
			if tc.first == "" {
				if len(d.Findings) > 0 {
					t.Errorf("want no finding, got %v", got)
				}
			} else {
				if len(d.Findings) == 0 || d.Findings[0].Kind != tc.first {
					t.Fatalf("first finding %v, want %s; ruled out %+v", got, tc.first, d.RuledOut)
				}
				f0 := d.Findings[0]
				if tc.fn != "" && f0.Locus.Function != tc.fn {
					t.Errorf("locus.function %q, want %q", f0.Locus.Function, tc.fn)
				}
				checkFinding(t, f0)
			}
			for _, k := range tc.fire {
				if _, ok := find(d, k); !ok {
					t.Errorf("%s must fire; ruled out: %s", k, ruledOut(d, k))
				}
			}
			for _, k := range tc.absent {
				if f, ok := find(d, k); ok {
					t.Errorf("%s must not fire: %s", k, f.Title)
				}
			}
			for k, w := range tc.why {
				if r := ruledOut(d, k); !strings.Contains(r, w) {
					t.Errorf("%s ruled out %q, want it to mention %q", k, r, w)
				}
			}
		})
	}
}

// checkFinding holds every finding to the contract's shape.
func checkFinding(t *testing.T, f report.Finding) {
	t.Helper()
	if f.Title == "" || f.Recommendation == "" || len(f.Evidence) == 0 {
		t.Errorf("finding %s lacks title, recommendation or evidence: %+v", f.Kind, f)
	}
	if f.Impact < 0 || f.Impact > 1 || f.Confidence < MinConfidence || f.Confidence > 1 {
		t.Errorf("finding %s impact %.3f confidence %.3f out of range", f.Kind, f.Impact, f.Confidence)
	}
	if len(f.Evidence) > 0 && f.Evidence[0].Value != f.Impact {
		t.Errorf("finding %s: first evidence %v is not the impact %.3f", f.Kind, f.Evidence[0], f.Impact)
	}
	if f.ExpectedGain != nil && (f.ExpectedGain.Method == "" || f.ExpectedGain.Metric == "") {
		t.Errorf("finding %s: expected gain without metric or method: %+v", f.Kind, f.ExpectedGain)
	}
}

func TestCPURules(t *testing.T) {
	bound := stepSpec{rps: 800, tgtCPU: 1.75, lgCPU: 0.2, busy: 0.99, latMS: 40}
	withCPU := func(knee stepSpec, p func() *profile.Profile) func() *synth {
		return func() *synth {
			s := build(2, ramp(knee)...)
			if p != nil {
				for i := range s.Steps {
					s.add(evidence.ProfileCPU, evidence.ProfileFetched, i, p())
				}
			}
			return s
		}
	}
	idleLimited := bound
	idleLimited.tgtCPU, idleLimited.busy = 0.3, 0.3
	// Others hold the machine: the target gets 0.5 cores and waits 0.8 s/s
	// for more.
	contended := bound
	contended.tgtCPU, contended.rqWait, contended.busy = 0.5, 0.8, 1.0
	// A target limited elsewhere on the same machine: it waits for a CPU
	// too, but wants little.
	contendedSmall := bound
	contendedSmall.tgtCPU, contendedSmall.rqWait, contendedSmall.busy = 0.05, 0.25, 1.0
	// It wants more than half the machine but is not starved (runs more
	// than it waits): a target that shares the machine and is fine.
	contendedFed := bound
	contendedFed.tgtCPU, contendedFed.rqWait, contendedFed.busy = 1.0, 0.2, 1.0
	gomax := stepSpec{rps: 800, tgtCPU: 0.97, lgCPU: 0.3, busy: 0.35, latMS: 40, gomaxproc: 1}
	throttled := stepSpec{rps: 100, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.1, quota: 0.1, throttled: 0.9, latMS: 80}
	throttledBusy := stepSpec{rps: 100, tgtCPU: 1.5, lgCPU: 0.4, busy: 1.0, quota: 1.5, throttled: 0.6, latMS: 80}
	underQuota := stepSpec{rps: 100, tgtCPU: 0.3, lgCPU: 0.05, busy: 0.2, quota: 1.0, throttled: 0.02, latMS: 80}
	throttledNoSpend := stepSpec{rps: 100, tgtCPU: 0.4, lgCPU: 0.05, busy: 0.2, quota: 1.0, throttled: 0.3, latMS: 80}

	runProcessCases(t, []processCase{
		{name: "hot path", in: withCPU(bound, hotCPU), first: "cpu.hot-path", fn: hotFn, absent: []string{"gc.pressure", "cpu.throttled"},
			why: map[string]string{"gc.pressure": "below 30%", "cpu.throttled": "no CPU quota"}},
		{name: "hot function on a target limited elsewhere", in: withCPU(idleLimited, hotCPU), first: "",
			why: map[string]string{"cpu.hot-path": "below the 80%"}},
		{name: "CPU-bound on a machine others keep busy", in: withCPU(contended, hotCPU), first: "cpu.hot-path", fn: hotFn},
		{name: "busy machine, small target", in: withCPU(contendedSmall, hotCPU), first: "",
			why: map[string]string{"cpu.hot-path": "wanted only 0.30"}},
		{name: "busy machine, target not starved", in: withCPU(contendedFed, hotCPU), first: "",
			why: map[string]string{"cpu.hot-path": "below the 80%"}},
		{name: "allocation-heavy hot path", in: withCPU(bound, func() *profile.Profile {
			return cpuProf(
				st(650, frames(hotFn, handleFn)...),
				st(150, frames("runtime.mallocgc", hotFn, handleFn)...),
				st(150, "runtime.scanobject", "runtime.gcBgMarkWorker"),
				st(50, frames("encoding/json.Marshal", handleFn)...),
			)
		}), first: "cpu.hot-path", fn: hotFn, absent: []string{"gc.pressure"}, why: map[string]string{"gc.pressure": "cpu.hot-path"}},
		{name: "GOMAXPROCS is the limit", in: withCPU(gomax, hotCPU), first: "cpu.hot-path", fn: hotFn},
		{name: "GC dominates", in: func() *synth {
			s := withCPU(bound, gcCPU)()
			for i := range s.Steps {
				s.add(evidence.ProfileAllocs, evidence.ProfileDelta, i, allocProf(feedFn, 900<<20, 100<<20))
			}
			return s
		}, first: "gc.pressure", fn: feedFn, absent: []string{"cpu.hot-path"}, why: map[string]string{"cpu.hot-path": "gc.pressure"}},
		{name: "GC dominates, no allocs profile", in: withCPU(bound, gcCPU), first: "gc.pressure", fn: feedFn},
		{name: "GC heavy but CPU not the limit", in: withCPU(idleLimited, gcCPU), first: "",
			why: map[string]string{"gc.pressure": "CPU is not the limit"}},
		{name: "CPU-bound without a profile", in: withCPU(bound, nil), first: "cpu.hot-path", why: map[string]string{"gc.pressure": "could not check"}},
		{name: "spread-out CPU", in: withCPU(bound, func() *profile.Profile {
			var ss []stack
			for i := range 10 {
				ss = append(ss, st(100, frames(fmt.Sprintf("%s.step%d", appPkg, i), handleFn)...))
			}
			return cpuProf(ss...)
		}), first: "", why: map[string]string{"cpu.hot-path": "no application code path takes 30%"}},
		{name: "throttled by a quota on an idle machine", in: withCPU(throttled, hotCPU), first: "cpu.throttled", absent: []string{"cpu.hot-path"},
			why: map[string]string{"cpu.hot-path": "cpu.throttled"}},
		{name: "quota no tighter than a busy machine", in: withCPU(throttledBusy, hotCPU), first: "cpu.hot-path", absent: []string{"cpu.throttled"},
			why: map[string]string{"cpu.throttled": "no idle CPU"}},
		{name: "quota not reached", in: withCPU(underQuota, hotCPU), first: "", why: map[string]string{"cpu.throttled": "below 80%"}},
		{name: "throttled in bursts, quota not spent", in: withCPU(throttledNoSpend, hotCPU), first: "", why: map[string]string{"cpu.throttled": "of its 1.00-core quota"}},
	})
}

func TestCPUThrottledGain(t *testing.T) {
	s := build(4, ramp(stepSpec{rps: 100, tgtCPU: 0.5, lgCPU: 0.1, busy: 0.2, quota: 0.5, throttled: 0.8, latMS: 80})...)
	max := 50.0
	s.Capacity.MaxRPS = &max
	res := cpuThrottled{}.Check(s.Input)
	if len(res.Findings) != 1 {
		t.Fatalf("no finding: %s", res.RuledOut)
	}
	g := res.Findings[0].ExpectedGain
	if g == nil || g.From != 50 || g.To <= 100 || g.To > 50*4/0.5 {
		t.Errorf("gain %+v: want from 50 to between 2x and 8x", g)
	}
	if !strings.Contains(res.Findings[0].Recommendation, "0.50") {
		t.Errorf("recommendation does not name the quota: %s", res.Findings[0].Recommendation)
	}
}

// heapProf is a heap snapshot: leakFn retains leak bytes, cacheFn cache
// bytes, the rest base bytes.
func heapProf(leak, cache, base int64) *profile.Profile {
	return mkProfile([]string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"},
		stack{frames: frames("runtime.mapassign", leakFn, handleFn), vals: []int64{leak / 512, leak * 3, leak / 512, leak}},
		stack{frames: frames("runtime.makeslice", cacheFn, handleFn), vals: []int64{cache / 512, cache, cache / 512, cache}},
		stack{frames: []string{"runtime.malg", "runtime.newproc1"}, vals: []int64{base / 8192, base, base / 8192, base}},
	)
}

func TestMemoryLeak(t *testing.T) {
	const mb = 1 << 20
	// Steps up, a back-off, and one more: requests served grow 250, 750,
	// 1750, 2250 (x10 windows) ...
	rates := []float64{25, 50, 100, 50, 100, 50, 25}
	withHeap := func(heap func(i int, served float64) (leak, cache int64)) func() *synth {
		return func() *synth {
			var specs []stepSpec
			for i, r := range rates {
				specs = append(specs, stepSpec{rps: r, met: i < len(rates)-1, tgtCPU: 0.2, lgCPU: 0.1, busy: 0.3, latMS: 5})
			}
			s := build(2, specs...)
			served := 0.0
			for i := range s.Steps {
				served += s.Steps[i].OfferedRPS * stepMS / 1000
				leak, cache := heap(i, served)
				s.add(evidence.ProfileHeap, evidence.ProfileFetched, i, heapProf(leak, cache, 8*mb))
			}
			return s
		}
	}
	leaking := withHeap(func(_ int, served float64) (int64, int64) { return int64(served * 4096), 2 * mb })
	plateau := withHeap(func(i int, served float64) (int64, int64) {
		return 0, int64(min(served, 1500) * 8192) // fills by ~1,500 requests, then stays
	})
	released := withHeap(func(i int, served float64) (int64, int64) {
		if i >= len(rates)-2 { // the last passing step, and the failing one
			return 0, 2 * mb
		}
		return int64(served * 4096), 2 * mb
	})
	overload := withHeap(func(i int, served float64) (int64, int64) {
		if i == len(rates)-1 { // queued requests fill the heap of the failing step
			return 40 * mb, 2 * mb
		}
		return 0, 2 * mb
	})
	// More in flight: every site of the request path grows a little.
	spread := func() *synth {
		s := leaking()
		for i := range s.Steps {
			n := int64(i + 1)
			var ss []stack
			for j := range 10 {
				b := n * (1 << 20)
				ss = append(ss, stack{frames: frames("runtime.makeslice", fmt.Sprintf("%s.stage%d", appPkg, j), handleFn), vals: []int64{b / 512, b, b / 512, b}})
			}
			ss = append(ss, stack{frames: []string{"runtime.malg"}, vals: []int64{1, 8 * mb, 1, 8 * mb}})
			s.profs[s.Profiles[i].File] = mkProfile([]string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}, ss...)
			s.Profiles[i].Totals[3] = 10*n*(1<<20) + 8*mb
		}
		return s
	}
	small := withHeap(func(_ int, served float64) (int64, int64) { return int64(served * 64), 2 * mb })
	metricsOnly := func() *synth {
		var specs []stepSpec
		served := 0.0
		for i, r := range rates {
			served += r * stepMS / 1000
			specs = append(specs, stepSpec{rps: r, met: i < len(rates)-1, tgtCPU: 0.2, lgCPU: 0.1, busy: 0.3, latMS: 5, heapInuse: 10*mb + served*4096})
		}
		return build(2, specs...)
	}
	runProcessCases(t, []processCase{
		{name: "grows with requests, through the back-off", in: leaking, first: "memory.leak", fn: leakFn},
		{name: "cache warms up then plateaus", in: plateau, first: "", why: map[string]string{"memory.leak": "levels off"}},
		{name: "released at the end", in: released, first: "", why: map[string]string{"memory.leak": "released"}},
		{name: "heap fills only while overloaded", in: overload, first: "", why: map[string]string{"memory.leak": "less than"}},
		{name: "growth spread over the request path", in: spread, first: "", why: map[string]string{"memory.leak": "more work in flight"}},
		{name: "growth too small", in: small, first: "", why: map[string]string{"memory.leak": "less than"}},
		{name: "metrics only", in: metricsOnly, first: "memory.leak"},
		{name: "no heap evidence", in: func() *synth { return build(2, ramp(stepSpec{rps: 100, tgtCPU: 0.2, lgCPU: 0.1, busy: 0.3})...) },
			first: "", why: map[string]string{"memory.leak": "could not check"}},
	})
	// The leak is a lesser finding: it is never what limited the run.
	d := Run(leaking().Input, processRules())
	if f, ok := find(d, "memory.leak"); !ok || f.Severity == report.SeverityCritical || f.ExpectedGain == nil || f.ExpectedGain.Metric != "heap_bytes" {
		t.Errorf("leak finding %+v: want a non-critical finding with a heap_bytes gain", f)
	}
}

// lockProf is a mutex (or block) delta profile: the application function
// fn waits (or makes others wait) delayMS in total through via, and the
// runtime's own locks rtMS.
func lockProf(fn, via string, delayMS, rtMS float64) *profile.Profile {
	return mkProfile([]string{"contentions/count", "delay/nanoseconds"},
		stack{frames: frames(via, fn, handleFn), vals: []int64{int64(delayMS), int64(delayMS * 1e6)}},
		stack{frames: []string{"runtime.unlock", "runtime.gcBgMarkWorker"}, vals: []int64{int64(rtMS), int64(rtMS * 1e6)}},
	)
}

func TestLockContention(t *testing.T) {
	// 50 req/s over 10 s = 500 requests at the knee, 20 ms mean latency.
	knee := stepSpec{rps: 50, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.2, latMS: 20}
	with := func(knee stepSpec, mutexMS, blockMS float64, via string, cpu func() *profile.Profile) func() *synth {
		return func() *synth {
			s := build(2, ramp(knee)...)
			for i := range s.Steps {
				scale := 1.0
				if i < len(s.Steps)-1 {
					scale = 0.05 // little contention at low load
				}
				s.add(evidence.ProfileMutex, evidence.ProfileDelta, i, lockProf(quoteFn, "sync.(*Mutex).Unlock", mutexMS*scale, 50))
				s.add(evidence.ProfileBlock, evidence.ProfileDelta, i, lockProf(quoteFn, via, blockMS*scale, 0))
				if cpu != nil {
					s.add(evidence.ProfileCPU, evidence.ProfileFetched, i, cpu())
				}
			}
			return s
		}
	}
	cpuBusy := knee
	cpuBusy.tgtCPU, cpuBusy.busy = 1.8, 1.0
	runProcessCases(t, []processCase{
		// 500 requests x 15 ms = 7,500 ms of lock delay: 75% of latency.
		{name: "requests queue on one mutex", in: with(knee, 7500, 7000, "sync.(*Mutex).Lock", nil), first: "lock.contention", fn: quoteFn},
		{name: "block profile only names it", in: with(knee, 0, 6000, "sync.(*RWMutex).Lock", nil), first: "lock.contention", fn: quoteFn},
		// 500 x 0.5 ms: 2.5% of latency.
		{name: "lock wait too small to matter", in: with(knee, 250, 250, "sync.(*Mutex).Lock", nil), first: "",
			why: map[string]string{"lock.contention": "below 10%"}},
		{name: "runtime locks and channel waits are not contention", in: with(knee, 0, 9000, "runtime.chanrecv1", nil), first: "",
			why: map[string]string{"lock.contention": "no application lock site"}},
		{name: "contention on a CPU-saturated target is not the limit", in: with(cpuBusy, 7500, 7000, "sync.(*Mutex).Lock", hotCPU),
			first: "cpu.hot-path", fire: []string{"lock.contention"}},
		{name: "a library's lock (a pool's) is not the application's", in: func() *synth {
			s := build(2, ramp(knee)...)
			for i := range s.Steps {
				p := lockProf(quoteFn, "github.com/jackc/puddle/v2.(*Pool).Acquire", 7500, 0)
				s.add(evidence.ProfileMutex, evidence.ProfileDelta, i, p)
			}
			return s
		}, first: "", why: map[string]string{"lock.contention": "no application lock site"}},
		{name: "no profiles", in: func() *synth { return build(2, ramp(knee)...) }, first: "",
			why: map[string]string{"lock.contention": "could not check"}},
	})
}

// Endpoint attribution in a mixed load: two endpoints with equal request
// counts, one slow (it waits on a dependency and holds most of the request
// time) and one that burns the CPU.
const (
	searchFn  = appPkg + ".(*Server).search"
	cartFn    = appPkg + ".(*Server).cartQuote"
	getOrdFn  = appPkg + ".(*Server).getOrder"
	quoteHdFn = appPkg + ".(*Server).quote"
)

// mixEndpoints splits every window's requests evenly over the endpoints,
// the first fast (5 ms) and the others slow (200 ms).
func mixEndpoints(s *synth, names ...string) {
	for i := range s.Windows {
		w := &s.Windows[i]
		w.Endpoints = nil
		for j, n := range names {
			lat := 200.0
			if j == 0 {
				lat = 5
			}
			w.Endpoints = append(w.Endpoints, evidence.WindowEndpoint{Name: n, Requests: w.Requests / int64(len(names)), ServiceMS: evidence.WindowLatency{P50: lat}})
		}
	}
	s.Endpoints = nil
	for _, n := range names {
		s.Endpoints = append(s.Endpoints, report.Endpoint{Name: n})
	}
}

// mixedCPU: hot (per mille) in hotFn under the search handler, 150 in the
// cart handler's HTTP client, the rest in the server and the runtime.
func mixedCPU(hot int64, under string) *profile.Profile {
	return cpuProf(
		st(hot, frames(hotFn, under)...),
		st(150, frames("net/http.(*Transport).roundTrip", "net/http.(*Client).Do", cartFn)...),
		st(60, frames("encoding/json.Marshal", cartFn)...),
		st(100, "runtime.gcDrain", "runtime.gcBgMarkWorker"),
		st(690-hot, "syscall.Syscall", "internal/poll.(*FD).Read", "net/http.(*conn).serve"),
	)
}

func TestEndpointAttribution(t *testing.T) {
	bound := stepSpec{rps: 800, tgtCPU: 1.75, lgCPU: 0.2, busy: 0.99, latMS: 40}
	mixed := func(p func() *profile.Profile, endpoints ...string) func() *synth {
		return func() *synth {
			s := build(2, ramp(bound)...)
			mixEndpoints(s, endpoints...)
			for i := range s.Steps {
				s.add(evidence.ProfileCPU, evidence.ProfileFetched, i, p())
			}
			return s
		}
	}
	labelled := func() *profile.Profile {
		// A framework chokepoint does not know, with a route label per
		// request: no handler frame under a dispatch frame.
		p := cpuProf(
			st(400, hotFn, "example.com/fw.(*Engine).run", "net/http.(*conn).serve"),
			st(200, cartFn, "example.com/fw.(*Engine).run", "net/http.(*conn).serve"),
			st(400, "syscall.Syscall", "net/http.(*conn).serve"),
		)
		p.Sample[0].Label = map[string][]string{"http.route": {"/search"}}
		p.Sample[1].Label = map[string][]string{"http.route": {"/cart/quote"}}
		return p
	}
	shared := func() *profile.Profile {
		return cpuProf(
			st(200, frames(hotFn, searchFn)...),
			st(200, frames(hotFn, cartFn)...),
			st(600, "syscall.Syscall", "net/http.(*conn).serve"),
		)
	}
	tests := []struct {
		name     string
		in       func() *synth
		endpoint string // "" = none named
	}{
		{name: "hot handler is not the slow endpoint", in: mixed(func() *profile.Profile { return mixedCPU(400, searchFn) }, "GET /search", "GET /cart/quote"), endpoint: "GET /search"},
		{name: "slow endpoint listed first", in: mixed(func() *profile.Profile { return mixedCPU(400, searchFn) }, "GET /cart/quote", "GET /search"), endpoint: "GET /search"},
		{name: "scenario names", in: mixed(func() *profile.Profile { return mixedCPU(400, searchFn) }, "search products", "quote a cart"), endpoint: "search products"},
		{name: "handler named like no endpoint", in: mixed(func() *profile.Profile { return mixedCPU(400, searchFn) }, "GET /a", "GET /b"), endpoint: ""},
		{name: "pprof route labels", in: mixed(labelled, "GET /search", "GET /cart/quote"), endpoint: "GET /search"},
		{name: "hot helper shared evenly", in: mixed(shared, "GET /search", "GET /cart/quote"), endpoint: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Run(tt.in().Input, processRules())
			f, ok := find(d, "cpu.hot-path")
			if !ok {
				t.Fatalf("no cpu.hot-path: %s", ruledOut(d, "cpu.hot-path"))
			}
			checkFinding(t, f)
			if f.Locus.Function != hotFn || f.Locus.Endpoint != tt.endpoint {
				t.Errorf("locus %+v, want function %s on endpoint %q", f.Locus, hotFn, tt.endpoint)
			}
		})
	}

	// Near misses in the same mix: the hot function under the bar, and the
	// CPU spread over the search handler's many steps.
	spread := func() *profile.Profile {
		ss := []stack{st(150, frames("net/http.(*Transport).roundTrip", cartFn)...), st(250, "syscall.Syscall", "net/http.(*conn).serve")}
		for i := range 6 {
			ss = append(ss, st(100, frames(fmt.Sprintf("%s.stage%d", appPkg, i), searchFn)...))
		}
		return cpuProf(ss...)
	}
	runProcessCases(t, []processCase{
		{name: "mixed load, hot function under the bar", in: mixed(func() *profile.Profile { return mixedCPU(250, searchFn) }, "GET /search", "GET /cart/quote"),
			first: "", why: map[string]string{"cpu.hot-path": "no application code path takes 30%"}},
		{name: "mixed load, CPU spread over a handler's steps", in: mixed(spread, "GET /search", "GET /cart/quote"),
			first: "", why: map[string]string{"cpu.hot-path": "no application code path takes 30%"}},
	})
}

// TestMemoryLeakEndpoint: the leak's endpoint is the handler on the
// growing site's allocation stacks, not the busiest endpoint.
func TestMemoryLeakEndpoint(t *testing.T) {
	const mb = 1 << 20
	types := []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}
	heap := func(leakOrders, leakQuotes, base int64) *profile.Profile {
		return mkProfile(types,
			stack{frames: frames("runtime.mapassign", leakFn, getOrdFn), vals: []int64{1, leakOrders, 1, leakOrders}},
			stack{frames: frames("runtime.mapassign", leakFn, quoteHdFn), vals: []int64{1, leakQuotes, 1, leakQuotes}},
			stack{frames: frames("runtime.makeslice", cacheFn, quoteHdFn), vals: []int64{1, 2 * mb, 1, 2 * mb}},
			stack{frames: []string{"runtime.malg", "runtime.newproc1"}, vals: []int64{1, base, 1, base}},
		)
	}
	rates := []float64{25, 50, 100, 50, 100, 50, 25}
	with := func(ordersShare float64) func() *synth {
		return func() *synth {
			var specs []stepSpec
			for i, r := range rates {
				specs = append(specs, stepSpec{rps: r, met: i < len(rates)-1, tgtCPU: 0.2, lgCPU: 0.1, busy: 0.3, latMS: 5})
			}
			s := build(2, specs...)
			// The quote endpoint is the slow one: most request time.
			mixEndpoints(s, "GET /orders", "GET /quote")
			served := 0.0
			for i := range s.Steps {
				served += s.Steps[i].OfferedRPS * stepMS / 1000
				leak := served * 4096
				s.add(evidence.ProfileHeap, evidence.ProfileFetched, i, heap(int64(leak*ordersShare), int64(leak*(1-ordersShare)), 8*mb))
			}
			return s
		}
	}
	for _, tt := range []struct {
		name     string
		share    float64
		endpoint string
	}{
		{"kept by one handler", 1, "GET /orders"},
		{"mostly one handler", 0.8, "GET /orders"},
		{"split evenly", 0.5, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Run(with(tt.share)().Input, processRules())
			f, ok := find(d, "memory.leak")
			if !ok {
				t.Fatalf("no memory.leak: %s", ruledOut(d, "memory.leak"))
			}
			if f.Locus.Function != leakFn || f.Locus.Endpoint != tt.endpoint {
				t.Errorf("locus %+v, want function %s on endpoint %q", f.Locus, leakFn, tt.endpoint)
			}
			if tt.endpoint != "" && !strings.Contains(f.Title, tt.endpoint) {
				t.Errorf("title %q does not name %s", f.Title, tt.endpoint)
			}
		})
	}
}

// FuzzProcessRules feeds the process rules odd evidence (zero, negative,
// huge and NaN numbers): they must not panic, and what they report must
// stay in range.
func FuzzProcessRules(f *testing.F) {
	f.Add(800.0, 1.75, 0.2, 0.99, 0.0, 0.0, 40.0, 7500.0, int64(4096))
	f.Add(100.0, 0.1, 0.05, 0.1, 0.1, 0.9, 80.0, 0.0, int64(0))
	f.Add(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, int64(0))
	f.Add(-5.0, -1.0, 3.0, 2.0, -0.5, 1.5, -3.0, -1.0, int64(-100))
	f.Fuzz(func(t *testing.T, rps, tgt, lg, busy, quota, thr, lat, lockMS float64, leakPerReq int64) {
		knee := stepSpec{rps: rps, tgtCPU: tgt, lgCPU: lg, busy: busy, quota: quota, throttled: thr, latMS: lat, gomaxproc: quota * 2}
		s := build(2, ramp(knee)...)
		served := int64(0)
		for i := range s.Steps {
			served += s.Steps[i].Requests
			s.add(evidence.ProfileCPU, evidence.ProfileFetched, i, hotCPU())
			s.add(evidence.ProfileMutex, evidence.ProfileDelta, i, lockProf(quoteFn, "sync.(*Mutex).Unlock", lockMS, 1))
			s.add(evidence.ProfileHeap, evidence.ProfileFetched, i, heapProf(served*leakPerReq, 1<<20, 1<<20))
		}
		for _, r := range processRules() {
			res := r.Check(s.Input)
			for _, c := range res.Findings {
				if !(c.Impact >= 0 && c.Impact <= 1) || !(c.Confidence >= 0 && c.Confidence <= 1) {
					t.Errorf("%s: impact %v confidence %v out of range", c.Kind, c.Impact, c.Confidence)
				}
			}
		}
	})
}
