package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of db.connections-saturated.
const (
	// pgConnFullShare: the server counts as full when its client backends
	// reached this share of the connections non-superusers may open
	// (max_connections minus the reserved ones); sampled once a second, a
	// full server shows one or two slots free between a disconnect and the
	// next attempt.
	pgConnFullShare = 0.95
	// pgConnGainCap bounds the capacity estimate after the fix (Little's law
	// over statement time alone ignores every other limit; beyond 10x the
	// next bottleneck decides).
	pgConnGainCap = 10.0
)

// pgTooManyClients are PostgreSQL's own words for SQLSTATE 53300 (any
// driver or language passes them through).
var pgTooManyClients = []string{"too many clients", "53300", "remaining connection slots are reserved"}

type dbConnectionsSaturated struct{}

func (dbConnectionsSaturated) Kind() string { return "db.connections-saturated" }

func (r dbConnectionsSaturated) Check(in *Input) Result {
	if why := in.pgUnavailable(); why != "" {
		return Result{RuledOut: why}
	}
	focus := in.FocusStep()
	if focus < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	agg := in.pgStepAgg(focus)
	if agg.DB.Windows == 0 {
		return Result{RuledOut: fmt.Sprintf("could not check: no pg_stat_database sample at %s", in.dbStepLabel(focus))}
	}
	maxc, reserved := agg.DB.MaxConnections, agg.DB.Reserved
	if maxc <= 0 {
		return Result{RuledOut: "could not check: max_connections unknown"}
	}
	usable := maxc - reserved
	peak := agg.DB.ConnsMax
	if float64(peak) < pgConnFullShare*float64(usable) {
		return Result{RuledOut: fmt.Sprintf("the server's connections peaked at %d of the %d usable (max_connections %d minus %d reserved) at %s, below %s", peak, usable, maxc, reserved, in.dbStepLabel(focus), pct(pgConnFullShare))}
	}
	errRate := in.dbErrorRate(focus)
	start, end := in.StepSpan(focus)
	refused := 0
	for _, s := range in.Spans {
		if s.T < start || s.T > end || s.Status != "error" {
			continue
		}
		msg := strings.ToLower(s.StatusMessage)
		for _, w := range pgTooManyClients {
			if strings.Contains(msg, w) {
				refused++
				break
			}
		}
	}
	pool := in.pgPoolStats(focus)
	evs := []report.Evidence{
		dbEv("postgres", "share of the server's usable connection slots taken at the knee", math.Min(1, float64(peak)/float64(usable)), "ratio"),
		dbEv("postgres", "client connections at the peak (whole server)", float64(peak), "connections"),
		dbEv("postgres", "max_connections", float64(maxc), "connections"),
		dbEv("postgres", "reserved connections (superuser_reserved_connections + reserved_connections)", float64(reserved), "connections"),
		dbEv("postgres", "connections to the target's database at the peak", float64(agg.DB.DBConnsMax), "connections"),
		dbEv("loadgen", "error rate at the knee (transport errors and 5xx)", errRate, "ratio"),
	}
	if base := in.BaselineStep(); base >= 0 && base != focus {
		b := in.pgStepAgg(base)
		evs = append(evs, dbEv("postgres", "client connections at low load (mean)", b.DB.ConnsMean, "connections"))
	}
	if refused > 0 {
		evs = append(evs, dbEv("otlp", "spans failed with \"too many clients\" (SQLSTATE 53300) at the knee", float64(refused), "spans"))
	}
	if pool.Found && pool.Max > 0 {
		evs = append(evs, dbEv("metrics", "the client-side pools' maximum size", pool.Max, "connections"))
	}
	conf := 0.6 // the server reached its connection limit
	if errRate > in.SLO.ErrorRate && errRate > 0 {
		conf += 0.2 // and requests failed meanwhile
	}
	if refused > 0 {
		conf += 0.1 // with PostgreSQL's own refusal
	}
	limiting := !in.Steps[focus].MetSLO || errRate > in.SLO.ErrorRate

	room := in.pgConnectionRoom(agg, pool)
	rec := fmt.Sprintf("The server's connection limit is reached: %d client connections of max_connections %d (%d reserved). ", peak, maxc, reserved)
	if pool.Found && pool.Max > 0 && int(pool.Max) > room {
		rec += fmt.Sprintf("The application's pools may open %.0f connections, more than the %d the server has room for: cap the pool's maximum at %d or less (every instance of the service counts), ", pool.Max, room, room)
	} else {
		rec += fmt.Sprintf("Cap the connections the application opens (a pool whose maximum, over all instances, stays below the %d the server has room for), ", room)
	}
	rec += "hold a connection only while running statements (not across downstream calls), or put PgBouncer in transaction mode in front; raising max_connections costs memory per backend and contention inside the server."
	fnd := report.Finding{
		Kind:           r.Kind(),
		Title:          fmt.Sprintf("PostgreSQL's connection limit reached: %d of %d connections, %s of requests fail", peak, maxc, pct(errRate)),
		Locus:          report.Locus{Endpoint: in.dbErrorEndpoint(focus), Resource: "db-connections", Limit: maxc},
		Impact:         round3(math.Min(1, float64(peak)/float64(usable))),
		Confidence:     round3(math.Min(conf, 0.9)),
		Evidence:       evs,
		Recommendation: rec,
	}
	if limiting {
		fnd.ExpectedGain = pgConnectionsGain(in, &agg, room)
	}
	// Connections opened per request (db.connection-churn) fill the slots
	// as a consequence: pooling them is the fix that also ends the
	// saturation, so when both are found that one comes first.
	return Result{Findings: []Candidate{{Finding: fnd, Limiting: limiting, Yields: "db.connection-churn"}}}
}

// pgConnectionsGain estimates capacity when the connections the server has
// room for are held only for statement time (Little's law), capped.
func pgConnectionsGain(in *Input, agg *pgStep, room int) *report.ExpectedGain {
	base := capacityBase(in)
	execMS := 0.0
	for _, s := range agg.Stmts {
		execMS += agg.stmtMSPerRequest(s)
	}
	if base <= 0 || execMS <= 0 || room <= 0 {
		return nil
	}
	to := math.Min(float64(room)/(execMS/1000), pgConnGainCap*base)
	if to <= base {
		return nil
	}
	return &report.ExpectedGain{Metric: "max_rps", From: round1(base), To: round1(to),
		Method: fmt.Sprintf("Little's law: %d connections held only for the %.2f ms of statements per request serve up to %.0f req/s; capped at %.0fx the current capacity, where other limits take over", room, execMS, float64(room)/(execMS/1000), pgConnGainCap)}
}

// dbErrorEndpoint is the endpoint with the most errors in a step, else the
// endpoint that uses the database most.
func (in *Input) dbErrorEndpoint(step int) string {
	errs := map[string]int64{}
	for _, w := range in.WindowsIn(step) {
		for _, e := range w.Endpoints {
			errs[e.Name] += e.Errors
		}
	}
	best, n := "", int64(0)
	for name, e := range errs {
		if e > n || (e == n && e > 0 && name < best) {
			best, n = name, e
		}
	}
	if best != "" {
		return best
	}
	return in.dbEndpointFor("")
}
