package profilesum

import (
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// gcFrames are runtime functions that do garbage-collection work: the
// background mark workers, assists, mark/scan internals and sweepers (names
// from Go's runtime/mgc*.go, as the runtime's own pprof output shows them).
var gcFramePrefixes = []string{
	"runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.gcAssistAlloc",
	"runtime.scanobject", "runtime.scanblock", "runtime.scanstack", "runtime.scanframeworker",
	"runtime.markroot", "runtime.greyobject", "runtime.gcMarkDone", "runtime.gcMarkTermination",
	"runtime.gcStart", "runtime.bgsweep", "runtime.sweepone", "runtime.bgscavenge",
	"runtime.gcFlushBgCredit", "runtime.wbBufFlush", "runtime.(*gcWork).", "runtime.(*gcBits).",
	"runtime.gcResetMarkState", "runtime.findObject", "runtime.tryDeferToSpanScan",
	"runtime.(*spanInlineMarkBits).", "runtime.scanSpan", "runtime.gcSweep",
}

// allocFramePrefixes are the runtime's allocation entry points.
var allocFramePrefixes = []string{
	"runtime.mallocgc", "runtime.newobject", "runtime.newarray", "runtime.makeslice",
	"runtime.growslice", "runtime.makemap", "runtime.mapassign", "runtime.rawstring",
	"runtime.rawbyteslice", "runtime.rawruneslice", "runtime.concatstring", "runtime.slicebytetostring",
	"runtime.(*mcache).refill", "runtime.(*mcentral).", "runtime.(*mheap).alloc",
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// GCStats is the share of a CPU profile spent collecting garbage and
// allocating. A sample counts once: as GC when any frame is GC work
// (an assist inside mallocgc is GC), else as allocation when any frame is
// an allocation entry point.
type GCStats struct {
	Total      int64   `json:"total"` // CPU nanoseconds in the profile
	GC         int64   `json:"gc"`
	Alloc      int64   `json:"alloc"`
	GCShare    float64 `json:"gc_share"`
	AllocShare float64 `json:"alloc_share"`
	Share      float64 `json:"share"` // GC + allocation
}

// GC measures garbage collection and allocation in a CPU profile.
func GC(p *profile.Profile) (GCStats, error) {
	i, err := SampleIndex(p, "cpu")
	if err != nil {
		if i, err = SampleIndex(p, ""); err != nil {
			return GCStats{}, err
		}
	}
	var st GCStats
	for s, v := range values(p, i) {
		st.Total += v
		isGC, isAlloc := false, false
		for _, f := range frames(s) {
			if hasAnyPrefix(f, gcFramePrefixes) {
				isGC = true
				break
			}
			if hasAnyPrefix(f, allocFramePrefixes) {
				isAlloc = true
			}
		}
		switch {
		case isGC:
			st.GC += v
		case isAlloc:
			st.Alloc += v
		}
	}
	st.GCShare = share(st.GC, st.Total)
	st.AllocShare = share(st.Alloc, st.Total)
	st.Share = share(st.GC+st.Alloc, st.Total)
	return st, nil
}

// LockSite is contention charged to the application function that took
// (or released) the lock.
type LockSite struct {
	Function string `json:"function"`
	// Via is the frame the application function called where the delay was
	// recorded: sync.(*Mutex).Lock in a block profile, sync.(*Mutex).Unlock
	// in a mutex profile, runtime.chanrecv1, sync.(*WaitGroup).Wait ...
	// (the largest by delay when several).
	Via         string  `json:"via,omitempty"`
	Delay       int64   `json:"delay_ns"`
	Contentions int64   `json:"contentions"`
	Share       float64 `json:"share"` // of the profile's total delay
	Application bool    `json:"application"`
}

// LockDelay charges a mutex or block profile's delay to the innermost
// application function on each stack: the function that takes the lock
// (block profile: the caller of sync.(*Mutex).Lock) or releases it (mutex
// profile: Go records the delay at Unlock, in the holder that made others
// wait, which with `defer mu.Unlock()` is the same function).
func LockDelay(p *profile.Profile, o Options) ([]LockSite, int64, error) {
	di, err := SampleIndex(p, "delay")
	if err != nil {
		return nil, 0, err
	}
	ci, cerr := SampleIndex(p, "contentions")
	type acc struct {
		LockSite
		via map[string]int64
	}
	by := map[string]*acc{}
	var tot int64
	for _, s := range p.Sample {
		if di >= len(s.Value) {
			continue
		}
		d := s.Value[di]
		tot += d
		fn, via, app := o.appFrame(frames(s))
		a := by[fn]
		if a == nil {
			a = &acc{LockSite: LockSite{Function: fn, Application: app}, via: map[string]int64{}}
			by[fn] = a
		}
		a.Delay += d
		if cerr == nil && ci < len(s.Value) {
			a.Contentions += s.Value[ci]
		}
		if via != "" {
			a.via[via] += d
		}
	}
	out := make([]LockSite, 0, len(by))
	for _, a := range by {
		var best int64 = -1
		for v, d := range a.via {
			if d > best || (d == best && v < a.Via) {
				a.Via, best = v, d
			}
		}
		a.Share = share(a.Delay, tot)
		out = append(out, a.LockSite)
	}
	sort.SliceStable(out, func(x, y int) bool {
		if out[x].Delay != out[y].Delay {
			return out[x].Delay > out[y].Delay
		}
		return out[x].Function < out[y].Function
	})
	return out, tot, nil
}

// HeapSite is heap in use charged to an application allocation site.
type HeapSite struct {
	Function     string  `json:"function"`
	InuseBytes   int64   `json:"inuse_bytes"`
	InuseObjects int64   `json:"inuse_objects"`
	Share        float64 `json:"share"` // of all bytes in use
	Application  bool    `json:"application"`
}

// HeapSites returns bytes and objects in use by allocation site (the
// innermost application frame of each allocation stack), largest first.
func HeapSites(p *profile.Profile, o Options) ([]HeapSite, int64, error) {
	bi, err := SampleIndex(p, "inuse_space")
	if err != nil {
		return nil, 0, err
	}
	oi, oerr := SampleIndex(p, "inuse_objects")
	by := map[string]*HeapSite{}
	var tot int64
	for _, s := range p.Sample {
		if bi >= len(s.Value) {
			continue
		}
		b := s.Value[bi]
		tot += b
		fn, _, app := o.appFrame(frames(s))
		h := by[fn]
		if h == nil {
			h = &HeapSite{Function: fn, Application: app}
			by[fn] = h
		}
		h.InuseBytes += b
		if oerr == nil && oi < len(s.Value) {
			h.InuseObjects += s.Value[oi]
		}
	}
	out := make([]HeapSite, 0, len(by))
	for _, h := range by {
		h.Share = share(h.InuseBytes, tot)
		out = append(out, *h)
	}
	sort.SliceStable(out, func(x, y int) bool {
		if out[x].InuseBytes != out[y].InuseBytes {
			return out[x].InuseBytes > out[y].InuseBytes
		}
		return out[x].Function < out[y].Function
	})
	return out, tot, nil
}

// HeapGrowth is how one allocation site's heap in use changed between two
// heap snapshots.
type HeapGrowth struct {
	Function    string `json:"function"`
	FromBytes   int64  `json:"from_bytes"`
	ToBytes     int64  `json:"to_bytes"`
	Delta       int64  `json:"delta_bytes"`
	FromObjects int64  `json:"from_objects"`
	ToObjects   int64  `json:"to_objects"`
	Application bool   `json:"application"`
}

// HeapGrowthBetween compares heap in use by site in two heap snapshots of
// the same process, the largest growth first.
func HeapGrowthBetween(prev, cur *profile.Profile, o Options) ([]HeapGrowth, error) {
	a, _, err := HeapSites(prev, o)
	if err != nil {
		return nil, err
	}
	b, _, err := HeapSites(cur, o)
	if err != nil {
		return nil, err
	}
	by := map[string]*HeapGrowth{}
	for _, h := range a {
		by[h.Function] = &HeapGrowth{Function: h.Function, FromBytes: h.InuseBytes, FromObjects: h.InuseObjects, Application: h.Application}
	}
	for _, h := range b {
		g := by[h.Function]
		if g == nil {
			g = &HeapGrowth{Function: h.Function, Application: h.Application}
			by[h.Function] = g
		}
		g.ToBytes, g.ToObjects = h.InuseBytes, h.InuseObjects
	}
	out := make([]HeapGrowth, 0, len(by))
	for _, g := range by {
		g.Delta = g.ToBytes - g.FromBytes
		out = append(out, *g)
	}
	sort.SliceStable(out, func(x, y int) bool {
		if out[x].Delta != out[y].Delta {
			return out[x].Delta > out[y].Delta
		}
		return out[x].Function < out[y].Function
	})
	return out, nil
}

// Goroutines counts goroutines by their innermost application frame (where
// application code is waiting or running); goroutines with no application
// frame are counted under their outermost frame.
func Goroutines(p *profile.Profile, o Options) (Attribution, error) {
	return Attribute(p, "", o)
}
