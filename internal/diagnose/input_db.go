package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/pgplan"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// Helpers of the PostgreSQL rules: per-step aggregates of postgres.jsonl
// records (statement deltas, activity samples, table deltas, database
// counters, lock waits), the plans, and client-side pool metrics.

// pgNoAccess is what a database rule says when there is no database evidence.
const pgNoAccess = "could not check: no PostgreSQL access; pass --postgres DSN (read-only)"

// pgUnavailable returns why the database rules cannot check anything, or ""
// when postgres evidence exists.
func (in *Input) pgUnavailable() string {
	for _, r := range in.Postgres {
		if r.Kind == evidence.PGKindServer && r.Server != nil {
			return ""
		}
	}
	for _, c := range in.Coverage {
		if c.Source == "postgres" && c.Status == "error" {
			return "could not check: the PostgreSQL probe failed (" + c.Detail + "); check --postgres DSN and that the server accepts it"
		}
	}
	if len(in.Postgres) > 0 {
		return ""
	}
	return pgNoAccess
}

// pgServer returns the server description the probe recorded first, or nil.
func (in *Input) pgServer() *evidence.PGServer {
	for _, r := range in.Postgres {
		if r.Kind == evidence.PGKindServer && r.Server != nil {
			return r.Server
		}
	}
	return nil
}

// statementsUnavailable returns why per-statement evidence is missing, or "".
func (in *Input) statementsUnavailable() string {
	s := in.pgServer()
	if s != nil && !s.PGStatStatements {
		why := s.PGStatStatementsWhy
		if why == "" {
			why = "not available"
		}
		return "could not check: pg_stat_statements is unusable in database " + s.Database + " (" + why +
			"); enable it: shared_preload_libraries = 'pg_stat_statements', restart, CREATE EXTENSION pg_stat_statements"
	}
	for _, r := range in.Postgres {
		if r.Kind == evidence.PGKindStatements {
			return ""
		}
	}
	return "could not check: no pg_stat_statements deltas were recorded"
}

// pgStmt is one statement's work over a step (sums of window deltas).
type pgStmt struct {
	QueryID   int64
	Query     string
	Calls     int64
	TotalMS   float64
	Rows      int64
	Hit, Read int64
	TempBlks  int64
}

// MeanMS is the mean execution time of one call.
func (s pgStmt) MeanMS() float64 {
	if s.Calls == 0 {
		return 0
	}
	return s.TotalMS / float64(s.Calls)
}

// pgActQuery is one statement's sessions in activity samples (means per sample).
type pgActQuery struct {
	QueryID     int64
	Query       string
	Active      float64
	LockWaiting float64 // active sessions of it waiting on a heavyweight lock
	IdleInTx    float64
}

// pgActivityAgg averages pg_stat_activity samples over a step.
type pgActivityAgg struct {
	Samples     int
	Sessions    float64 // client sessions of the database (mean)
	MaxSessions int
	Active      float64 // sessions running a statement (mean)
	IdleInTx    float64 // sessions idle inside a transaction (mean)
	Idle        float64
	LockWaiting float64            // active sessions waiting on wait_event_type Lock (mean)
	WaitType    map[string]float64 // wait_event_type -> active sessions (mean)
	Queries     map[int64]*pgActQuery
}

// pgTableAgg is one table's use over a step (sums of deltas; sizes current).
type pgTableAgg struct {
	Schema, Name string
	SeqScan      int64
	SeqTupRead   int64
	IdxScan      int64
	LiveTuples   int64 // the latest value seen
	TupUpd       int64
	SizeBytes    int64
}

// pgDBAgg is pg_stat_database over a step.
type pgDBAgg struct {
	Windows        int
	WindowMS       int64
	Sessions       int64 // opened in the step (PG 14+)
	Commits        int64
	Rollbacks      int64
	MaxConnections int
	Reserved       int
	ConnsMean      float64 // client backends of the whole server (mean)
	ConnsMax       int
	DBConnsMax     int
}

// pgStep aggregates the postgres evidence of one step.
type pgStep struct {
	Step        int
	RPS         float64 // achieved request rate of the step
	StmtSeconds float64 // seconds of statement windows in the step
	Stmts       []pgStmt
	TotalExecMS float64
	Activity    pgActivityAgg
	Tables      map[string]*pgTableAgg // by qualified name
	DB          pgDBAgg
	Locks       []evidence.PGLockWait
	LockSamples int // lock records (samples with at least one waiter)
}

// pgInWindow says whether a record whose window of windowMS ends at t has its
// midpoint in [start, end].
func pgInWindow(t, windowMS, start, end int64) bool {
	mid := t - windowMS/2
	return mid >= start && mid <= end
}

// pgStepAgg aggregates the postgres records of a step (an index into Steps).
func (in *Input) pgStepAgg(step int) pgStep {
	agg := pgStep{Step: step, Tables: map[string]*pgTableAgg{}}
	if step < 0 || step >= len(in.Steps) {
		return agg
	}
	agg.RPS = in.Steps[step].AchievedRPS
	start, end := in.StepSpan(step)
	byID := map[int64]*pgStmt{}
	var stmtMS int64
	act := &agg.Activity
	act.WaitType = map[string]float64{}
	act.Queries = map[int64]*pgActQuery{}
	var connSum float64
	for i := range in.Postgres {
		r := &in.Postgres[i]
		switch r.Kind {
		case evidence.PGKindStatements:
			if !pgInWindow(r.T, r.WindowMS, start, end) {
				continue
			}
			stmtMS += r.WindowMS
			for _, s := range r.Statements {
				a := byID[s.QueryID]
				if a == nil {
					a = &pgStmt{QueryID: s.QueryID}
					byID[s.QueryID] = a
				}
				if a.Query == "" {
					a.Query = s.Query
				}
				a.Calls += s.Calls
				a.TotalMS += s.TotalExecMS
				a.Rows += s.Rows
				a.Hit += s.SharedBlksHit
				a.Read += s.SharedBlksRead
				a.TempBlks += s.TempBlksWrite
				agg.TotalExecMS += s.TotalExecMS
			}
		case evidence.PGKindActivity:
			if r.Activity == nil || r.T < start || r.T > end {
				continue
			}
			a := r.Activity
			act.Samples++
			act.Sessions += float64(a.Sessions)
			act.MaxSessions = max(act.MaxSessions, a.Sessions)
			act.Active += float64(a.States["active"])
			act.IdleInTx += float64(a.States["idle in transaction"] + a.States["idle in transaction (aborted)"])
			act.Idle += float64(a.States["idle"])
			act.LockWaiting += float64(a.WaitType["Lock"])
			for k, v := range a.WaitType {
				act.WaitType[k] += float64(v)
			}
			for _, q := range a.Queries {
				aq := act.Queries[q.QueryID]
				if aq == nil {
					aq = &pgActQuery{QueryID: q.QueryID, Query: q.Query}
					act.Queries[q.QueryID] = aq
				}
				aq.Active += float64(q.Active)
				aq.IdleInTx += float64(q.IdleInTx)
				for w, n := range q.Waits {
					if strings.HasPrefix(w, "Lock:") {
						aq.LockWaiting += float64(n)
					}
				}
			}
		case evidence.PGKindTables:
			if !pgInWindow(r.T, r.WindowMS, start, end) {
				continue
			}
			for _, t := range r.Tables {
				key := t.Schema + "." + t.Name
				ta := agg.Tables[key]
				if ta == nil {
					ta = &pgTableAgg{Schema: t.Schema, Name: t.Name}
					agg.Tables[key] = ta
				}
				ta.SeqScan += t.SeqScan
				ta.SeqTupRead += t.SeqTupRead
				ta.IdxScan += t.IdxScan
				ta.TupUpd += t.TupUpd
				ta.LiveTuples = t.LiveTuples
				if t.SizeBytes > 0 {
					ta.SizeBytes = t.SizeBytes
				}
			}
		case evidence.PGKindDatabase:
			if r.Database == nil || !pgInWindow(r.T, r.WindowMS, start, end) {
				continue
			}
			d := r.Database
			agg.DB.Windows++
			agg.DB.WindowMS += r.WindowMS
			agg.DB.Sessions += d.Sessions
			agg.DB.Commits += d.XactCommit
			agg.DB.Rollbacks += d.XactRollback
			agg.DB.MaxConnections = d.MaxConnections
			agg.DB.Reserved = d.ReservedConnections
			connSum += float64(d.Connections)
			agg.DB.ConnsMax = max(agg.DB.ConnsMax, d.Connections)
			agg.DB.DBConnsMax = max(agg.DB.DBConnsMax, d.DBConnections)
		case evidence.PGKindLocks:
			if r.T < start || r.T > end {
				continue
			}
			agg.LockSamples++
			agg.Locks = append(agg.Locks, r.LockWaits...)
		}
	}
	agg.StmtSeconds = float64(stmtMS) / 1000
	for _, s := range byID {
		agg.Stmts = append(agg.Stmts, *s)
	}
	slices.SortFunc(agg.Stmts, func(a, b pgStmt) int {
		if c := cmp.Compare(b.TotalMS, a.TotalMS); c != 0 {
			return c
		}
		return cmp.Compare(a.QueryID, b.QueryID)
	})
	if n := float64(act.Samples); n > 0 {
		act.Sessions /= n
		act.Active /= n
		act.IdleInTx /= n
		act.Idle /= n
		act.LockWaiting /= n
		for k := range act.WaitType {
			act.WaitType[k] /= n
		}
		for _, q := range act.Queries {
			q.Active /= n
			q.LockWaiting /= n
			q.IdleInTx /= n
		}
	}
	if agg.DB.Windows > 0 {
		agg.DB.ConnsMean = connSum / float64(agg.DB.Windows)
	}
	if agg.DB.MaxConnections == 0 {
		if s := in.pgServer(); s != nil {
			agg.DB.MaxConnections, agg.DB.Reserved = s.MaxConnections, s.ReservedConnections
		}
	}
	return agg
}

// execPerSecond is the statements' execution time per second of the step
// (ms/s): the mean number of sessions executing, times 1000.
func (p *pgStep) execPerSecond(s pgStmt) float64 {
	if p.StmtSeconds <= 0 {
		return 0
	}
	return s.TotalMS / p.StmtSeconds
}

// perRequest divides a per-second rate by the step's request rate.
func (p *pgStep) perRequest(perSecond float64) float64 {
	if p.RPS <= 0 {
		return 0
	}
	return perSecond / p.RPS
}

// stmtMSPerRequest is a statement's execution time per request (ms).
func (p *pgStep) stmtMSPerRequest(s pgStmt) float64 {
	return p.perRequest(p.execPerSecond(s))
}

// dbShare is a statement's share of all statement execution time.
func (p *pgStep) dbShare(s pgStmt) float64 {
	if p.TotalExecMS <= 0 {
		return 0
	}
	return s.TotalMS / p.TotalExecMS
}

// pgStmtDelta returns the step's aggregate of a statement by query id.
func (p *pgStep) stmt(id int64) (pgStmt, bool) {
	for _, s := range p.Stmts {
		if s.QueryID == id {
			return s, true
		}
	}
	return pgStmt{}, false
}

// dbMeanLatencyMS is a step's mean request latency by Little's law (mean
// in-flight requests over the achieved rate); 0 when unknown.
func (in *Input) dbMeanLatencyMS(step int) float64 {
	if step < 0 || step >= len(in.Steps) {
		return 0
	}
	s := in.Steps[step]
	if s.AchievedRPS <= 0 || s.InflightMean <= 0 {
		return s.Latency.P50
	}
	return s.InflightMean / s.AchievedRPS * 1000
}

// dbLatencyShare is a time per request (ms) over the step's mean latency,
// bounded to [0,1].
func (in *Input) dbLatencyShare(step int, msPerRequest float64) float64 {
	l := in.dbMeanLatencyMS(step)
	if l <= 0 {
		return 0
	}
	return clamp01(msPerRequest / l)
}

// pgPlanFor returns the plan recorded for a statement (the last one without
// an error), or nil.
func (in *Input) pgPlanFor(queryID int64, query string) *evidence.PGPlan {
	var best *evidence.PGPlan
	for i := range in.Postgres {
		r := &in.Postgres[i]
		if r.Kind != evidence.PGKindPlan || r.Plan == nil {
			continue
		}
		p := r.Plan
		if (queryID != 0 && p.QueryID == queryID) || (queryID == 0 && query != "" && p.Query == query) {
			if p.Error == "" || best == nil {
				best = p
			}
		}
	}
	return best
}

// pgQueryText returns the normalised text of a statement id from any
// statements or plan record.
func (in *Input) pgQueryText(id int64) string {
	if id == 0 {
		return ""
	}
	for i := range in.Postgres {
		r := &in.Postgres[i]
		for _, s := range r.Statements {
			if s.QueryID == id && s.Query != "" {
				return s.Query
			}
		}
		if r.Plan != nil && r.Plan.QueryID == id && r.Plan.Query != "" {
			return r.Plan.Query
		}
	}
	return ""
}

// tableByName finds a table aggregate by its name as a plan or a lock names
// it ("orders", "public.orders", "shop.orders").
func (p *pgStep) tableByName(schema, name string) *pgTableAgg {
	if schema != "" {
		return p.Tables[schema+"."+name]
	}
	if t := p.Tables["public."+name]; t != nil {
		return t
	}
	for _, t := range p.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// pgMaxLiveTuples is the largest live-row count of a table in any tables
// record (tables absent from the focus step still have a size).
func (in *Input) pgMaxLiveTuples(schema, name string) int64 {
	var n int64
	for _, r := range in.Postgres {
		for _, t := range r.Tables {
			if t.Name == name && (schema == "" || t.Schema == schema) {
				n = max(n, t.LiveTuples)
			}
		}
	}
	return n
}

// dbLocusTable is a table as CONTRACT.md §4 writes it: unqualified unless
// outside public.
func dbLocusTable(schema, name string) string {
	name = strings.TrimSpace(name)
	if i := strings.LastIndexByte(name, '.'); i >= 0 && schema == "" {
		schema, name = name[:i], name[i+1:]
	}
	schema = strings.Trim(schema, `"`)
	if schema == "" || schema == "public" {
		return name
	}
	return schema + "." + name
}

// dbErrorRate is the share of the step's requests that failed (transport
// errors and 5xx), from its windows, else from the step.
func (in *Input) dbErrorRate(step int) float64 {
	var req, errs int64
	for _, w := range in.WindowsIn(step) {
		req += w.Requests
		errs += w.Errors
	}
	if req == 0 {
		if step >= 0 && step < len(in.Steps) {
			return in.Steps[step].ErrorRate
		}
		return 0
	}
	return float64(errs) / float64(req)
}

// dbStepLabel names a step in evidence and reasons.
func (in *Input) dbStepLabel(step int) string {
	if step < 0 || step >= len(in.Steps) {
		return "no step"
	}
	return fmt.Sprintf("%.0f req/s", in.Steps[step].OfferedRPS)
}

// ev builds an evidence entry.
func dbEv(source, what string, value float64, unit string) report.Evidence {
	return report.Evidence{Source: source, What: what, Value: round3(value), Unit: unit}
}

// Pool metrics, matched generically across client libraries: pgxpool
// (pgxpool_acquired_conns, pgxpool_acquire_duration_seconds_total,
// pgxpool_empty_acquire_count_total, pgxpool_max_conns), database/sql's
// DBStats collector (go_sql_in_use_connections, go_sql_wait_count_total,
// go_sql_wait_duration_seconds_total, go_sql_max_open_connections),
// HikariCP / Micrometer (hikaricp_connections_active, _idle, _pending, _max,
// hikaricp_connections_acquire_seconds), and OpenTelemetry's
// db.client.connection.* (count{state=used|idle}, max, pending_requests,
// wait_time).

// pgPoolRole is what a pool series measures.
type pgPoolRole int

const (
	pgPoolNone      pgPoolRole = iota
	pgPoolInUse                // pgGauge: connections handed out
	pgPoolIdle                 // pgGauge: idle connections
	pgPoolTotal                // pgGauge: open connections
	pgPoolMax                  // pgGauge: the pool's maximum size
	pgPoolPending              // pgGauge: callers waiting for a connection
	pgPoolWaits                // pgCounter: acquires that had to wait
	pgPoolWaitTime             // pgCounter: time spent waiting for / acquiring a connection
	pgPoolAcquires             // pgCounter: acquires
	pgPoolTimeouts             // pgCounter: acquires that timed out or were cancelled
	pgPoolNewConns             // pgCounter: connections opened by the pool
	pgPoolWaitCount            // pgCounter: the _count of a wait-time histogram or summary (acquires)
)

// pgPoolWords: a series belongs to a connection pool only if its name has
// one of these.
var pgPoolWords = []string{"pool", "conn", "acquire", "hikari", "go_sql_", "db_client"}

// pgClassifyPool returns the role of a pool series and the factor that turns
// its value into seconds (wait time) or 1.
func pgClassifyPool(s evidence.MetricSample) (pgPoolRole, float64) {
	n := strings.ToLower(s.Name)
	if !dbContainsAny(n, pgPoolWords...) || dbContainsAny(n, "http", "grpc", "lifetime", "_bucket", "constructing", "creating") {
		return pgPoolNone, 0
	}
	// Server-side or unrelated connection gauges (HTTP servers, Go's net)
	// do not say "pool", "sql", "db", "acquire" or "hikari".
	if !dbContainsAny(n, "pool", "sql", "db", "acquire", "hikari", "pgx", "jdbc", "database") {
		return pgPoolNone, 0
	}
	pgCounter := s.Type == evidence.MetricCounter || (s.Type != evidence.MetricGauge &&
		(strings.HasSuffix(n, "_total") || strings.HasSuffix(n, "_sum") || strings.HasSuffix(n, "_count")))
	state := strings.ToLower(s.Label("state") + s.Label("db_client_connection_state") + s.Label("db_client_connections_state"))
	switch {
	case pgCounter && dbContainsAny(n, "wait", "acquire", "pending") && dbContainsAny(n, "duration", "seconds", "time", "_ms", "millis", "_ns", "nanos") && !strings.HasSuffix(n, "_count"):
		return pgPoolWaitTime, pgPoolTimeUnit(n)
	case pgCounter && strings.HasSuffix(n, "_count") && dbContainsAny(n, "wait", "acquire") && dbContainsAny(n, "duration", "seconds", "time"):
		return pgPoolWaitCount, 1
	case pgCounter && dbContainsAny(n, "timeout", "cancel"):
		return pgPoolTimeouts, 1
	case pgCounter && dbContainsAny(n, "empty_acquire", "wait_count", "waits"):
		return pgPoolWaits, 1
	case pgCounter && dbContainsAny(n, "acquire") && dbContainsAny(n, "count"):
		return pgPoolAcquires, 1
	case pgCounter && dbContainsAny(n, "new_conn", "created", "creation_count", "opened"):
		return pgPoolNewConns, 1
	case pgCounter:
		return pgPoolNone, 0
	case dbContainsAny(n, "seconds", "duration", "time", "_ms", "millis"):
		return pgPoolNone, 0 // the _max of a timing summary, a timeout setting...
	case dbContainsAny(n, "max") && !dbContainsAny(n, "idle", "closed", "destroy", "_min"):
		return pgPoolMax, 1
	case dbContainsAny(n, "pending", "waiting", "wait"):
		return pgPoolPending, 1
	case dbContainsAny(n, "acquired", "in_use", "inuse", "active", "busy", "used") || state == "used" || state == "active":
		return pgPoolInUse, 1
	case (dbContainsAny(n, "idle") && !dbContainsAny(n, "min", "max")) || state == "idle":
		return pgPoolIdle, 1
	case dbContainsAny(n, "total_conns", "open_connections", "connections_total", "conns_total") ||
		(dbContainsAny(n, "connections", "conns") && !dbContainsAny(n, "min")):
		return pgPoolTotal, 1
	}
	return pgPoolNone, 0
}

// pgPoolTimeUnit is the factor from a wait-time series' unit to seconds.
func pgPoolTimeUnit(name string) float64 {
	switch {
	case dbContainsAny(name, "nanos", "_ns"):
		return 1e-9
	case dbContainsAny(name, "micros", "_us"):
		return 1e-6
	case dbContainsAny(name, "millis", "_ms"):
		return 1e-3
	}
	return 1
}

func dbContainsAny(s string, subs ...string) bool {
	for _, w := range subs {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// pgPoolAgg is the client-side pool over a step (all pools of the target
// summed; gauges are means per scrape, counters rates per second).
type pgPoolAgg struct {
	Scrapes       int
	Found         bool    // some pool series was seen
	InUse         float64 // mean connections in use
	InUseMax      float64
	Idle          float64
	Total         float64
	Max           float64 // the pools' maximum size (0 when not exported)
	Pending       float64 // mean callers waiting (when exported)
	HasInUse      bool
	HasPending    bool
	WaitsPerSec   float64 // acquires that had to wait
	HasWaits      bool
	WaitSecPerSec float64 // seconds spent waiting per second (mean waiters, by Little's law)
	HasWaitTime   bool
	AcquiresPerS  float64
	HasAcquires   bool
	TimeoutsPerS  float64
	NewConnsPerS  float64
	HasNewConns   bool
	Names         []string // the series names used, for evidence
}

// pgPoolStats aggregates the pool series of a step.
func (in *Input) pgPoolStats(step int) pgPoolAgg {
	var p pgPoolAgg
	start, end := in.StepSpan(step)
	names := map[string]bool{}
	for _, rec := range in.Metrics {
		if rec.T < start || rec.T > end || rec.Error != "" {
			continue
		}
		var inUse, idle, total, mx, pending float64
		var waits, waitSec, acq, tmo, newc, waitCount float64
		var hasInUse, hasPending, hasWaits, hasWaitSec, hasAcq, hasNew, hasWaitCount bool
		seen := false
		for _, s := range rec.Samples {
			role, unit := pgClassifyPool(s)
			if role == pgPoolNone {
				continue
			}
			seen = true
			names[s.Name] = true
			rate := 0.0
			if s.Rate != nil {
				rate = *s.Rate
			}
			switch role {
			case pgPoolInUse:
				inUse += s.Value
				hasInUse = true
			case pgPoolIdle:
				idle += s.Value
			case pgPoolTotal:
				total += s.Value
			case pgPoolMax:
				mx += s.Value
			case pgPoolPending:
				pending += s.Value
				hasPending = true
			case pgPoolWaits:
				if s.Rate != nil {
					waits += rate
					hasWaits = true
				}
			case pgPoolWaitTime:
				if s.Rate != nil {
					waitSec += rate * unit
					hasWaitSec = true
				}
			case pgPoolAcquires:
				if s.Rate != nil {
					acq += rate
					hasAcq = true
				}
			case pgPoolWaitCount:
				if s.Rate != nil {
					waitCount += rate
					hasWaitCount = true
				}
			case pgPoolTimeouts:
				tmo += rate
			case pgPoolNewConns:
				if s.Rate != nil {
					newc += rate
					hasNew = true
				}
			}
		}
		if !seen {
			continue
		}
		if !hasAcq && hasWaitCount {
			// A wait-time histogram or summary counts every acquire.
			acq, hasAcq = waitCount, true
		}
		if !hasInUse && total > 0 {
			inUse, hasInUse = total-idle, true
		}
		p.Found = true
		p.Scrapes++
		p.InUse += inUse
		p.InUseMax = max(p.InUseMax, inUse)
		p.Idle += idle
		p.Total += total
		p.Max = max(p.Max, mx)
		p.Pending += pending
		p.HasInUse = p.HasInUse || hasInUse
		p.HasPending = p.HasPending || hasPending
		p.WaitsPerSec += waits
		p.HasWaits = p.HasWaits || hasWaits
		p.WaitSecPerSec += waitSec
		p.HasWaitTime = p.HasWaitTime || hasWaitSec
		p.AcquiresPerS += acq
		p.HasAcquires = p.HasAcquires || hasAcq
		p.TimeoutsPerS += tmo
		p.NewConnsPerS += newc
		p.HasNewConns = p.HasNewConns || hasNew
	}
	if n := float64(p.Scrapes); n > 0 {
		p.InUse /= n
		p.Idle /= n
		p.Total /= n
		p.Pending /= n
		p.WaitsPerSec /= n
		p.WaitSecPerSec /= n
		p.AcquiresPerS /= n
		p.TimeoutsPerS /= n
		p.NewConnsPerS /= n
	}
	for n := range names {
		p.Names = append(p.Names, n)
	}
	slices.Sort(p.Names)
	return p
}

// dbEndpointFor names the endpoint whose requests spend the most time in a
// statement (query "" = in any statement), from traces; without traces, the
// run's only endpoint; else "".
func (in *Input) dbEndpointFor(query string) string {
	if len(in.Spans) > 0 {
		best, bestScore := "", 0.0
		for _, ep := range trace.Analyze(in.Spans) {
			for _, r := range ep.Resources {
				if r.Resource.Kind != trace.KindDB || (query != "" && r.Resource.Name != query) {
					continue
				}
				if score := r.MeanTimeMS * float64(ep.Requests); score > bestScore {
					best, bestScore = ep.Endpoint, score
				}
			}
		}
		if best != "" {
			return best
		}
	}
	return in.dbOnlyEndpoint()
}

// dbOnlyEndpoint is the run's endpoint when it loaded exactly one, else "".
func (in *Input) dbOnlyEndpoint() string {
	names := map[string]bool{}
	for _, e := range in.Endpoints {
		names[e.Name] = true
	}
	if len(names) == 0 {
		for _, w := range in.Windows {
			for _, e := range w.Endpoints {
				names[e.Name] = true
			}
		}
	}
	if len(names) != 1 {
		return ""
	}
	for n := range names {
		return n
	}
	return ""
}

// pgFocus is the database evidence at the knee (the focus step) and at low
// load (the baseline step).
type pgFocus struct {
	Focus, Base int
	At, Low     pgStep
}

// pgFocusSteps aggregates the focus and baseline steps. When the focus step
// has no statement windows (the probe lagged), the highest-rate step with
// some stands in. ok is false without any step.
func (in *Input) pgFocusSteps() (pgFocus, bool) {
	f := pgFocus{Focus: in.FocusStep(), Base: in.BaselineStep()}
	if f.Focus < 0 {
		return f, false
	}
	f.At = in.pgStepAgg(f.Focus)
	if f.At.StmtSeconds == 0 {
		best := -1
		for i := range in.Steps {
			if a := in.pgStepAgg(i); a.StmtSeconds > 0 && (best < 0 || in.Steps[i].OfferedRPS > in.Steps[best].OfferedRPS) {
				best = i
			}
		}
		if best >= 0 {
			f.Focus = best
			f.At = in.pgStepAgg(best)
		}
	}
	if f.Base < 0 {
		f.Base = f.Focus
	}
	f.Low = in.pgStepAgg(f.Base)
	return f, true
}

// pgStmtView is one statement's weight at the knee and at low load.
type pgStmtView struct {
	pgStmt
	DBShare     float64 // of all statement execution time at the knee
	MSPerReq    float64 // execution time per request at the knee
	CallsPerReq float64 // calls per request at the knee
	LatFocus    float64 // share of mean request latency at the knee
	LatBase     float64 // ... at low load
	BaseMeanMS  float64 // mean execution time per call at low load (0 when not seen)
	LatShare    float64 // the larger of LatFocus and LatBase
}

// view weighs a statement of the focus step.
func (in *Input) pgStmtView(f *pgFocus, s pgStmt) pgStmtView {
	v := pgStmtView{pgStmt: s, DBShare: f.At.dbShare(s), MSPerReq: f.At.stmtMSPerRequest(s)}
	if f.At.StmtSeconds > 0 {
		v.CallsPerReq = f.At.perRequest(float64(s.Calls) / f.At.StmtSeconds)
	}
	v.LatFocus = in.dbLatencyShare(f.Focus, v.MSPerReq)
	if low, ok := f.Low.stmt(s.QueryID); ok {
		v.LatBase = in.dbLatencyShare(f.Base, f.Low.stmtMSPerRequest(low))
		v.BaseMeanMS = low.MeanMS()
	}
	v.LatShare = max(v.LatFocus, v.LatBase)
	return v
}

// pgPlanNode is a plan node's own cost (its total minus its children's).
type pgPlanNode struct {
	Type     string
	Relation string
	Share    float64 // of the plan's total cost
}

// pgPlanScan is a sequential scan with the columns an index would need.
type pgPlanScan struct {
	Schema, Relation, Filter string
	PlanRows, TotalCost      float64
	Equality, Range, Sort    []string
	Columns                  []string // index order (pgplan): equality, range, sort
}

// pgPlanInfo is what the rules read from a plan.
type pgPlanInfo struct {
	TotalCost float64
	Scans     []pgPlanScan
	Nodes     []pgPlanNode // by own cost, largest first
	Parsed    bool         // the full plan was read (else only the probe's summary)
}

// pgAnalysePlan reads a plan record: the full EXPLAIN JSON when present,
// else the probe's summary of its sequential scans.
func pgAnalysePlan(p *evidence.PGPlan) pgPlanInfo {
	var pi pgPlanInfo
	if p == nil {
		return pi
	}
	pi.TotalCost = p.TotalCost
	if len(p.Plan) > 0 {
		if e, err := pgplan.Parse(p.Plan); err == nil {
			pi.Parsed = true
			pi.TotalCost = e.Plan.TotalCost
			for _, s := range pgplan.SeqScans(e) {
				pi.Scans = append(pi.Scans, pgPlanScan{Schema: s.Schema, Relation: s.Relation, Filter: s.Filter,
					PlanRows: s.PlanRows, TotalCost: s.TotalCost, Equality: s.Equality, Range: s.Range, Sort: s.Sort, Columns: s.Columns})
			}
			own := map[string]*pgPlanNode{}
			var order []string
			e.Plan.Walk(func(n *pgplan.Node, _ []*pgplan.Node) bool {
				c := n.TotalCost
				for _, ch := range n.Plans {
					c -= ch.TotalCost
				}
				key := n.NodeType + "\x00" + n.RelationName
				pn := own[key]
				if pn == nil {
					pn = &pgPlanNode{Type: n.NodeType, Relation: n.RelationName}
					own[key] = pn
					order = append(order, key)
				}
				if c > 0 && pi.TotalCost > 0 {
					pn.Share += c / pi.TotalCost
				}
				return true
			})
			for _, k := range order {
				pi.Nodes = append(pi.Nodes, *own[k])
			}
			slices.SortStableFunc(pi.Nodes, func(a, b pgPlanNode) int { return cmp.Compare(b.Share, a.Share) })
			return pi
		}
	}
	for _, s := range p.SeqScans {
		eq, rng := pgplan.FilterColumns(s.Filter, func(q string) bool { return q == "" || q == s.Relation })
		pi.Scans = append(pi.Scans, pgPlanScan{Schema: s.Schema, Relation: s.Relation, Filter: s.Filter,
			PlanRows: s.PlanRows, TotalCost: s.TotalCost, Equality: eq, Range: rng, Columns: s.Columns})
	}
	return pi
}

// pgHasParams reports whether a normalised statement takes parameters ($n).
func pgHasParams(query string) bool {
	for i := 0; i+1 < len(query); i++ {
		if query[i] == '$' && query[i+1] >= '0' && query[i+1] <= '9' {
			return true
		}
	}
	return false
}

// pgIdent quotes an identifier for a statement users will paste, only when
// it needs it.
func pgIdent(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || (i > 0 && r >= '0' && r <= '9')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// dbCount writes a count with thousands separators.
func dbCount(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
