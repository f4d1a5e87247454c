package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of lock.contention.
const (
	// lockMinShare: lock delay per request is at least this share of the
	// mean request latency at the knee to be worth naming (below, the wait
	// is noise next to the work).
	lockMinShare = 0.10
	// lockLimitingShare: from this share on, requests spend most of their
	// time waiting for the lock: the lock serialises them and is what caps
	// throughput (when CPU is not saturated).
	lockLimitingShare = 0.50
	// lockMaxGain bounds the gain estimate: removing a wait can at most
	// give back the latency it takes, and Little's law at fixed concurrency
	// overstates it when the wait is nearly all of the latency.
	lockMaxGain = 10.0
	// lockRise: delay per request at the knee at least this many times the
	// low-load delay shows the contention grows with load.
	lockRise = 2.0
)

// lockVias are the calls through which an application function waits for
// (block profile) or releases (mutex profile) a lock. Waits on channels,
// condition variables, wait groups and pools are not lock contention.
var lockVias = []string{
	"sync.(*Mutex).Lock", "sync.(*Mutex).Unlock", "sync.(*Mutex).TryLock",
	"sync.(*RWMutex).Lock", "sync.(*RWMutex).Unlock", "sync.(*RWMutex).RLock", "sync.(*RWMutex).RUnlock",
	"sync.(*Mutex).lockSlow", "sync.(*Mutex).unlockSlow", "sync.(*RWMutex).rUnlockSlow",
	"internal/sync.(*Mutex).Lock", "internal/sync.(*Mutex).Unlock",
	"internal/sync.(*Mutex).lockSlow", "internal/sync.(*Mutex).unlockSlow",
}

func isLockVia(via string) bool {
	for _, v := range lockVias {
		if via == v {
			return true
		}
	}
	return false
}

type lockContention struct{}

func (lockContention) Kind() string { return "lock.contention" }

// lockSite is the top application lock site of one profile over a step.
type lockSite struct {
	profile  string // evidence.ProfileMutex or ProfileBlock
	site     profilesum.LockSite
	requests int64
	perReqMS float64                // the site's delay per request served over the span
	entries  []profilesum.EntryCost // the site's delay by the handler it was under
}

// topLockSite reads a step's delta profile of typ (mutex or block): the
// application function with the most lock delay (through a lock call when
// the profile is a block profile), with delay per request.
func (in *Input) topLockSite(typ string, step int) (lockSite, bool) {
	rec, ok := in.ProfileFor(typ, evidence.ProfileDelta, step)
	if !ok {
		return lockSite{}, false
	}
	p, err := in.openProfile(rec)
	if err != nil {
		return lockSite{}, false
	}
	sites, _, err := profilesum.LockDelay(p, profilesum.Options{})
	if err != nil {
		return lockSite{}, false
	}
	n := in.requestsBetween(rec.StartMS, rec.EndMS)
	for _, s := range sites {
		if !s.Application || s.Delay <= 0 {
			continue
		}
		// Only delay through a lock the application takes itself counts:
		// a block profile also records channel, select and condition
		// waits, and both profiles charge a library's internal locks
		// (a connection pool's, a logger's) and the runtime's to the
		// application caller, through the library or runtime call.
		if !isLockVia(s.Via) {
			continue
		}
		ls := lockSite{profile: typ, site: s, requests: n}
		ls.entries, _, _ = profilesum.SiteEntries(p, "delay", s.Function, profilesum.Options{})
		if n > 0 {
			ls.perReqMS = float64(s.Delay) / 1e6 / float64(n)
		}
		return ls, true
	}
	return lockSite{profile: typ, requests: n}, true
}

func (r lockContention) Check(in *Input) Result {
	step := in.FocusStep()
	if step < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	mu, muOK := in.topLockSite(evidence.ProfileMutex, step)
	bl, blOK := in.topLockSite(evidence.ProfileBlock, step)
	if !muOK && !blOK {
		return Result{RuledOut: "could not check: no mutex or block profile of the step at the knee (Go: runtime.SetMutexProfileFraction and runtime.SetBlockProfileRate, with net/http/pprof; give --pprof URL)"}
	}
	lat := in.meanLatencyMS(step)
	if lat <= 0 {
		return Result{RuledOut: "could not check: no request latency at the knee"}
	}
	// The mutex profile charges the wait to the holder's Unlock, the block
	// profile to the waiter's Lock: both measure the same waits. Take the
	// larger per request (each is sampled).
	best := mu
	if !muOK || (blOK && bl.perReqMS > mu.perReqMS) {
		best = bl
	}
	share := best.perReqMS / lat
	if best.site.Function == "" || share < lockMinShare {
		fn := best.site.Function
		if fn == "" {
			fn = "no application lock site"
		}
		return Result{RuledOut: fmt.Sprintf("lock delay %.2f ms per request (%s), %s of the %.1f ms mean latency at %.0f req/s, below %s", best.perReqMS, fn, pct(share), lat, in.Steps[step].OfferedRPS, pct(lockMinShare))}
	}
	fn := best.site.Function
	share = unit(share)
	// The endpoint whose handler waits at the lock, else where the step's
	// request time went.
	ep := in.dominantEndpoint(step)
	if e, entry := in.entryEndpoint(best.entries); entry != "" {
		ep = e
	}
	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Function: fn, Resource: "lock", Endpoint: ep},
		Title: fmt.Sprintf("Requests wait %.1f ms each for a lock taken in %s: %s of their latency", best.perReqMS, fn, pct(share)),
		Evidence: []report.Evidence{
			{Source: "pprof", What: "lock delay per request as a share of mean latency at the knee", Value: round3(share), Unit: "ratio"},
			{Source: "pprof", What: "lock delay per request (" + best.profile + " profile, " + fn + ")", Value: round3(best.perReqMS), Unit: "ms"},
			{Source: "loadgen", What: "mean request latency at the knee", Value: round3(lat), Unit: "ms"},
			{Source: "pprof", What: "share of the profile's delay at this site", Value: round3(best.site.Share), Unit: "ratio"},
		},
		Impact: round3(share),
	}
	conf := 0.5
	// The other profile agrees on the function.
	other, otherOK := bl, blOK
	if best.profile == evidence.ProfileBlock {
		other, otherOK = mu, muOK
	}
	if otherOK && other.site.Function == fn {
		conf += 0.2
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "lock delay per request in the " + other.profile + " profile", Value: round3(other.perReqMS), Unit: "ms"})
	}
	if base := in.BaselineStep(); base >= 0 && base != step {
		bm, _ := in.topLockSite(best.profile, base)
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "lock delay per request at low load", Value: round3(bm.perReqMS), Unit: "ms"})
		if bm.perReqMS*lockRise <= best.perReqMS {
			conf += 0.1
		}
	}
	limiting := share >= lockLimitingShare
	if sat, _, ok := cpuSaturation(in, step); ok {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "target CPU share of what it can use at the knee", Value: round3(sat.share), Unit: "ratio"})
		if bound, _ := cpuBound(in, step, sat); bound {
			// A saturated CPU stretches every critical section: the
			// contention may be a symptom; the CPU rules name the cause.
			limiting = false
			conf -= 0.2
		} else {
			conf += 0.2
		}
	}
	via := best.site.Via
	if via == "" {
		via = "the lock"
	}
	f.Recommendation = fmt.Sprintf("Hold the lock in %s for less time: %s is contended. Move slow work (I/O, calls to other services, allocation, encoding) out of the critical section, copy what is needed under the lock and release it, or split the state into shards with a lock each (or use sync.RWMutex / atomic values for read-mostly state).", fn, strings.TrimPrefix(via, "internal/"))
	if limiting {
		if base := capacityBase(in); base > 0 {
			to := base / math.Max(1-share, 1/lockMaxGain)
			f.ExpectedGain = &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(to),
				Method: fmt.Sprintf("Little's law at the same concurrency: latency without the %.1f ms lock wait (%s of it) serves %.1fx the requests", best.perReqMS, pct(share), to/base)}
		}
	}
	f.Confidence = round3(min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}
