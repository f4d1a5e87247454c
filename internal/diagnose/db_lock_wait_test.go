package diagnose

import (
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

const (
	pgQCounter   = "UPDATE site_counters SET value = value + $1 WHERE name = $2"
	pgQCounterID = int64(-7607840572498382006)
)

// pgLockRun: each request updates one hot row inside a transaction that
// stays open across outside work; at the knee waiting sessions pile up.
func pgLockRun(kneeMeanMS float64, waiting int, locks []evidence.PGLockWait) *Input {
	busyAct := &evidence.PGActivity{Sessions: 16, States: map[string]int{"active": waiting, "idle in transaction": 1, "idle": 15 - waiting},
		WaitType: map[string]int{"Lock": waiting}, Waits: map[string]int{"Lock:transactionid": waiting},
		Queries: []evidence.PGActivityQuery{{QueryID: pgQCounterID, Active: waiting, Waiting: waiting, Waits: map[string]int{"Lock:transactionid": waiting}}}}
	if waiting == 0 {
		busyAct = nil
	}
	return pgRun(
		pgRunStep{rps: 5, latencyMS: 12, stmts: []evidence.PGStatement{pgStmtDelta(pgQCounterID, pgQCounter, 5, 0.1), pgStmtDelta(12, "SELECT id FROM products WHERE id = $1", 5, 0.05)}},
		pgRunStep{rps: 20, latencyMS: 400, failed: true, act: busyAct, locks: locks,
			stmts: []evidence.PGStatement{pgStmtDelta(pgQCounterID, pgQCounter, 20, kneeMeanMS), pgStmtDelta(12, "SELECT id FROM products WHERE id = $1", 20, 0.05)}},
	)
}

func pgHotRowWaits(n int, relation string) []evidence.PGLockWait {
	var out []evidence.PGLockWait
	for i := 0; i < n; i++ {
		out = append(out, evidence.PGLockWait{PID: 100 + i, LockType: "tuple", Mode: "ExclusiveLock", Relation: relation,
			QueryID: pgQCounterID, Query: pgQCounter, WaitingMS: float64(50 * (i + 1)), BlockedBy: []int{99},
			BlockerQuery: "SELECT id FROM products WHERE id = $1", BlockerState: "idle in transaction"})
	}
	return out
}

func TestLockWait(t *testing.T) {
	r := dbLockWait{}
	t.Run("fires on a hot row held across outside work", func(t *testing.T) {
		c := dbCheckOne(t, r, pgLockRun(300, 10, pgHotRowWaits(8, "site_counters")))
		if !c.Limiting || c.Locus.Table != "site_counters" || c.Locus.Query != pgQCounter {
			t.Errorf("limiting %v, locus %+v", c.Limiting, c.Locus)
		}
		if !strings.Contains(c.Recommendation, "idle inside its transaction") {
			t.Errorf("recommendation %q", c.Recommendation)
		}
		if c.Confidence < 0.8 {
			t.Errorf("confidence %.2f: samples, pg_locks and statement times agree", c.Confidence)
		}
	})
	t.Run("the table comes from the statement when pg_locks has none", func(t *testing.T) {
		waits := pgHotRowWaits(3, "")
		for i := range waits {
			waits[i].LockType = "transactionid"
		}
		c := dbCheckOne(t, r, pgLockRun(300, 10, waits))
		if c.Locus.Table != "site_counters" {
			t.Errorf("table %q", c.Locus.Table)
		}
	})
	t.Run("activity samples alone name the statement", func(t *testing.T) {
		c := dbCheckOne(t, r, pgLockRun(300, 10, nil))
		if c.Locus.Query != pgQCounter || c.Locus.Table != "site_counters" {
			t.Errorf("locus %+v", c.Locus)
		}
	})
	near := []struct {
		name string
		in   *Input
		why  string
	}{
		{"lock waits too small to matter", pgLockRun(0.4, 1, pgHotRowWaits(1, "site_counters")), "too small to matter"},
		{"no lock waits", pgLockRun(0.1, 0, nil), "no session waited on a lock"},
	}
	for _, tc := range near {
		t.Run(tc.name, func(t *testing.T) { dbCheckNone(t, r, tc.in, tc.why) })
	}
}

func TestStatementTable(t *testing.T) {
	for q, want := range map[string]string{
		"UPDATE site_counters SET value = value + $1 WHERE name = $2": "site_counters",
		`update "Shop"."Counters" set n = n + 1`:                      "Shop.Counters",
		"DELETE FROM public.sessions WHERE id = $1":                   "sessions",
		"INSERT INTO events (a) VALUES ($1)":                          "events",
		"SELECT id FROM accounts WHERE id = $1 FOR UPDATE":            "accounts",
		"COMMIT": "",
	} {
		if got := pgStatementTable(q); got != want {
			t.Errorf("pgStatementTable(%q) = %q, want %q", q, got, want)
		}
	}
}

func TestConnectionsSaturated(t *testing.T) {
	r := dbConnectionsSaturated{}
	run := func(peak int, errRate float64) *Input {
		return pgRun(
			pgRunStep{rps: 20, latencyMS: 30, db: &evidence.PGDatabase{Name: "shop", MaxConnections: 100, ReservedConnections: 3, Connections: 22, DBConnections: 20}},
			pgRunStep{rps: 80, latencyMS: 300, failed: true, errRate: errRate,
				db:      &evidence.PGDatabase{Name: "shop", MaxConnections: 100, ReservedConnections: 3, Connections: peak, DBConnections: peak - 2},
				metrics: []evidence.MetricSample{pgGauge("pgxpool_max_conns", 200), pgGauge("pgxpool_acquired_conns", float64(peak-2))},
				stmts:   []evidence.PGStatement{pgStmtDelta(3, "SELECT status FROM orders WHERE id = $1", 80, 0.1)},
				spans: []evidence.Span{{Name: "connect", Kind: evidence.SpanKindClient, DBSystem: "postgresql", Status: evidence.SpanStatusError,
					StatusMessage: "FATAL: sorry, too many clients already (SQLSTATE 53300)"}}},
		)
	}
	t.Run("fires at the server's limit with errors", func(t *testing.T) {
		c := dbCheckOne(t, r, run(97, 0.2))
		if !c.Limiting || c.Locus.Resource != "db-connections" || c.Locus.Limit != 100 || c.Locus.Endpoint != "GET /things" {
			t.Errorf("limiting %v, locus %+v", c.Limiting, c.Locus)
		}
		if !strings.Contains(c.Recommendation, "pools may open 200 connections") || c.Confidence < 0.9 {
			t.Errorf("confidence %.2f, recommendation %q", c.Confidence, c.Recommendation)
		}
	})
	t.Run("reserved slots count as the limit", func(t *testing.T) {
		dbCheckOne(t, r, run(93, 0.2))
	})
	t.Run("far from the limit", func(t *testing.T) {
		dbCheckNone(t, r, run(60, 0.2), "peaked at 60 of the 97 usable")
	})
}

func TestConnectionChurn(t *testing.T) {
	r := dbConnectionChurn{}
	// sessions per second at the knee, statement time per call, latency.
	run := func(sessionsKnee int64, stmtMS, latencyMS float64, connectSpans bool) *Input {
		var spans []evidence.Span
		if connectSpans {
			for i := 0; i < 20; i++ {
				spans = append(spans, evidence.Span{Name: "connect", Kind: evidence.SpanKindClient, DBSystem: "postgresql", StartNS: 0, EndNS: int64((latencyMS - stmtMS - 0.5) * 1e6)})
			}
		}
		return pgRun(
			pgRunStep{rps: 20, latencyMS: latencyMS / 2, stmts: []evidence.PGStatement{pgStmtDelta(4, "SELECT id, name FROM customers WHERE id = $1", 20, stmtMS)},
				db: &evidence.PGDatabase{Name: "shop", MaxConnections: 100, ReservedConnections: 3, Connections: 4, Sessions: sessionsKnee / 4}},
			pgRunStep{rps: 80, latencyMS: latencyMS, failed: true, spans: spans, stmts: []evidence.PGStatement{pgStmtDelta(4, "SELECT id, name FROM customers WHERE id = $1", 80, stmtMS)},
				db: &evidence.PGDatabase{Name: "shop", MaxConnections: 100, ReservedConnections: 3, Connections: 12, Sessions: sessionsKnee}},
		)
	}
	t.Run("fires on a connection per request", func(t *testing.T) {
		c := dbCheckOne(t, r, run(80, 0.1, 12, false))
		if !c.Limiting || c.Locus.Resource != "db-connections" {
			t.Errorf("limiting %v, locus %+v", c.Limiting, c.Locus)
		}
	})
	t.Run("connect spans measure the cost", func(t *testing.T) {
		c := dbCheckOne(t, r, run(80, 0.1, 12, true))
		if c.Confidence < 0.85 || !strings.Contains(c.Evidence[len(c.Evidence)-1].What, "connect spans") {
			t.Errorf("confidence %.2f, evidence %+v", c.Confidence, c.Evidence)
		}
	})
	t.Run("a pooled application", func(t *testing.T) {
		dbCheckNone(t, r, run(1, 0.1, 12, false), "connections are reused")
	})
	t.Run("connecting costs less than the work", func(t *testing.T) {
		dbCheckNone(t, r, run(80, 50, 52, false), "costs less than their statements")
	})
	t.Run("PostgreSQL 13 counts no sessions", func(t *testing.T) {
		in := run(80, 0.1, 12, false)
		in.Postgres[0].Server.VersionNum, in.Postgres[0].Server.Version = 130012, "13.12"
		dbCheckNone(t, r, in, "pg_stat_database.sessions is 14+")
	})
}
