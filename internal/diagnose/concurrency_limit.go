package diagnose

import (
	"fmt"
	"math"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of concurrency.limit.
const (
	// concQueueFactor: at the knee the mean service time is at least this
	// multiple of the low-load one, so requests waited at least as long as
	// they were served: the same factor as the capacity model's knee
	// (internal/capacity kneeFactor, Kleinrock's point of maximum power).
	concQueueFactor = 2.0
	// concCapShare: the achieved rate of the saturated windows is at most
	// this share of the arrival rate: throughput stopped following the
	// offered load (10% leaves room for one-second window noise).
	concCapShare = 0.9
	// concWorkersOnCPU: when the target's CPU divided by the N workers is
	// at least this, the workers compute rather than wait: N threads that
	// are CPU-bound (a single-threaded server burning its one core) are a
	// CPU limit, not a queue in front of idle capacity.
	concWorkersOnCPU = 0.7
	// concCPUIdle: below this share of the CPU it could get, the target is
	// clearly not CPU-bound (half of cpuSaturated), a stronger signal.
	concCPUIdle = 0.5
	// concLockShare: mutex wait at least this share of the requests'
	// service time at the knee means a lock is what queues (lock.contention).
	concLockShare = 0.25
	// concDBShare: statements' execution time at least this share of the
	// low-load service time, or busy database sessions at least this share
	// of N, means the workers are held by the database (a busy database or
	// an exhausted connection pool), not by a limit of their own.
	concDBShare = 0.5
	// concWaitersShare: at least this share of the application's
	// goroutines parked in one queue (channel, select, semaphore) names
	// the function that holds the queue.
	concWaitersShare = 0.3
	// concMinBaseRequests: a low-load step needs this many requests for
	// its mean service time to mean anything.
	concMinBaseRequests = 30
	// concMinN: a limit below one worker is an estimate gone wrong.
	concMinN = 0.5
)

type concurrencyLimit struct{}

var _ Rule = concurrencyLimit{}

func (concurrencyLimit) Kind() string { return "concurrency.limit" }

// concEstimate is the Little's-law reading of a capped target.
type concEstimate struct {
	focus, base int
	xSat        float64 // achieved rate of the saturated windows
	arrivals    float64 // arrival rate in those windows
	s0          float64 // low-load mean service time, seconds
	sFocus      float64 // median window mean service time at the knee, seconds
	n           float64 // in-service concurrency: xSat x s0
	capRatio    float64 // lowest responses/arrivals of a failing step
	capped      bool    // capRatio <= concCapShare
	queue       float64 // sFocus / s0
}

// estimateConcurrency reads the capped throughput and the low-load service
// time; why says what was missing when ok is false.
func estimateConcurrency(in *Input) (concEstimate, string, bool) {
	var e concEstimate
	if !in.Breached() {
		return e, "the objective was met at every step: no capacity limit to explain", false
	}
	e.focus = in.FocusStep()
	e.s0, e.base = in.clLowLoadService()
	if e.base < 0 {
		return e, fmt.Sprintf("could not check: no step met the objective with %d requests or more (no low-load service time)", concMinBaseRequests), false
	}
	e.xSat, e.arrivals, e.capRatio = in.clSaturatedRate()
	e.sFocus = in.clWindowService(e.focus)
	if e.xSat <= 0 || e.s0 <= 0 || e.sFocus <= 0 {
		return e, "could not check: no completed requests at the knee", false
	}
	e.n = e.xSat * e.s0
	e.queue = e.sFocus / e.s0
	e.capped = e.capRatio >= 0 && e.capRatio <= concCapShare
	return e, "", true
}

// clWindowService is the median over a step's windows of their mean service
// time (seconds): one window stalled by the machine does not make a queue.
func (in *Input) clWindowService(step int) float64 {
	var xs []float64
	for _, w := range in.WindowsIn(step) {
		if w.Requests <= 0 {
			continue
		}
		secs := float64(w.EndMS-w.StartMS) / 1000
		if secs <= 0 {
			secs = 1
		}
		xs = append(xs, w.InflightMean*secs/float64(w.Requests))
	}
	return clMedian(xs)
}

// clLowLoadService is the lowest mean service time (seconds) of the steps
// that met the objective with enough requests, and that step: at low load a
// request is served without queueing (the lowest rates can read slower
// than the next ones, idle machines wake slowly, so the minimum is taken).
func (in *Input) clLowLoadService() (float64, int) {
	best, at := 0.0, -1
	for i, s := range in.Steps {
		if !s.MetSLO {
			continue
		}
		l := in.clLoadAt(i)
		if l.Requests < concMinBaseRequests {
			continue
		}
		if m := l.meanServiceSec(); m > 0 && (at < 0 || m < best) {
			best, at = m, i
		}
	}
	return best, at
}

// clSaturatedRate reads the steps that missed the objective, in the
// windows where arrivals were due: the median achieved and arrival rates,
// and the lowest ratio of responses to arrivals of any such step (how far
// throughput fell behind the offered load where it fell furthest). The
// last arrival window of a step is left out when there are others: the
// generator counts the queue draining after the schedule ends in it.
func (in *Input) clSaturatedRate() (xSat, arrivals, capRatio float64) {
	var ach, arr []float64
	capRatio = -1 // no failing step with arrivals
	for i, s := range in.Steps {
		if s.MetSLO {
			continue
		}
		type win struct{ done, due, secs float64 }
		var ws []win
		for _, w := range in.WindowsIn(i) {
			secs := float64(w.EndMS-w.StartMS) / 1000
			if secs <= 0 {
				secs = 1
			}
			rate := float64(w.Arrivals) / secs
			if w.Arrivals <= 0 || (w.OfferedRPS != nil && *w.OfferedRPS > 0 && rate < 0.5**w.OfferedRPS) {
				continue
			}
			ws = append(ws, win{float64(w.Requests), float64(w.Arrivals), secs})
		}
		if len(ws) > 1 {
			ws = ws[:len(ws)-1]
		}
		var done, due float64
		for _, w := range ws {
			ach = append(ach, w.done/w.secs)
			arr = append(arr, w.due/w.secs)
			done += w.done
			due += w.due
		}
		if due > 0 && (capRatio < 0 || done/due < capRatio) {
			capRatio = done / due
		}
	}
	return clMedian(ach), clMedian(arr), capRatio
}

func (r concurrencyLimit) Check(in *Input) Result {
	e, why, ok := estimateConcurrency(in)
	if !ok {
		return Result{RuledOut: why}
	}
	focus := e.focus
	rate := in.Steps[focus].OfferedRPS
	if e.queue < concQueueFactor {
		return Result{RuledOut: fmt.Sprintf("requests did not queue at %.0f req/s: mean service time %.1f ms against %.1f ms at low load (x%.1f, below x%.0f)", rate, e.sFocus*1000, e.s0*1000, e.queue, concQueueFactor)}
	}
	if !e.capped {
		return Result{RuledOut: fmt.Sprintf("throughput kept up with the offered load past the knee (%s of arrivals answered where it fell furthest behind, above %s): not capped", pct(e.capRatio), pct(concCapShare))}
	}
	if e.n < concMinN {
		return Result{RuledOut: fmt.Sprintf("throughput %.0f req/s x low-load service time %.2f ms = %.2f requests in service: too few to be a concurrency limit", e.xSat, e.s0*1000, e.n)}
	}
	n := max(1, int(math.Round(e.n)))

	// Step aside for the neighbours that also make requests queue.
	fl := in.clLoadAt(focus)
	bw, bwOK := in.clBlockWaits(focus)
	blockShare := func(kind int) float64 {
		if !bwOK || fl.ServiceSec <= 0 {
			return 0
		}
		return float64(bw.By[kind]) / 1e9 / fl.ServiceSec
	}
	// Requests seen blocked in a queue of the application's own is direct
	// evidence: it overrides a CPU-bound reading that comes from a machine
	// others keep busy (the target waiting for a CPU it does not use), not
	// one where the target itself uses the CPU it can get.
	queued := blockShare(clWaitQueue) >= concWaitersShare
	sat, satWhy, cpuOK := cpuSaturation(in, focus)
	if cpuOK {
		if bound, boundWhy := cpuBound(in, focus, sat); bound && (!queued || sat.share >= cpuSaturated) {
			return Result{RuledOut: "the target is CPU-bound at the knee (" + boundWhy + "): cpu.hot-path, not a concurrency limit"}
		}
		if perWorker := sat.used / e.n; perWorker >= concWorkersOnCPU {
			return Result{RuledOut: fmt.Sprintf("the ~%d requests in service keep %.2f cores busy (%s of each worker's time on CPU, at least %s): the workers compute rather than wait, a CPU limit of %d threads", n, sat.used, pct(perWorker), pct(concWorkersOnCPU), n)}
		}
	}
	if d, ok := in.clMutexDelay(focus); ok && fl.ServiceSec > 0 {
		if share := d / fl.ServiceSec; share >= concLockShare {
			return Result{RuledOut: fmt.Sprintf("requests waited on mutexes for %s of their service time at the knee (%.0f ms per request): lock.contention, not a concurrency limit", pct(share), d/float64(max(1, fl.Requests))*1000)}
		}
	}
	pg := in.clPGAt(focus)
	dbPerReq := 0.0
	if pg.Measured && e.xSat > 0 {
		dbPerReq = pg.ExecMSPerSec / 1000 / math.Max(fl.rps(), 1e-9)
		if dbPerReq >= concDBShare*e.s0 {
			return Result{RuledOut: fmt.Sprintf("the database executes %.1f ms per request, %s of the low-load service time (%.1f ms): the database holds the workers", dbPerReq*1000, pct(dbPerReq/e.s0), e.s0*1000)}
		}
		if pg.ActivityCount > 0 && pg.BusySessions >= concDBShare*e.n && pg.BusySessions >= 1 {
			return Result{RuledOut: fmt.Sprintf("%.1f database sessions were busy on average at the knee for ~%d requests in service: the workers hold database connections (db.pool-exhausted or a busy database), not a limit of their own", pg.BusySessions, n)}
		}
	}
	if c := in.clConnLoss(focus); c.any() {
		return Result{RuledOut: "connections were lost at the knee (" + c.why() + "): net.connection-limit"}
	}
	if s := blockShare(clWaitDBPool); s >= concWaitersShare {
		fn, _ := bw.top(clWaitDBPool)
		return Result{RuledOut: fmt.Sprintf("requests waited for a database connection in %s for %s of their service time: db.pool-exhausted", fn, pct(s))}
	}
	if s := blockShare(clWaitLock); s >= concLockShare {
		fn, _ := bw.top(clWaitLock)
		return Result{RuledOut: fmt.Sprintf("requests waited for a mutex in %s for %s of their service time: lock.contention", fn, pct(s))}
	}
	gw, gwOK := in.clGoroutineWaiters(focus)
	if gwOK {
		if s := gw.share(clWaitDBPool); s >= concWaitersShare {
			fn, c := gw.top(clWaitDBPool)
			return Result{RuledOut: fmt.Sprintf("%d request goroutines (%s) wait for a database connection in %s: db.pool-exhausted", c, pct(s), fn)}
		}
		if s := gw.share(clWaitLock); s >= concWaitersShare {
			fn, c := gw.top(clWaitLock)
			return Result{RuledOut: fmt.Sprintf("%d request goroutines (%s) wait for a mutex in %s: lock.contention", c, pct(s), fn)}
		}
	}
	if disk, why := in.clDiskBusy(focus); disk {
		return Result{RuledOut: "requests wait on the disk (" + why + "): io.disk"}
	}
	if top, _ := clLargestPayload(fl); top != nil && top.meanBytesIn() >= payloadLargeBytes {
		return Result{RuledOut: fmt.Sprintf("responses of %s average %.0f KiB: the time goes into moving them (payload.large), not into waiting for a slot", top.Name, top.meanBytesIn()/1024)}
	}

	f := report.Finding{
		Kind:  r.Kind(),
		Locus: report.Locus{Resource: "concurrency", Limit: n, Endpoint: in.dominantEndpoint(focus)},
	}
	impact := clamp01(1 - e.s0/e.sFocus)
	f.Evidence = []report.Evidence{
		{Source: "loadgen", What: "share of service time at the knee spent queueing for the limit (1 - low-load / knee service time)", Value: round3(impact), Unit: "ratio"},
		{Source: "loadgen", What: "requests in service by Little's law (saturated throughput x low-load service time)", Value: round3(e.n), Unit: "requests"},
		{Source: "loadgen", What: "throughput past the knee", Value: round1(e.xSat), Unit: "req/s"},
		{Source: "loadgen", What: "arrival rate past the knee", Value: round1(e.arrivals), Unit: "req/s"},
		{Source: "loadgen", What: "mean service time at low load", Value: round3(e.s0 * 1000), Unit: "ms"},
		{Source: "loadgen", What: "mean service time at the knee", Value: round3(e.sFocus * 1000), Unit: "ms"},
		{Source: "loadgen", What: "mean requests in flight at the knee", Value: round1(fl.inflight()), Unit: "requests"},
	}
	// Throughput capped while requests queue: the shape of a limit, but
	// also of any saturated resource, so CPU evidence is needed to name it.
	conf := 0.4
	f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "responses per arrival where throughput fell furthest behind", Value: round3(e.capRatio), Unit: "ratio"})
	if cpuOK {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "target CPU share of what it can use at the knee (" + satWhy + ")", Value: round3(sat.share), Unit: "ratio"})
		conf += 0.15
		if sat.share < concCPUIdle {
			conf += 0.05
		}
	}
	if pg.Measured {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "postgres", What: "statement execution time per request at the knee", Value: round3(dbPerReq * 1000), Unit: "ms"})
		conf += 0.05
	}
	switch qs := blockShare(clWaitQueue); {
	case queued:
		fn, _ := bw.top(clWaitQueue)
		f.Locus.Function = fn
		concEntryEndpoint(in, &f, bw)
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "share of the requests' service time blocked on a channel or semaphore in " + fn, Value: round3(math.Min(qs, 1)), Unit: "ratio"})
		conf += 0.2
	case gwOK && gw.share(clWaitQueue) >= concWaitersShare:
		fn, c := gw.top(clWaitQueue)
		f.Locus.Function = fn
		concEntryEndpoint(in, &f, gw)
		f.Evidence = append(f.Evidence, report.Evidence{Source: "pprof", What: "request goroutines parked on a channel or semaphore in " + fn, Value: float64(c), Unit: "goroutines"})
		conf += 0.2
	}
	where := "the target"
	if f.Locus.Function != "" {
		where = f.Locus.Function
	}
	f.Title = fmt.Sprintf("Concurrency limit of about %d in %s caps throughput at %.0f req/s while the CPU idles", n, where, e.xSat)
	if !cpuOK {
		f.Title = fmt.Sprintf("Concurrency limit of about %d in %s caps throughput at %.0f req/s", n, where, e.xSat)
	}
	need := int(math.Ceil(2 * e.xSat * e.s0 * 1.25))
	f.Recommendation = fmt.Sprintf("Requests queue for about %d concurrent slots, each held %.1f ms per request (Little's law: %.0f req/s x %.1f ms). "+
		"Raise the limit (worker pool, semaphore, thread pool, server worker processes or connection cap) to at least %d to serve twice today's throughput with 25%% headroom, "+
		"or shorten the work done while a slot is held.", n, e.s0*1000, e.xSat, e.s0*1000, need)
	if f.Locus.Function != "" {
		f.Recommendation += fmt.Sprintf(" The waiters are parked in %s.", f.Locus.Function)
	}
	if cpuOK && sat.used > 0 && e.xSat > 0 {
		perReq := sat.used / e.xSat
		to := sat.limit * cpuSaturated / perReq
		if base := capacityBase(in); base > 0 && to > base {
			f.ExpectedGain = &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(to),
				Method: fmt.Sprintf("Little's law and the next resource: without the limit, throughput rises until the CPU saturates at %s of %.2f cores, %.2f ms of CPU per request", pct(cpuSaturated), sat.limit, perReq*1000)}
		}
	}
	f.Impact = round3(impact)
	f.Confidence = round3(math.Min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: true}}}
}

// concEntryEndpoint names the endpoint whose handler queues for the limit,
// when the profile ties most of the queueing to one.
func concEntryEndpoint(in *Input, f *report.Finding, w clWaiters) {
	if ep, entry := in.entryEndpoint(w.entries(clWaitQueue)); entry != "" {
		f.Locus.Endpoint = ep
	}
}
