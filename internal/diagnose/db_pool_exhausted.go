package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of db.pool-exhausted.
const (
	// pgPoolFullShare: the pool counts as exhausted when connections in use
	// reached this share of its maximum in some scrape of the step (gauges
	// are sampled once a second, so the mean understates a full pool).
	pgPoolFullShare = 0.9
	// pgPoolMinEmptyShare: at least this share of acquires found no idle
	// connection and had to wait...
	pgPoolMinEmptyShare = 0.2
	// pgPoolMinWaitMS: ... or the mean wait per acquire reached this (a free
	// connection is handed out in microseconds; a millisecond is a queue).
	pgPoolMinWaitMS = 1.0
	// pgPoolWaitGrowth: the wait per acquire must also have grown this much
	// since low load (a pool that always waits a little is not the knee).
	pgPoolWaitGrowth = 10.0
	// pgPoolDBIdleShare: the database is "not busy" when fewer than this
	// share of the pool's connections run a statement on average (the rest
	// are held by the application while it does something else).
	pgPoolDBIdleShare = 0.5
	// pgPoolLockShare: when this share of the pool's connections wait on
	// locks, the lock is the cause (db.lock-wait), not the pool size.
	pgPoolLockShare = 0.3
	// pgPoolTargetFactor: the pool is sized for this multiple of the rate
	// where the objective broke, and pgPoolBurstFactor covers the bursts
	// around Little's mean (arrivals are not evenly spaced).
	pgPoolTargetFactor = 2.0
	pgPoolBurstFactor  = 2.0
	// pgPoolMachineBusy: with the machine's CPU this busy, connections are
	// held longer because their holders wait for a CPU; a larger pool then
	// helps little (the finding stays, with less confidence).
	pgPoolMachineBusy = 0.9
	// pgPoolShortHoldMS: connections held this briefly before the knee
	// (Little's law at the fastest step that met the objective) go back
	// to the pool after a few fast statements; such a pool fills only when
	// the whole process slows under overload, which a larger pool does
	// not cure. pgPoolMinInUse: the hold is measured only with at least
	// one connection in use on average (1 Hz gauges are noise below).
	pgPoolShortHoldMS = 2.0
	pgPoolMinInUse    = 1.0
)

type dbPoolExhausted struct{}

func (dbPoolExhausted) Kind() string { return "db.pool-exhausted" }

func (r dbPoolExhausted) Check(in *Input) Result {
	focus := in.FocusStep()
	if focus < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	if !in.Breached() {
		// A pool that fills while every step meets the objective costs
		// nothing users feel: not a bottleneck, and not worth leading a
		// report (a memory leak or nothing at all may be the story).
		if s := in.Steps[focus]; s.Latency.P99 > 0 {
			return Result{RuledOut: fmt.Sprintf("the objective held at every step (p99 %.1f ms at %s): a busy pool is not a problem yet", s.Latency.P99, in.dbStepLabel(focus))}
		}
		return Result{RuledOut: "the objective held at every step: a busy pool is not a problem yet"}
	}
	pool := in.pgPoolStats(focus)
	if !pool.Found {
		if why := in.pgUnavailable(); why != "" {
			return Result{RuledOut: why + "; and the target exports no connection-pool metrics"}
		}
		return Result{RuledOut: "could not check: the target exports no connection-pool metrics (pgxpool, database/sql DBStats, HikariCP or OpenTelemetry db.client.connection.* on --metrics)"}
	}
	if !pool.HasWaits && !pool.HasWaitTime {
		return Result{RuledOut: "could not check: the pool metrics have no acquire wait count or wait time (" + strings.Join(pool.Names, ", ") + ")"}
	}
	full := pool.Max > 0 && pool.InUseMax >= pgPoolFullShare*pool.Max
	if pool.Max > 0 && !full {
		return Result{RuledOut: fmt.Sprintf("the pool never filled at %s: at most %.0f of its %.0f connections in use", in.dbStepLabel(focus), pool.InUseMax, pool.Max)}
	}
	// Waits per acquire; pools that count no acquires (database/sql) are
	// read per request.
	acquires := func(p pgPoolAgg, step int) float64 {
		if p.AcquiresPerS > 0 {
			return p.AcquiresPerS
		}
		return in.Steps[step].AchievedRPS
	}
	emptyShare, waitMS := 0.0, 0.0
	if a := acquires(pool, focus); a > 0 {
		emptyShare = math.Min(1, pool.WaitsPerSec/a)
		waitMS = pool.WaitSecPerSec / a * 1000
	}
	base := in.BaselineStep()
	baseWaitMS := 0.0
	if base >= 0 && base != focus {
		if b := in.pgPoolStats(base); acquires(b, base) > 0 {
			baseWaitMS = b.WaitSecPerSec / acquires(b, base) * 1000
		}
	}
	waiting := emptyShare >= pgPoolMinEmptyShare || (pool.HasWaitTime && waitMS >= pgPoolMinWaitMS)
	if !waiting {
		return Result{RuledOut: fmt.Sprintf("requests did not wait for connections at %s: %s of acquires waited, %.2f ms per acquire (needs %s or %.0f ms)", in.dbStepLabel(focus), pct(emptyShare), waitMS, pct(pgPoolMinEmptyShare), pgPoolMinWaitMS)}
	}
	if pool.HasWaitTime && baseWaitMS > 0 && waitMS < pgPoolWaitGrowth*baseWaitMS && emptyShare < pgPoolMinEmptyShare {
		return Result{RuledOut: fmt.Sprintf("the wait per acquire (%.2f ms) did not grow with load (%.2f ms at low load)", waitMS, baseWaitMS)}
	}
	// The database side: are the pool's connections busy in it?
	inUse := pool.InUse
	if inUse <= 0 {
		inUse = pool.Max
	}
	agg := in.pgStepAgg(focus)
	dbKnown := agg.Activity.Samples > 0
	if dbKnown && inUse > 0 {
		if agg.Activity.LockWaiting >= pgPoolLockShare*math.Max(inUse, 1) {
			return Result{RuledOut: fmt.Sprintf("the pool is exhausted because its connections wait on locks (%.1f sessions waiting on locks of %.1f in use): see db.lock-wait", agg.Activity.LockWaiting, inUse)}
		}
		if busy := agg.Activity.Active - agg.Activity.LockWaiting; busy >= pgPoolDBIdleShare*inUse {
			return Result{RuledOut: fmt.Sprintf("the pool is full but its connections are busy in the database (%.1f running statements of %.1f in use): the database is the limit, not the pool's size", busy, inUse)}
		}
	}
	if stable := in.pgStableStep(focus); stable != focus {
		ps := in.pgPoolStats(stable)
		if a := acquires(ps, stable); ps.InUse >= pgPoolMinInUse && a > 0 {
			if hold := ps.InUse / a * 1000; hold < pgPoolShortHoldMS {
				return Result{RuledOut: fmt.Sprintf("the pool filled at %s, but at %s its connections were held %.2f ms per acquire (%.1f in use): held only for fast statements, below %.0f ms; the pool filled because the process slowed under overload, not because it is too small",
					in.dbStepLabel(focus), in.dbStepLabel(stable), hold, ps.InUse, pgPoolShortHoldMS)}
			}
		}
	}
	// A target that uses all the CPU it can get holds its connections
	// longer because their holders wait for a CPU: the pool fills as a
	// symptom of the CPU limit, which a larger pool would not lift.
	if sat, _, ok := cpuSaturation(in, focus); ok && sat.share >= cpuSaturated {
		if bound, why := cpuBound(in, focus, sat); bound {
			return Result{RuledOut: "the target is CPU-bound at the knee (" + why + "): its connections are held while their holders wait for a CPU, so the pool fills as a symptom"}
		}
	}
	return Result{Findings: []Candidate{r.finding(in, focus, pool, agg, dbKnown, emptyShare, waitMS, baseWaitMS)}}
}

func (r dbPoolExhausted) finding(in *Input, focus int, pool pgPoolAgg, agg pgStep, dbKnown bool, emptyShare, waitMS, baseWaitMS float64) Candidate {
	inUse := pool.InUse
	if inUse <= 0 {
		inUse = pool.Max
	}
	idleHeld := 1.0
	if dbKnown && inUse > 0 {
		idleHeld = clamp01(1 - agg.Activity.Active/inUse)
	}
	rps := in.Steps[focus].AchievedRPS
	evs := []report.Evidence{
		dbEv("postgres", "share of the pool's connection time in which the database runs nothing (connections held, not used)", idleHeld, "ratio"),
		dbEv("metrics", "most connections in use in one scrape at the knee", pool.InUseMax, "connections"),
	}
	if pool.Max > 0 {
		evs = append(evs, dbEv("metrics", "the pool's maximum size", pool.Max, "connections"))
	}
	if pool.HasWaits {
		evs = append(evs, dbEv("metrics", "share of acquires that waited for a connection at the knee", emptyShare, "ratio"))
	}
	if pool.HasWaitTime {
		evs = append(evs, dbEv("metrics", "mean wait per acquire at the knee", waitMS, "ms"),
			dbEv("metrics", "mean wait per acquire at low load", baseWaitMS, "ms"))
		if l := in.dbMeanLatencyMS(focus); l > 0 && rps > 0 {
			evs = append(evs, dbEv("metrics", "share of request latency waiting for a connection (completed acquires)", clamp01(pool.WaitSecPerSec/rps*1000/l), "ratio"))
		}
	}
	if dbKnown {
		evs = append(evs, dbEv("postgres", "database sessions running a statement (mean)", agg.Activity.Active, "sessions"),
			dbEv("postgres", "database sessions waiting on locks (mean)", agg.Activity.LockWaiting, "sessions"))
	}
	conf := 0.6 // the pool filled and acquires waited
	if dbKnown {
		conf += 0.2 // and the database was idle meanwhile
	}
	if !in.Steps[focus].MetSLO {
		conf += 0.1 // at the step where the objective broke
	}
	busy, busyKnown := in.machineBusy(focus)
	cpuNote := ""
	if busyKnown && busy >= pgPoolMachineBusy {
		conf -= 0.2
		evs = append(evs, dbEv("proc", "machine CPU busy at the knee", busy, "ratio"))
		cpuNote = fmt.Sprintf(" The machine's CPU was %s busy: part of the hold time is the holders waiting for a CPU, so a larger pool gains less than Little's law says.", pct(busy))
	}
	limit := int(math.Round(pool.Max))

	// Little's law on the pool: connections in use = acquires/s x hold
	// time; a request holds one for acquiresPerRequest x hold.
	var holdMS, perReq float64
	acq := pool.AcquiresPerS
	if acq <= 0 {
		acq = rps // the pool counts no acquires: one per request
	}
	if acq > 0 && inUse > 0 && rps > 0 {
		holdMS = inUse / acq * 1000
		perReq = acq / rps
	}
	rec := "Requests queue for the client-side pool's connections while the database idles"
	if limit > 0 {
		rec = fmt.Sprintf("Requests queue for the %d connections of the client-side pool while the database idles", limit)
	}
	var gain *report.ExpectedGain
	if holdMS > 0 && perReq > 0 {
		target := pgPoolTargetFactor * in.Steps[focus].OfferedRPS
		need := target * perReq * holdMS / 1000
		size := int(math.Ceil(need * pgPoolBurstFactor))
		size = max(size, 2*limit, 1)
		capNote := ""
		if room := in.pgConnectionRoom(agg, pool); room > 0 && size > room {
			size = room
			capNote = fmt.Sprintf(", capped by the %d connections the server has room for", room)
		}
		evs = append(evs, dbEv("metrics", "mean time a connection is held per acquire (Little's law: in use / acquires per second)", holdMS, "ms"),
			dbEv("metrics", "acquires per request", perReq, "acquires"))
		rec += fmt.Sprintf(". Size the pool by Little's law: %.0f req/s x %.2f acquires per request x %.1f ms held = %.1f connections in use on average; with room for bursts, set the pool's maximum to %d%s (it must stay below the server's max_connections minus its other clients). Better still, do not hold a connection across work outside the database (downstream calls, rendering): acquire it for the statements only.",
			target, perReq, holdMS, need, size, capNote)
		to := float64(size) / (perReq * holdMS / 1000)
		if base := capacityBase(in); base > 0 && to > base {
			gain = &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(to),
				Method: fmt.Sprintf("Little's law: %d connections held %.1f ms per acquire, %.2f acquires per request, serve at most %.0f req/s (if nothing else limits first)", size, holdMS, perReq, to)}
		}
	} else {
		rec += ": raise the pool's maximum (within the server's max_connections), or hold connections for the statements only."
	}
	rec += cpuNote
	title := "Requests wait for a database connection from the client-side pool while the database idles"
	if limit > 0 {
		title = fmt.Sprintf("Connection pool exhausted: all %d connections in use, %s of acquires wait, the database idles", limit, pct(emptyShare))
	}
	fnd := report.Finding{
		Kind:           r.Kind(),
		Title:          title,
		Locus:          report.Locus{Endpoint: in.dbEndpointFor(""), Resource: "db-pool", Limit: limit},
		Impact:         round3(idleHeld),
		Confidence:     round3(math.Min(conf, 0.9)),
		Evidence:       evs,
		Recommendation: rec,
		ExpectedGain:   gain,
	}
	return Candidate{Finding: fnd, Limiting: true}
}

// pgConnectionRoom is how many connections the target's pools could hold
// without reaching the server's limit: max_connections minus the reserved
// ones minus the connections of other clients; 0 when unknown.
func (in *Input) pgConnectionRoom(agg pgStep, pool pgPoolAgg) int {
	maxc, reserved := agg.DB.MaxConnections, agg.DB.Reserved
	if maxc == 0 {
		if s := in.pgServer(); s != nil {
			maxc, reserved = s.MaxConnections, s.ReservedConnections
		}
	}
	if maxc == 0 {
		return 0
	}
	others := float64(agg.DB.ConnsMax) - math.Max(pool.Total, pool.InUseMax)
	return max(maxc-reserved-int(math.Max(0, others)), 1)
}
