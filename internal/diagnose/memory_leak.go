package diagnose

import (
	"fmt"
	"math"
	"sort"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of memory.leak.
const (
	// leakMinPoints: heap measurements (one per step) needed to tell steady
	// growth from a step up; four give two halves of two. Snapshots taken
	// after a forced collection (heap profiles) are exact; the lowest
	// sample of a step from metrics or RSS is not (no collection may have
	// run in a short step, and the runtime grows its heap to the GC target
	// early in a run), so those need leakMinPointsSampled.
	leakMinPoints        = 4
	leakMinPointsSampled = 6
	// leakMinFitRSS: RSS also moves with the allocator's and the runtime's
	// own reserves; alone it must fit requests served closely.
	leakMinFitRSS = 0.95
	// leakMinGrowthBytes and leakMinGrowthShare: the retained heap grew by
	// at least 4 MiB and a tenth over the run. Smaller changes are within
	// what pools, caches and the runtime's own structures move by in a
	// short hunt.
	leakMinGrowthBytes = 4 << 20
	leakMinGrowthShare = 0.10
	// leakMinFit: heap against requests served fits a line at least this
	// well (r²): growth per request is roughly constant.
	leakMinFit = 0.80
	// leakLateShare: the growth per request over the latest third of the
	// run is at least half the run's: still growing, not a cache that has
	// warmed up and plateaued.
	leakLateShare = 0.5
	// leakReleased: a last value below this share of the peak means memory
	// was given back.
	leakReleased = 0.9
	// leakSiteMinShare: with heap profiles, one application allocation site
	// explains at least this share of the growth (a leak is one thing kept;
	// in-flight work spreads over every site of the request path).
	leakSiteMinShare = 0.3
)

type memoryLeak struct{}

func (memoryLeak) Kind() string { return "memory.leak" }

// heapPoint is the retained heap after some requests served.
type heapPoint struct {
	T        int64
	Requests float64
	Bytes    float64
	Step     int                     // the run's step index
	Rec      *evidence.ProfileRecord // the heap profile, nil for metrics
}

func (r memoryLeak) Check(in *Input) Result {
	pts, src := in.heapSeries()
	if need := minPoints(src); len(pts) < need {
		return Result{RuledOut: fmt.Sprintf("could not check: %d measurements of the retained heap in steps the target kept up with, %d needed (heap profiles per step, or go_memstats_heap_inuse_bytes / RSS samples)", len(pts), need)}
	}
	first, last := pts[0], pts[len(pts)-1]
	peak := first.Bytes
	for _, p := range pts {
		peak = math.Max(peak, p.Bytes)
	}
	growth := last.Bytes - first.Bytes
	served := last.Requests - first.Requests
	if peak-first.Bytes >= leakMinGrowthBytes && last.Bytes < leakReleased*peak {
		return Result{RuledOut: fmt.Sprintf("the retained heap (%s) peaked at %s and came back to %s: memory is released", src, mib(peak), mib(last.Bytes))}
	}
	if growth < leakMinGrowthBytes || growth < leakMinGrowthShare*first.Bytes {
		return Result{RuledOut: fmt.Sprintf("the retained heap (%s) went from %s to %s over %.0f requests, less than %s and %s growth", src, mib(first.Bytes), mib(last.Bytes), served, mib(leakMinGrowthBytes), pct(leakMinGrowthShare))}
	}
	slope := growth / math.Max(served, 1)
	k := len(pts) - max(2, len(pts)/3)
	late := pts[k:]
	lateReq := late[len(late)-1].Requests - late[0].Requests
	lateGrowth := late[len(late)-1].Bytes - late[0].Bytes
	if lateReq <= 0 {
		return Result{RuledOut: "could not check: no requests served over the latest heap measurements"}
	}
	lateSlope := lateGrowth / lateReq
	if lateSlope < leakLateShare*slope {
		return Result{RuledOut: fmt.Sprintf("the retained heap (%s) grew by %s, but only %.0f bytes per request over the latest %.0f requests (%s of the run's %.0f): it levels off, as a cache warming up does", src, mib(growth), lateSlope, lateReq, pct(lateSlope/slope), slope)}
	}
	fit, r2 := fitLine(pts)
	minFit := leakMinFit
	if src == "proc" {
		minFit = leakMinFitRSS
	}
	if fit <= 0 || r2 < minFit {
		return Result{RuledOut: fmt.Sprintf("the retained heap (%s) grew by %s but not in step with requests served (r² %.2f, below %.2f)", src, mib(growth), r2, minFit)}
	}
	slope = fit
	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Resource: "memory"},
		Evidence: []report.Evidence{
			{Source: src, What: "share of the retained heap grown during the run", Value: round3(unit(growth / last.Bytes)), Unit: "ratio"},
			{Source: src, What: "retained heap growth per request served", Value: round1(slope), Unit: "bytes"},
			{Source: src, What: "retained heap at the start", Value: round1(first.Bytes / (1 << 20)), Unit: "MiB"},
			{Source: src, What: "retained heap at the end", Value: round1(last.Bytes / (1 << 20)), Unit: "MiB"},
			{Source: src, What: "fit of heap against requests served", Value: round3(r2), Unit: "r²"},
			{Source: src, What: "growth per request over the latest measurements", Value: round1(lateSlope), Unit: "bytes"},
		},
		Impact: round3(unit(growth / last.Bytes)),
		ExpectedGain: &report.ExpectedGain{Metric: "heap_bytes", From: math.Round(last.Bytes), To: math.Round(first.Bytes),
			Method: fmt.Sprintf("the heap retained before the load: the growth of %.0f bytes per request stops when what is kept is bounded or released", slope)},
	}
	conf := 0.3 + 0.2 // grows with requests; still growing at the end
	if r2 >= leakMinFitRSS {
		conf += 0.1
	}
	site, siteOK := in.growingSite(pts, growth)
	if src == "pprof" && (!siteOK || site.share < leakSiteMinShare) {
		// A leak is one thing kept: growth spread over many sites is the
		// buffers and goroutines of more work in flight.
		top := "no application site grew"
		if siteOK {
			top = fmt.Sprintf("the largest, %s, holds %s", site.fn, pct(site.share))
		}
		return Result{RuledOut: fmt.Sprintf("the retained heap grew by %s, but no allocation site holds %s of the growth (%s): more work in flight, not one thing kept", mib(growth), pct(leakSiteMinShare), top)}
	}
	f.Locus.Endpoint = in.dominantRunEndpoint()
	if siteOK {
		f.Locus.Function = site.fn
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "share of the growth allocated by " + site.fn, Value: round3(site.share), Unit: "ratio"})
		conf += 0.2
		if ep, entry := in.entryEndpoint(site.entries); ep != "" {
			f.Locus.Endpoint = ep
			if entry != "" {
				f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "share of the site's growth allocated under the handler " + entry, Value: round3(site.entries[0].Share), Unit: "ratio"})
			}
		}
	}
	if src != "proc" && in.rssGrows(first.T, last.T) {
		conf += 0.1
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "resident memory grew over the same span", Value: 1, Unit: "bool"})
	}
	where := "the allocation site that keeps growing"
	if f.Locus.Function != "" {
		where = f.Locus.Function
		f.Title = fmt.Sprintf("Retained heap grows by %.0f bytes per request and is not released; %s holds the growth", slope, where)
		if f.Locus.Endpoint != "" {
			f.Title += ", allocated serving " + f.Locus.Endpoint
		}
	} else {
		f.Title = fmt.Sprintf("Retained heap grows by %.0f bytes per request and is not released", slope)
	}
	f.Recommendation = fmt.Sprintf("Bound what %s keeps: give the map, slice or cache it appends to a size limit or an expiry (an LRU), or delete entries when their request ends; compare two heap profiles (go tool pprof -base heap-A.pb.gz heap-B.pb.gz) to confirm. At this rate the heap grows by %s per million requests.", where, mib(slope*1e6))
	f.Confidence = round3(min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: false}}}
}

// heapSeries is the retained heap over the run: heap profiles (taken after
// a forced collection) when there are enough, else the lowest
// go_memstats_heap_inuse_bytes of each step (the floor after collections),
// else the lowest RSS of each step. Each point carries the requests served
// by then. It names its source.
//
// Only steps where the target kept up count (unloaded): an overloaded step
// and the back-off that drains it hold queued requests, buffers and
// goroutines in the heap, which grows and would look like a leak.
func (in *Input) heapSeries() ([]heapPoint, string) {
	var pts []heapPoint
	for i := range in.Profiles {
		rec := &in.Profiles[i]
		if rec.Type != evidence.ProfileHeap || rec.Kind != evidence.ProfileFetched || !in.unloadedStep(rec.Step) {
			continue
		}
		b, ok := rec.Total("inuse_space")
		if !ok {
			continue
		}
		t := rec.EndMS
		if t == 0 {
			t = rec.T
		}
		pts = append(pts, heapPoint{T: t, Bytes: float64(b), Step: rec.Step, Rec: rec})
	}
	src := "pprof"
	if len(pts) < leakMinPoints {
		pts, src = in.stepFloors(func(start, end int64) (float64, bool) {
			return in.metricMin("go_memstats_heap_inuse_bytes", start, end)
		}), "metrics"
	}
	if len(pts) < leakMinPointsSampled {
		if rss := in.stepFloors(func(start, end int64) (float64, bool) {
			return in.rssMin(start, end)
		}); len(rss) > len(pts) {
			pts, src = rss, "proc"
		}
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].T < pts[b].T })
	for i := range pts {
		pts[i].Requests = float64(in.requestsUpTo(pts[i].T))
	}
	return pts, src
}

// stepFloors evaluates floor over each unloaded step of the run (warm-up
// included), at the step's end.
func (in *Input) stepFloors(floor func(start, end int64) (float64, bool)) []heapPoint {
	type span struct{ start, end int64 }
	spans := map[int]*span{}
	for _, w := range in.Windows {
		s := spans[w.Step]
		if s == nil {
			s = &span{start: w.StartMS, end: w.EndMS}
			spans[w.Step] = s
		}
		s.start = min(s.start, w.StartMS)
		s.end = max(s.end, w.EndMS)
	}
	var out []heapPoint
	for step, s := range spans {
		if !in.unloadedStep(step) {
			continue
		}
		if v, ok := floor(s.start, s.end); ok {
			out = append(out, heapPoint{T: s.end, Bytes: v, Step: step})
		}
	}
	return out
}

// metricMin is the lowest value of a metric (summed over label sets) among
// the scrapes in (start, end]: a scrape at start belongs to the step before.
func (in *Input) metricMin(name string, start, end int64) (float64, bool) {
	best, ok := 0.0, false
	for _, p := range in.metricSeries(name) {
		if p.T > start && p.T <= end && (!ok || p.Value < best) {
			best, ok = p.Value, true
		}
	}
	return best, ok
}

// rssMin is the target's lowest resident memory in (start, end].
func (in *Input) rssMin(start, end int64) (float64, bool) {
	best, ok := 0.0, false
	for _, r := range in.ProcIn(evidence.RoleTarget, start, end) {
		if r.T > start && r.Process != nil && r.Process.RSSBytes > 0 && (!ok || float64(r.Process.RSSBytes) < best) {
			best, ok = float64(r.Process.RSSBytes), true
		}
	}
	return best, ok
}

// rssGrows reports whether the target's resident memory near end is above
// what it was near start.
func (in *Input) rssGrows(start, end int64) bool {
	var first, last float64
	for _, r := range in.Proc {
		if r.Role != evidence.RoleTarget || r.Process == nil || r.Process.RSSBytes <= 0 {
			continue
		}
		if r.T <= start || first == 0 {
			first = float64(r.Process.RSSBytes)
		}
		if r.T <= end {
			last = float64(r.Process.RSSBytes)
		}
	}
	return first > 0 && last > first
}

// leakSite is the allocation site whose retained heap grew the most.
type leakSite struct {
	fn    string
	share float64 // of the heap's total growth
	// entries is the site's growth by the entry point (handler) of its
	// allocation stacks.
	entries []profilesum.EntryCost
}

// growingSite compares the first and last heap profiles of the series: the
// application allocation site whose retained bytes grew the most, its
// share of the total growth, and the handlers it grew under.
func (in *Input) growingSite(pts []heapPoint, growth float64) (leakSite, bool) {
	var a, b *evidence.ProfileRecord
	for _, p := range pts {
		if p.Rec == nil {
			continue
		}
		if a == nil {
			a = p.Rec
		}
		b = p.Rec
	}
	if a == nil || a == b || growth <= 0 {
		return leakSite{}, false
	}
	pa, err := in.openProfile(*a)
	if err != nil {
		return leakSite{}, false
	}
	pb, err := in.openProfile(*b)
	if err != nil {
		return leakSite{}, false
	}
	o := profilesum.Options{}
	gs, err := profilesum.HeapGrowthBetween(pa, pb, o)
	if err != nil {
		return leakSite{}, false
	}
	for _, g := range gs {
		if g.Application && g.Delta > 0 {
			site := leakSite{fn: g.Function, share: clamp01(float64(g.Delta) / growth)}
			site.entries, _ = profilesum.SiteEntryGrowth(pa, pb, g.Function, o)
			return site, true
		}
	}
	return leakSite{}, false
}

// dominantRunEndpoint is the endpoint that carried at least endpointDominant
// of all the run's requests, else "".
func (in *Input) dominantRunEndpoint() string {
	by := map[string]int64{}
	var tot int64
	for _, w := range in.Windows {
		for _, e := range w.Endpoints {
			by[e.Name] += e.Requests
			tot += e.Requests
		}
	}
	for name, n := range by {
		if tot > 0 && float64(n) >= endpointDominant*float64(tot) {
			return name
		}
	}
	return ""
}

// fitLine fits bytes = a + slope*requests by least squares and returns the
// slope and r².
func fitLine(pts []heapPoint) (slope, r2 float64) {
	n := float64(len(pts))
	var sx, sy float64
	for _, p := range pts {
		sx += p.Requests
		sy += p.Bytes
	}
	mx, my := sx/n, sy/n
	var sxx, sxy, syy float64
	for _, p := range pts {
		dx, dy := p.Requests-mx, p.Bytes-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0, 0
	}
	slope = sxy / sxx
	r2 = sxy * sxy / (sxx * syy)
	return slope, r2
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// unloadedStep reports whether the run's step index ran without overload:
// a listed step that met the objective, or a warm-up step before the first
// failing one (back-off steps after a failure are still draining it).
func (in *Input) unloadedStep(index int) bool {
	firstFail := -1
	for _, s := range in.Steps {
		if s.Index == index {
			return s.MetSLO
		}
		if !s.MetSLO && (firstFail < 0 || s.Index < firstFail) {
			firstFail = s.Index
		}
	}
	return firstFail < 0 || index < firstFail
}

// minPoints is how many heap measurements a source needs.
func minPoints(src string) int {
	if src == "pprof" {
		return leakMinPoints
	}
	return leakMinPointsSampled
}
