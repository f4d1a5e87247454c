package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of db.connection-churn.
const (
	// pgChurnMinPerRequest: new sessions per request at which the
	// application is connecting per request rather than reusing a pool
	// (the brief: >= 0.5; a pool warming up opens a few per hundred).
	pgChurnMinPerRequest = 0.5
	// pgChurnLimitingShare: connecting takes at least this share of request
	// latency: it is what requests spend their time on.
	pgChurnLimitingShare = 0.3
	// pgChurnSpeedup is what the estimate assumes for reusing connections
	// (a pooled acquire costs microseconds against milliseconds to
	// connect; 10x on that share is conservative).
	pgChurnSpeedup = 10.0
	// pgChurnEveryRequest sessions per request is "every request connects"
	// (allowing for counting windows that straddle requests), and a
	// measured connect pgChurnDwarfs times the statement work per session
	// is the contract's "costs more than the work" by a wide margin.
	pgChurnEveryRequest = 0.9
	pgChurnDwarfs       = 10.0
)

type dbConnectionChurn struct{}

func (dbConnectionChurn) Kind() string { return "db.connection-churn" }

func (r dbConnectionChurn) Check(in *Input) Result {
	if why := in.pgUnavailable(); why != "" {
		return Result{RuledOut: why}
	}
	if s := in.pgServer(); s != nil && s.VersionNum > 0 && s.VersionNum < 140000 {
		return Result{RuledOut: "could not check: PostgreSQL " + s.Version + " does not count sessions (pg_stat_database.sessions is 14+)"}
	}
	f, ok := in.pgFocusSteps()
	if !ok {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	if f.At.DB.Windows == 0 || f.At.DB.WindowMS <= 0 {
		return Result{RuledOut: fmt.Sprintf("could not check: no pg_stat_database sample at %s", in.dbStepLabel(f.Focus))}
	}
	// Past the knee, connects fail or queue and the per-request count
	// drops: the application's habit is read at the fastest step that
	// still met the objective, the knee's count kept as evidence.
	m := in.pgStableStep(f.Focus)
	at := f.At
	if m != f.Focus {
		at = in.pgStepAgg(m)
	}
	kneePerReq := pgSessionsPerRequest(&f.At)
	perReq := math.Max(pgSessionsPerRequest(&at), kneePerReq)
	basePerReq := pgSessionsPerRequest(&f.Low)
	if perReq < pgChurnMinPerRequest {
		return Result{RuledOut: fmt.Sprintf("the application opened %.2f new database sessions per request at %s (%.2f at low load), below %.1f: connections are reused", perReq, in.dbStepLabel(m), basePerReq, pgChurnMinPerRequest)}
	}
	sessPerSec := 0.0
	if at.DB.WindowMS > 0 {
		sessPerSec = float64(at.DB.Sessions) / (float64(at.DB.WindowMS) / 1000)
	}
	workMS := 0.0 // statement time per session
	if sessPerSec > 0 && at.StmtSeconds > 0 {
		workMS = at.TotalExecMS / at.StmtSeconds / sessPerSec
	}
	latency := in.dbMeanLatencyMS(m)
	connectMS, spans := in.pgConnectSpanMS(m)
	if spans == 0 {
		connectMS, spans = in.pgConnectSpanMS(f.Focus)
	}
	measured := spans > 0
	if !measured && perReq > 0 {
		// Without connect spans: the time per session not spent running
		// statements bounds the cost of connecting.
		execPerReq := 0.0
		if at.StmtSeconds > 0 {
			execPerReq = at.perRequest(at.TotalExecMS / at.StmtSeconds)
		}
		connectMS = math.Max(0, latency-execPerReq) / perReq
	}
	workKnown := at.StmtSeconds > 0
	if workKnown && connectMS <= workMS {
		return Result{RuledOut: fmt.Sprintf("sessions are opened per request (%.2f) but connecting (%.2f ms) costs less than their statements (%.2f ms per session)", perReq, connectMS, workMS)}
	}
	share := 0.0
	if latency > 0 {
		share = clamp01(connectMS * perReq / latency)
	}
	evs := []report.Evidence{
		dbEv("postgres", "share of request latency connecting to the database at "+in.dbStepLabel(m), share, "ratio"),
		dbEv("postgres", "new database sessions per request at "+in.dbStepLabel(m)+" (pg_stat_database.sessions)", perReq, "sessions"),
		dbEv("postgres", "new database sessions per request at the knee", kneePerReq, "sessions"),
		dbEv("postgres", "new database sessions per request at low load", basePerReq, "sessions"),
		dbEv("postgres", "new database sessions per second at the knee", sessPerSec, "sessions/s"),
	}
	if workKnown {
		evs = append(evs, dbEv("postgres", "statement time per session", workMS, "ms"))
	}
	if measured {
		evs = append(evs, dbEv("otlp", fmt.Sprintf("mean connect time (%d connect spans)", spans), connectMS, "ms"))
	} else {
		evs = append(evs, dbEv("loadgen", "time per session outside statements (bounds the connect cost; no connect spans)", connectMS, "ms"))
	}
	conf := 0.7 // sessions per request from the server, and connecting outweighs the work
	if !workKnown {
		conf -= 0.1 // no pg_stat_statements windows: the work per session is unknown
	}
	if measured {
		conf += 0.15 // the connect time is measured
	}
	// Limiting: connecting takes a large share of latency, or every
	// request connects and the connect dwarfs its work (the server forks a
	// backend per request: the connect rate caps throughput).
	dwarfs := perReq >= pgChurnEveryRequest && measured && (!workKnown || connectMS >= pgChurnDwarfs*workMS)
	limiting := share >= pgChurnLimitingShare || dwarfs
	fnd := report.Finding{
		Kind:           r.Kind(),
		Title:          churnTitle(perReq, connectMS, workMS, workKnown),
		Locus:          report.Locus{Endpoint: in.dbEndpointFor(""), Resource: "db-connections"},
		Recommendation: fmt.Sprintf("Reuse connections: open a pool once at start (pgxpool, database/sql with SetMaxIdleConns at the usual concurrency, HikariCP minimumIdle) and acquire from it per request instead of connecting; a pool that closes idle connections too eagerly churns too. Short-lived processes (CGI, serverless) should go through PgBouncer. Each connection now costs a backend fork, authentication and catalogue warm-up (%.1f ms).", connectMS),
		Impact:         round3(share),
		Confidence:     round3(math.Min(conf, 0.9)),
		Evidence:       evs,
	}
	if limiting {
		fnd.ExpectedGain = amdahlGain(in, math.Min(share, 0.99), pgChurnSpeedup, "connecting")
	}
	return Result{Findings: []Candidate{{Finding: fnd, Limiting: limiting}}}
}

// pgSessionsPerRequest is pg_stat_database.sessions per request of a step.
func pgSessionsPerRequest(p *pgStep) float64 {
	if p.DB.WindowMS <= 0 || p.RPS <= 0 {
		return 0
	}
	return float64(p.DB.Sessions) / (float64(p.DB.WindowMS) / 1000) / p.RPS
}

// pgConnectSpanMS is the mean duration of the target's database connect
// spans in a step (instrumentations name them "connect", "sql.conn.connect",
// "db.Connect"...), and how many there were.
func (in *Input) pgConnectSpanMS(step int) (float64, int) {
	start, end := in.StepSpan(step)
	var sum float64
	n := 0
	for _, s := range in.Spans {
		if s.T < start || s.T > end || s.Kind == evidence.SpanKindServer {
			continue
		}
		name := strings.ToLower(s.Name)
		if !strings.Contains(name, "connect") || strings.Contains(name, "http") {
			continue
		}
		if s.DBSystem == "" && !strings.Contains(name, "sql") && !strings.Contains(name, "db") && name != "connect" {
			continue
		}
		sum += float64(s.DurationNS()) / 1e6
		n++
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

func churnTitle(perReq, connectMS, workMS float64, workKnown bool) string {
	t := fmt.Sprintf("The application opens %.1f database connections per request; each costs %.1f ms", perReq, connectMS)
	if workKnown {
		t += fmt.Sprintf(" against %.2f ms of statements", workMS)
	}
	return t
}

// pgStableStep is the highest-rate step that met the objective (where the
// application's behaviour is not distorted by overload), else focus.
func (in *Input) pgStableStep(focus int) int {
	best := -1
	for i, s := range in.Steps {
		if s.MetSLO && s.Requests > 0 && (best < 0 || s.OfferedRPS > in.Steps[best].OfferedRPS) {
			best = i
		}
	}
	if best < 0 {
		return focus
	}
	return best
}
