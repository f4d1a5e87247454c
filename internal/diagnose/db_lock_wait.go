package diagnose

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of db.lock-wait.
const (
	// dbLockMinShare: lock waits must take at least this share of request
	// latency at the knee (CONTRACT.md §4's major line); below it they are
	// too small to matter.
	dbLockMinShare = MajorImpact
	// dbLockLimitingShare: lock waits taking this share of latency serialise
	// the requests: they are what broke the objective.
	dbLockLimitingShare = 0.3
	// pgLockSessionShare: ... as does this share of the database's busy
	// sessions waiting on locks (requests queue behind one holder).
	pgLockSessionShare = 0.5
	// pgLockMinSessions: the session share counts only with at least two
	// sessions waiting on average (a queue behind one holder, not one
	// unlucky collision).
	pgLockMinSessions = 2.0
	// pgLockSpeedup is what the gain estimate assumes for shortening the
	// transactions that hold the lock (stated in the method).
	pgLockSpeedup = 10.0
)

type dbLockWait struct{}

func (dbLockWait) Kind() string { return "db.lock-wait" }

// pgLockTarget is the statement that waits and the table it waits on.
type pgLockTarget struct {
	queryID      int64
	query        string
	table        string
	waits        int // lock-wait records naming it
	blockerQuery string
	blockerState string
	maxWaitMS    float64
}

func (r dbLockWait) Check(in *Input) Result {
	if why := in.pgUnavailable(); why != "" {
		return Result{RuledOut: why}
	}
	f, ok := in.pgFocusSteps()
	if !ok {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	act := f.At.Activity
	if act.Samples == 0 {
		return Result{RuledOut: fmt.Sprintf("could not check: no pg_stat_activity samples at %s", in.dbStepLabel(f.Focus))}
	}
	if act.LockWaiting == 0 && len(f.At.Locks) == 0 {
		return Result{RuledOut: fmt.Sprintf("no session waited on a lock at %s (%d activity samples)", in.dbStepLabel(f.Focus), act.Samples)}
	}
	t := in.pgLockTarget(&f)
	// Time waiting on locks per request: the waiting statement's execution
	// time beyond what it took at low load (pg_stat_statements counts lock
	// waits in execution time), else the sampled waiting sessions over the
	// requests in flight (Little's law).
	inflight := in.Steps[f.Focus].InflightMean
	sampled := 0.0
	if inflight > 0 {
		sampled = clamp01(act.LockWaiting / inflight)
	}
	extraMS, measured := 0.0, false
	if s, ok := f.At.stmt(t.queryID); ok && t.queryID != 0 {
		v := in.pgStmtView(&f, s)
		baseMean := v.BaseMeanMS
		if f.Base == f.Focus {
			baseMean = 0
		}
		extraMS = math.Max(0, v.MeanMS()-baseMean) * v.CallsPerReq
		measured = true
	}
	share := sampled
	if measured {
		share = math.Max(share, in.dbLatencyShare(f.Focus, extraMS))
	}
	busy := act.Active + act.IdleInTx
	sessShare := 0.0
	if busy > 0 {
		sessShare = clamp01(act.LockWaiting / busy)
	}
	queued := sessShare >= pgLockSessionShare && act.LockWaiting >= pgLockMinSessions
	if share < dbLockMinShare && !queued {
		return Result{RuledOut: fmt.Sprintf("lock waits are too small to matter at %s: %.2f ms per request, %s of request latency (%.2f sessions waiting on locks of %.1f busy), below %s",
			in.dbStepLabel(f.Focus), extraMS, pct(share), act.LockWaiting, busy, pct(dbLockMinShare))}
	}
	if t.query == "" && t.table == "" {
		return Result{RuledOut: fmt.Sprintf("sessions waited on locks (%s of request latency) but the waiting statement was not identified", pct(share))}
	}
	// Impact: the share of request latency; when requests queue for the
	// sessions themselves (a pool in front), the waits hold the limiting
	// resource: the share of busy sessions waiting on locks.
	latEv := dbEv("postgres", "share of request latency waiting on locks at the knee", share, "ratio")
	sessEv := dbEv("postgres", "share of busy database sessions waiting on a lock", sessShare, "ratio")
	impact, evs := share, []report.Evidence{latEv, sessEv}
	if queued && sessShare > share {
		impact, evs = sessShare, []report.Evidence{sessEv, latEv}
	}
	evs = append(evs, dbEv("postgres", "sessions waiting on a lock (mean of pg_stat_activity samples)", act.LockWaiting, "sessions"))
	if measured {
		evs = append(evs, dbEv("postgres", "lock wait per request (the waiting statement's execution time above low load)", extraMS, "ms"))
	}
	if t.maxWaitMS > 0 {
		evs = append(evs, dbEv("postgres", "longest lock wait seen", t.maxWaitMS, "ms"))
	}
	evs = append(evs, dbEv("postgres", "lock-wait records at the knee", float64(len(f.At.Locks)), "waits"))
	conf := 0.6 // sessions wait on locks and the waits weigh in latency
	if len(f.At.Locks) > 0 && t.table != "" {
		conf += 0.1 // pg_locks names the table and the blocker
	}
	if measured && in.dbLatencyShare(f.Focus, extraMS) >= dbLockMinShare {
		conf += 0.1 // pg_stat_statements' execution time agrees with the samples
	}
	if queued {
		conf += 0.1 // requests queue behind the holder
	}
	limiting := share >= dbLockLimitingShare || queued
	rec := "Shorten the transactions that hold the lock"
	if strings.HasPrefix(t.blockerState, "idle in transaction") {
		rec = "The lock holder sits idle inside its transaction (it does other work — a downstream call, computation — between taking the row lock and committing): take the lock last, commit before any outside call"
	}
	if t.table != "" {
		rec += fmt.Sprintf("; spread hot rows of %s (several pgCounter rows summed on read, or increments queued and applied in batches) so concurrent requests do not update the same row", t.table)
	}
	rec += "."
	if t.blockerQuery != "" {
		rec += " The blocker's last statement: " + t.blockerQuery
	}
	what := fmt.Sprintf("%s of request latency", pct(share))
	if impact != share {
		what = fmt.Sprintf("%.1f sessions, %s of the busy ones, wait while requests queue for them", act.LockWaiting, pct(sessShare))
	}
	title := "Queries wait on locks: " + what
	if t.table != "" {
		title = fmt.Sprintf("Queries wait on row locks of %s: %s", t.table, what)
	}
	fnd := report.Finding{
		Kind:           r.Kind(),
		Title:          title,
		Locus:          report.Locus{Endpoint: in.dbEndpointFor(t.query), Query: t.query, Table: t.table},
		Impact:         round3(impact),
		Confidence:     round3(math.Min(conf, 0.9)),
		Evidence:       evs,
		Recommendation: rec,
	}
	if limiting {
		fnd.ExpectedGain = amdahlGain(in, math.Min(impact, 0.99), pgLockSpeedup, "waiting on locks")
	}
	return Result{Findings: []Candidate{{Finding: fnd, Limiting: limiting}}}
}

// pgLockTarget finds the statement that waits most and its table, from the
// lock-wait records (pg_locks) and, failing those, the activity samples.
func (in *Input) pgLockTarget(f *pgFocus) pgLockTarget {
	type key struct {
		id    int64
		query string
	}
	counts := map[key]*pgLockTarget{}
	tables := map[key]map[string]int{}
	blockers := map[key]map[string]int{}
	for _, w := range f.At.Locks {
		k := key{id: w.QueryID}
		if k.id == 0 {
			k.query = w.Query
		}
		t := counts[k]
		if t == nil {
			t = &pgLockTarget{queryID: w.QueryID, query: w.Query}
			counts[k] = t
			tables[k], blockers[k] = map[string]int{}, map[string]int{}
		}
		t.waits++
		t.maxWaitMS = math.Max(t.maxWaitMS, w.WaitingMS)
		if w.Relation != "" {
			tables[k][dbLocusTable("", w.Relation)]++
		}
		if w.BlockerState != "" || w.BlockerQuery != "" {
			blockers[k][w.BlockerState+"\x00"+w.BlockerQuery]++
		}
	}
	var best *pgLockTarget
	var bestKey key
	for k, t := range counts {
		if best == nil || t.waits > best.waits || (t.waits == best.waits && t.queryID < best.queryID) {
			best, bestKey = t, k
		}
	}
	if best == nil {
		// No pg_locks record: the activity samples name the statement.
		var top *pgActQuery
		for _, q := range f.At.Activity.Queries {
			if q.LockWaiting > 0 && (top == nil || q.LockWaiting > top.LockWaiting) {
				top = q
			}
		}
		if top == nil {
			return pgLockTarget{}
		}
		best = &pgLockTarget{queryID: top.QueryID, query: top.Query}
	} else {
		best.table = pgMostFrequent(tables[bestKey])
		if b := pgMostFrequent(blockers[bestKey]); b != "" {
			best.blockerState, best.blockerQuery, _ = strings.Cut(b, "\x00")
		}
	}
	if text := in.pgQueryText(best.queryID); text != "" {
		best.query = text
	}
	if best.table == "" {
		best.table = pgStatementTable(best.query)
	}
	return *best
}

func pgMostFrequent(m map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range m {
		all = append(all, kv{k, n})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	if len(all) == 0 {
		return ""
	}
	return all[0].k
}

// pgWriteTarget finds the table a data-changing statement (or SELECT ... FOR
// UPDATE) names first.
var pgWriteTarget = regexp.MustCompile(`(?i)^\s*(?:with\b.*?\)\s*)?(?:update\s+(?:only\s+)?|delete\s+from\s+(?:only\s+)?|insert\s+into\s+|select\b.*?\bfrom\s+)((?:"[^"]+"|[a-z_][a-z0-9_$]*)(?:\.(?:"[^"]+"|[a-z_][a-z0-9_$]*))?)`)

// pgStatementTable is the table a statement writes or locks, "" when unknown.
func pgStatementTable(q string) string {
	if len(q) > 4096 {
		q = q[:4096]
	}
	m := pgWriteTarget.FindStringSubmatch(q)
	if m == nil {
		return ""
	}
	return dbLocusTable("", strings.ReplaceAll(m[1], `"`, ""))
}
