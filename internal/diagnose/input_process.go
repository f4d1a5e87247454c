package diagnose

import (
	"fmt"
	"math"
	"sort"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/google/pprof/profile"
)

// Helpers the process and Go-runtime rules share: CPU against its limit,
// the CPU profile split into application code and GC, metrics by name, and
// request counts over a time range.

// minCPULimit keeps a share computable when everything was taken by the
// generator (a twentieth of a core is below any target worth measuring).
const minCPULimit = 0.05

// saturation is the target's CPU against the CPU it could get at one step.
type saturation struct {
	used, limit, share float64
	// quota is the cgroup quota in cores (0 when unlimited); gomaxprocs the
	// Go runtime's GOMAXPROCS from metrics (0 when unknown); idle the
	// machine's idle cores (-1 when not measured).
	quota, gomaxprocs, idle float64
	// limitedBy names what sets limit: "quota", "gomaxprocs" or "cores".
	limitedBy string
	// wait is the time the target's threads sat runnable waiting for a
	// CPU, per second (schedstat; 0 when not measured).
	wait float64
	why  string
}

// cpuSaturation measures how much of the CPU it could get the target used
// at a step. The limit is the smallest of its cgroup quota, its GOMAXPROCS
// (metric go_sched_gomaxprocs_threads) and the machine's cores minus what
// the load generator used (they share the machine). ok is false without
// CPU samples of the target.
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
	s := saturation{used: tgt.CPUCores, quota: tgt.QuotaCores, idle: -1, wait: tgt.RunQueueWait}
	s.limit, s.limitedBy = cores, "cores"
	s.why = fmt.Sprintf("%.2f of %.0f cores", tgt.CPUCores, cores)
	if lg := in.procStats(evidence.RoleLoadgen, step); lg.N > 0 {
		s.limit = cores - lg.CPUCores
		s.why = fmt.Sprintf("%.2f of the %.2f cores the load generator left (%.2f used by it)", tgt.CPUCores, s.limit, lg.CPUCores)
	}
	start, end := in.StepSpan(step)
	if g, ok := in.metricMean("go_sched_gomaxprocs_threads", start, end); ok && g > 0 {
		s.gomaxprocs = g
		if g < s.limit {
			s.limit, s.limitedBy = g, "gomaxprocs"
			s.why = fmt.Sprintf("%.2f of its GOMAXPROCS of %.0f", tgt.CPUCores, g)
		}
	}
	if tgt.QuotaCores > 0 && tgt.QuotaCores < s.limit {
		s.limit, s.limitedBy = tgt.QuotaCores, "quota"
		s.why = fmt.Sprintf("%.2f of its %.2f-core quota", tgt.CPUCores, tgt.QuotaCores)
	}
	if busy, ok := in.machineBusy(step); ok {
		s.idle = math.Max(0, (1-busy)*cores)
	}
	s.limit = math.Max(s.limit, minCPULimit)
	s.share = clamp01(s.used / s.limit)
	return s, s.why, true
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

// metricMean is the mean over the scrapes in [start, end] of a metric's
// value summed over its label sets; ok is false when no scrape had it.
func (in *Input) metricMean(name string, start, end int64) (float64, bool) {
	return in.metricAgg(name, start, end, func(s evidence.MetricSample) (float64, bool) { return s.Value, true })
}

// metricRate is the mean per-second rate of a counter (summed over its
// label sets) over the scrapes in [start, end].
func (in *Input) metricRate(name string, start, end int64) (float64, bool) {
	return in.metricAgg(name, start, end, func(s evidence.MetricSample) (float64, bool) {
		if s.Rate == nil {
			return 0, false
		}
		return *s.Rate, true
	})
}

func (in *Input) metricAgg(name string, start, end int64, val func(evidence.MetricSample) (float64, bool)) (float64, bool) {
	var sum float64
	n := 0
	for _, r := range in.Metrics {
		if r.T < start || r.T > end || r.Error != "" {
			continue
		}
		var v float64
		found := false
		for _, s := range r.Samples {
			if s.Name != name {
				continue
			}
			if x, ok := val(s); ok && !math.IsNaN(x) && !math.IsInf(x, 0) {
				v += x
				found = true
			}
		}
		if found {
			sum += v
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// metricPoint is one scrape's value of a metric (summed over label sets).
type metricPoint struct {
	T     int64
	Value float64
}

// metricSeries returns a metric's value per scrape over the whole run.
func (in *Input) metricSeries(name string) []metricPoint {
	var out []metricPoint
	for _, r := range in.Metrics {
		if r.Error != "" {
			continue
		}
		var v float64
		found := false
		for _, s := range r.Samples {
			if s.Name == name && !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0) {
				v += s.Value
				found = true
			}
		}
		if found {
			out = append(out, metricPoint{T: r.T, Value: v})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].T < out[b].T })
	return out
}

// requestsBetween counts the requests completed in the load windows that
// end in (start, end]: the requests a delta profile over that span saw.
func (in *Input) requestsBetween(start, end int64) int64 {
	var n int64
	for _, w := range in.Windows {
		t := w.EndMS
		if t == 0 {
			t = w.T
		}
		if t > start && t <= end {
			n += w.Requests
		}
	}
	return n
}

// requestsUpTo counts the requests completed in windows ending at or
// before t: what the target had served by then (in this run).
func (in *Input) requestsUpTo(t int64) int64 {
	return in.requestsBetween(math.MinInt64, t)
}

// meanLatencyMS is a step's mean request latency by Little's law (mean
// in-flight requests over throughput), falling back to its p50.
func (in *Input) meanLatencyMS(step int) float64 {
	s := in.Steps[step]
	if s.AchievedRPS > 0 && s.InflightMean > 0 {
		return s.InflightMean / s.AchievedRPS * 1000
	}
	return s.Latency.P50
}

// cpuProfile is a step's CPU profile read for the CPU rules.
type cpuProfile struct {
	// top is the hot path: the application function where the most CPU
	// concentrates, with everything it calls (profilesum.HotPaths), and
	// the entry points (handlers) of its stacks.
	top profilesum.HotPath
	// topOwn is top's share without its samples spent allocating,
	// collecting garbage, or serialising and sending responses (those are
	// gc.pressure's and payload.large's): the work an algorithmic fix in
	// the function would remove.
	topOwn float64
	gc     profilesum.GCStats
	// seconds of CPU in the profile.
	seconds float64
}

// cpuProfileAt reads a step's CPU profile; ok is false without a usable
// profile with an application frame.
func (in *Input) cpuProfileAt(step int) (cpuProfile, bool) {
	rec, ok := in.ProfileFor(evidence.ProfileCPU, "", step)
	if !ok || in.OpenProfile == nil {
		return cpuProfile{}, false
	}
	p, err := in.OpenProfile(rec.File)
	if err != nil {
		return cpuProfile{}, false
	}
	paths, tot, err := profilesum.HotPaths(p, "cpu", profilesum.HotPathOptions{Aside: payloadFrames})
	if err != nil || tot <= 0 {
		return cpuProfile{}, false
	}
	gc, err := profilesum.GC(p)
	if err != nil {
		return cpuProfile{}, false
	}
	cp := cpuProfile{gc: gc, seconds: float64(tot) / 1e9}
	if len(paths) == 0 {
		return cp, false
	}
	cp.top = paths[0]
	cp.topOwn = paths[0].Own(tot)
	return cp, true
}

// Endpoint attribution from profiles: the entry points (handlers, or
// request labels) of a cost's stacks, matched to the load's endpoints by
// their route words.
const (
	// entryMajority: the entry point carrying more than half of a cost
	// (a hot path's CPU, a site's heap growth) is where it is spent; a cost
	// split more evenly (a helper every handler calls) names no endpoint
	// from the profile.
	entryMajority = 0.5
)

// endpointNames lists the load's endpoints (the report's, else the
// timeline's).
func (in *Input) endpointNames() []string {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, e := range in.Endpoints {
		add(e.Name)
	}
	if len(out) == 0 {
		for _, w := range in.Windows {
			for _, e := range w.Endpoints {
				add(e.Name)
			}
		}
	}
	return out
}

// entryEndpoint names the endpoint whose handler carries most of a cost:
// its largest entry point when it holds more than entryMajority of it and
// its name matches one endpoint's route (profilesum.MatchEndpoint); else
// the endpoint that carried endpointDominant of the run's requests (then
// every cost is its). The second result is the entry point used ("" when
// none).
func (in *Input) entryEndpoint(entries []profilesum.EntryCost) (endpoint, entry string) {
	if len(entries) > 0 {
		top := entries[0]
		if !top.Entry.IsZero() && top.Share > entryMajority {
			if ep, ok := profilesum.MatchEndpoint(top.Entry, in.endpointNames()); ok {
				return ep, top.Entry.Name
			}
		}
	}
	return in.dominantRunEndpoint(), ""
}

// openProfile opens the profile a record names.
func (in *Input) openProfile(rec evidence.ProfileRecord) (*profile.Profile, error) {
	if in.OpenProfile == nil {
		return nil, fmt.Errorf("profiles cannot be read")
	}
	return in.OpenProfile(rec.File)
}

// Endpoint attribution for process findings (a profile names a function,
// not the request that ran it).
const (
	// endpointDominant: an endpoint with this share of a step's requests
	// is where the step's cost goes (single-endpoint hunts, or one route
	// carrying the traffic).
	endpointDominant = 0.9
	// endpointTimeShare: otherwise the endpoint holding at least this share
	// of the step's request time (requests x median service time) is named.
	endpointTimeShare = 0.5
)

// dominantEndpoint names the endpoint where a step's request time went,
// "" when no single endpoint dominates.
func (in *Input) dominantEndpoint(step int) string {
	type acc struct {
		req  int64
		time float64
	}
	by := map[string]*acc{}
	var req int64
	var tm float64
	for _, w := range in.WindowsIn(step) {
		for _, e := range w.Endpoints {
			a := by[e.Name]
			if a == nil {
				a = &acc{}
				by[e.Name] = a
			}
			a.req += e.Requests
			a.time += float64(e.Requests) * e.ServiceMS.P50
			req += e.Requests
			tm += float64(e.Requests) * e.ServiceMS.P50
		}
	}
	if req == 0 {
		return ""
	}
	best, bestTime := "", -1.0
	for name, a := range by {
		if float64(a.req) >= endpointDominant*float64(req) {
			return name
		}
		if a.time > bestTime || (a.time == bestTime && name < best) {
			best, bestTime = name, a.time
		}
	}
	if tm > 0 && bestTime >= endpointTimeShare*tm {
		return best
	}
	return ""
}

// unit bounds a share to [0, 1], NaN to 0 (odd evidence must not make an
// out-of-range impact).
func unit(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return clamp01(v)
}

// cpuKnee picks the step the CPU rules read: the step at the knee
// (FocusStep), unless CPU is not its limit while it is at the highest
// passing step below it; else the one of the two where the target used the
// larger share of the CPU it could get. A failing step is often cut short,
// or stalls as the target falls over, so its averages can read lower than
// those of the step that led to it. ok is false without CPU samples of the
// target.
func (in *Input) cpuKnee() (int, saturation, bool) {
	focus := in.FocusStep()
	if focus < 0 {
		return -1, saturation{}, false
	}
	best, bestSat, ok := -1, saturation{}, false
	for _, c := range in.kneeSteps() {
		s, _, found := cpuSaturation(in, c)
		if !found {
			continue
		}
		if bound, _ := cpuBound(in, c, s); bound {
			return c, s, true
		}
		if !ok || s.share > bestSat.share {
			best, bestSat, ok = c, s, true
		}
	}
	return best, bestSat, ok
}

// kneeSteps are the steps read as "at the knee": FocusStep, then the
// highest passing step below it when there is one.
func (in *Input) kneeSteps() []int {
	focus := in.FocusStep()
	if focus < 0 {
		return nil
	}
	out := []int{focus}
	if prev := in.lastGoodStep(); prev >= 0 && prev != focus && in.Steps[prev].OfferedRPS < in.Steps[focus].OfferedRPS {
		out = append(out, prev)
	}
	return out
}

// cpuProfileNear reads the CPU profile of a step, else of the other knee
// step (a step cut short may have none).
func (in *Input) cpuProfileNear(step int) (cpuProfile, int, bool) {
	if cp, ok := in.cpuProfileAt(step); ok {
		return cp, step, true
	}
	for _, s := range in.kneeSteps() {
		if s >= 0 && s != step {
			if cp, ok := in.cpuProfileAt(s); ok {
				return cp, s, true
			}
		}
	}
	cp, _ := in.cpuProfileAt(step)
	return cp, step, false
}
