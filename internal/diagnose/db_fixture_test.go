package diagnose

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Synthetic evidence for the database rules: each step lasts pgStepSec
// seconds, with one window of deltas, one activity sample and one metrics
// scrape per second.

const (
	pgT0      = int64(1_800_000_000_000)
	pgStepSec = 4
)

// pgRunStep describes one step of a synthetic run. Statement, table and
// database deltas are per one-second window; activity and pool values are
// per sample.
type pgRunStep struct {
	rps       float64
	latencyMS float64 // mean latency: in flight = rps x latency
	failed    bool
	errRate   float64
	stmts     []evidence.PGStatement
	tables    []evidence.PGTable
	db        *evidence.PGDatabase
	act       *evidence.PGActivity
	locks     []evidence.PGLockWait
	metrics   []evidence.MetricSample
	spans     []evidence.Span // stamped at the step's middle
}

// pgRun builds an Input from steps, with a PostgreSQL 15 server record
// (max_connections 100, 3 reserved) and the machine's 2 cores.
func pgRun(steps ...pgRunStep) *Input {
	in := &Input{SLO: report.SLO{P99MS: 500, ErrorRate: 0.01}, Cores: 2,
		Coverage: []report.Coverage{{Source: "postgres", Status: "ok"}}}
	in.Postgres = append(in.Postgres, evidence.PG{T: pgT0 - 1000, Kind: evidence.PGKindServer, Server: &evidence.PGServer{
		Version: "15.18", VersionNum: 150018, Database: "shop", MaxConnections: 100, ReservedConnections: 3, PGStatStatements: true}})
	for i, s := range steps {
		start := pgT0 + int64(i)*int64(pgStepSec+1)*1000
		end := start + pgStepSec*1000
		st := report.Step{Index: i + 1, OfferedRPS: s.rps, AchievedRPS: s.rps, InflightMean: s.rps * s.latencyMS / 1000,
			StartMS: start, EndMS: end, Requests: int64(s.rps * pgStepSec), MetSLO: !s.failed, ErrorRate: s.errRate,
			Latency: report.Latency{P50: s.latencyMS, P99: 2 * s.latencyMS}}
		in.Steps = append(in.Steps, st)
		for k := 0; k < pgStepSec; k++ {
			t := start + int64(k+1)*1000
			mid := t - 500
			req := int64(s.rps)
			in.Windows = append(in.Windows, evidence.WindowRecord{T: t, StartMS: t - 1000, EndMS: t, Step: i + 1, Window: k,
				Requests: req, Errors: int64(float64(req) * s.errRate), InflightMean: st.InflightMean,
				Endpoints: []evidence.WindowEndpoint{{Name: "GET /things", Requests: req, Errors: int64(float64(req) * s.errRate)}}})
			if len(s.stmts) > 0 {
				in.Postgres = append(in.Postgres, evidence.PG{T: t, Kind: evidence.PGKindStatements, WindowMS: 1000, Statements: s.stmts})
			}
			if len(s.tables) > 0 {
				in.Postgres = append(in.Postgres, evidence.PG{T: t, Kind: evidence.PGKindTables, WindowMS: 1000, Tables: s.tables})
			}
			if s.db != nil {
				in.Postgres = append(in.Postgres, evidence.PG{T: t, Kind: evidence.PGKindDatabase, WindowMS: 1000, Database: s.db})
			}
			act := s.act
			if act == nil {
				act = &evidence.PGActivity{Sessions: 4, States: map[string]int{"idle": 4}}
			}
			in.Postgres = append(in.Postgres, evidence.PG{T: mid, Kind: evidence.PGKindActivity, Activity: act})
			if len(s.locks) > 0 {
				in.Postgres = append(in.Postgres, evidence.PG{T: mid, Kind: evidence.PGKindLocks, LockWaits: s.locks})
			}
			if len(s.metrics) > 0 {
				in.Metrics = append(in.Metrics, evidence.MetricsRecord{T: mid, Samples: s.metrics})
			}
		}
		for _, sp := range s.spans {
			sp.T = start + pgStepSec*500
			in.Spans = append(in.Spans, sp)
		}
	}
	return in
}

// pgWithPlan adds a plan record (EXPLAIN JSON text) for a statement.
func pgWithPlan(in *Input, queryID int64, query, planJSON string, hypo ...evidence.PGHypoResult) *Input {
	p := &evidence.PGPlan{QueryID: queryID, Query: query, Method: "generic_plan", Plan: json.RawMessage(planJSON), Hypo: hypo}
	in.Postgres = append(in.Postgres, evidence.PG{T: pgT0, Kind: evidence.PGKindPlan, Plan: p})
	return in
}

// pgStmtDelta is a statement's per-second delta: calls and mean time per call.
func pgStmtDelta(id int64, query string, calls int64, meanMS float64) evidence.PGStatement {
	return evidence.PGStatement{QueryID: id, Query: query, Calls: calls, TotalExecMS: float64(calls) * meanMS, MeanExecMS: meanMS, Rows: calls}
}

// pgGauge and pgCounter build metric samples (a pgCounter's per-second rate).
func pgGauge(name string, v float64, labels ...string) evidence.MetricSample {
	return evidence.MetricSample{Name: name, Type: evidence.MetricGauge, Value: v, Labels: pgLabels(labels)}
}

func pgCounter(name string, rate float64, labels ...string) evidence.MetricSample {
	typ := evidence.MetricCounter
	if strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
		typ = evidence.MetricSummary
	}
	return evidence.MetricSample{Name: name, Type: typ, Value: rate * 100, Rate: &rate, Labels: pgLabels(labels)}
}

func pgLabels(kv []string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// dbCheckOne runs a rule and returns its single candidate, failing the test
// when it does not fire.
func dbCheckOne(t *testing.T, r Rule, in *Input) Candidate {
	t.Helper()
	res := r.Check(in)
	if len(res.Findings) != 1 {
		t.Fatalf("%s: %d findings, want 1; ruled out: %s", r.Kind(), len(res.Findings), res.RuledOut)
	}
	c := res.Findings[0]
	if c.Kind != r.Kind() {
		t.Errorf("kind %q, want %q", c.Kind, r.Kind())
	}
	if c.Confidence < MinConfidence {
		t.Errorf("confidence %.2f below %.2f", c.Confidence, MinConfidence)
	}
	if c.Impact < 0 || c.Impact > 1 {
		t.Errorf("impact %.3f outside 0..1", c.Impact)
	}
	if len(c.Evidence) == 0 || c.Evidence[0].Value != c.Impact {
		t.Errorf("the first evidence entry must be the impact %.3f: %+v", c.Impact, c.Evidence)
	}
	if c.Title == "" || c.Recommendation == "" {
		t.Errorf("empty title or recommendation: %+v", c.Finding)
	}
	if c.Limiting && c.ExpectedGain != nil && (c.ExpectedGain.To <= c.ExpectedGain.From || c.ExpectedGain.Method == "") {
		t.Errorf("expected gain %+v", c.ExpectedGain)
	}
	return c
}

// dbCheckNone runs a rule that must not fire and returns why it did not.
func dbCheckNone(t *testing.T, r Rule, in *Input, wantWhy string) {
	t.Helper()
	res := r.Check(in)
	if len(res.Findings) > 0 {
		t.Fatalf("%s fired: %s", r.Kind(), res.Findings[0].Title)
	}
	if !strings.Contains(res.RuledOut, wantWhy) {
		t.Errorf("ruled out %q, want it to say %q", res.RuledOut, wantWhy)
	}
}

func TestDBRulesWithoutPostgres(t *testing.T) {
	in := pgRun(pgRunStep{rps: 10, latencyMS: 5}, pgRunStep{rps: 20, latencyMS: 900, failed: true})
	in.Postgres = nil
	in.Coverage = []report.Coverage{{Source: "postgres", Status: "unavailable", Detail: "no database given"}}
	for _, r := range dbRules() {
		t.Run(r.Kind(), func(t *testing.T) {
			dbCheckNone(t, r, in, "could not check: no PostgreSQL access; pass --postgres DSN (read-only)")
		})
	}
}

func TestDBRulesNoSteps(t *testing.T) {
	in := pgRun()
	for _, r := range dbRules() {
		t.Run(r.Kind(), func(t *testing.T) {
			dbCheckNone(t, r, in, "could not check")
		})
	}
}
