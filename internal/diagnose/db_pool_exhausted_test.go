package diagnose

import (
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// pgPoolFamily writes one client library's pool statistics.
type pgPoolFamily func(inUse, idle, max, acquires, waits, waitSec float64) []evidence.MetricSample

var pgPoolFamilies = map[string]pgPoolFamily{
	"pgxpool": func(inUse, idle, max, acq, waits, waitSec float64) []evidence.MetricSample {
		return []evidence.MetricSample{pgGauge("pgxpool_acquired_conns", inUse), pgGauge("pgxpool_idle_conns", idle),
			pgGauge("pgxpool_total_conns", inUse+idle), pgGauge("pgxpool_max_conns", max), pgGauge("pgxpool_constructing_conns", 0),
			pgCounter("pgxpool_acquire_count_total", acq), pgCounter("pgxpool_empty_acquire_count_total", waits),
			pgCounter("pgxpool_canceled_acquire_count_total", 0), pgCounter("pgxpool_new_conns_count_total", 0),
			pgCounter("pgxpool_acquire_duration_seconds_total", waitSec), pgCounter("pgxpool_max_idle_destroy_count_total", 0)}
	},
	"database/sql": func(inUse, idle, max, acq, waits, waitSec float64) []evidence.MetricSample {
		l := []string{"db_name", "shop"}
		return []evidence.MetricSample{pgGauge("go_sql_in_use_connections", inUse, l...), pgGauge("go_sql_idle_connections", idle, l...),
			pgGauge("go_sql_open_connections", inUse+idle, l...), pgGauge("go_sql_max_open_connections", max, l...),
			pgCounter("go_sql_wait_count_total", waits, l...), pgCounter("go_sql_wait_duration_seconds_total", waitSec, l...),
			pgCounter("go_sql_max_idle_closed_total", 0, l...), pgCounter("go_sql_max_idle_time_closed_total", 0, l...)}
	},
	"HikariCP": func(inUse, idle, max, acq, waits, waitSec float64) []evidence.MetricSample {
		l := []string{"pool", "HikariPool-1"}
		return []evidence.MetricSample{pgGauge("hikaricp_connections_active", inUse, l...), pgGauge("hikaricp_connections_idle", idle, l...),
			pgGauge("hikaricp_connections", inUse+idle, l...), pgGauge("hikaricp_connections_max", max, l...), pgGauge("hikaricp_connections_min", 2, l...),
			pgGauge("hikaricp_connections_pending", waits/10, l...), pgGauge("hikaricp_connections_acquire_seconds_max", 0.5, l...),
			pgCounter("hikaricp_connections_acquire_seconds_count", acq, l...), pgCounter("hikaricp_connections_acquire_seconds_sum", waitSec, l...),
			pgCounter("hikaricp_connections_timeout_total", 0, l...), pgCounter("hikaricp_connections_usage_seconds_sum", 3, l...)}
	},
	"OpenTelemetry": func(inUse, idle, max, acq, waits, waitSec float64) []evidence.MetricSample {
		return []evidence.MetricSample{pgGauge("db_client_connection_count", inUse, "db_client_connection_state", "used"),
			pgGauge("db_client_connection_count", idle, "db_client_connection_state", "idle"),
			pgGauge("db_client_connection_max", max), pgGauge("db_client_connection_idle_min", 1), pgGauge("db_client_connection_pending_requests", waits/10),
			pgCounter("db_client_connection_wait_time_seconds_count", acq), pgCounter("db_client_connection_wait_time_seconds_sum", waitSec)}
	},
}

// pgPoolRun: a pool of max connections held across outside work; at 80 req/s
// it is full and requests wait while the database sessions idle (or run
// statements, or wait on locks, as act says).
func pgPoolRun(fam pgPoolFamily, max, inUseKnee, waitSecKnee float64, act *evidence.PGActivity) *Input {
	stmts := []evidence.PGStatement{pgStmtDelta(11, "SELECT id, total FROM invoices WHERE id = $1", 80, 0.05)}
	return pgRun(
		pgRunStep{rps: 20, latencyMS: 12, stmts: stmts[:1], metrics: fam(0.5, max-0.5, max, 20, 0, 0.0001)},
		pgRunStep{rps: 80, latencyMS: 120, failed: true, stmts: stmts, act: act, metrics: fam(inUseKnee, max-inUseKnee, max, 80, 40, waitSecKnee)},
	)
}

func pgIdleSessions(n int) *evidence.PGActivity {
	return &evidence.PGActivity{Sessions: n, States: map[string]int{"idle": n}}
}

func TestPoolExhausted(t *testing.T) {
	r := dbPoolExhausted{}
	for name, fam := range pgPoolFamilies {
		t.Run("fires with "+name+" metrics", func(t *testing.T) {
			c := dbCheckOne(t, r, pgPoolRun(fam, 2, 2, 3, pgIdleSessions(2)))
			if !c.Limiting || c.Locus.Resource != "db-pool" || c.Locus.Limit != 2 {
				t.Errorf("limiting %v, locus %+v", c.Limiting, c.Locus)
			}
			if !strings.Contains(c.Recommendation, "Little's law") || c.ExpectedGain == nil {
				t.Errorf("recommendation %q, gain %+v", c.Recommendation, c.ExpectedGain)
			}
			if c.Impact != 1 {
				t.Errorf("impact %.2f: the database idles on every held connection", c.Impact)
			}
		})
	}
	near := []struct {
		name string
		in   *Input
		why  string
	}{
		{"the pool never fills", pgPoolRun(pgPoolFamilies["pgxpool"], 16, 5, 0.001, pgIdleSessions(16)), "the pool never filled"},
		{"full but nobody waits", func() *Input {
			in := pgPoolRun(pgPoolFamilies["pgxpool"], 4, 4, 0.0001, pgIdleSessions(4))
			for i := range in.Metrics {
				for j := range in.Metrics[i].Samples {
					if in.Metrics[i].Samples[j].Name == "pgxpool_empty_acquire_count_total" {
						zero := 0.0
						in.Metrics[i].Samples[j].Rate = &zero
					}
				}
			}
			return in
		}(), "requests did not wait for connections"},
		{"the database is busy", pgPoolRun(pgPoolFamilies["pgxpool"], 16, 16, 3, &evidence.PGActivity{Sessions: 16, States: map[string]int{"active": 15, "idle": 1}}),
			"the database is the limit, not the pool's size"},
		{"the connections wait on locks", pgPoolRun(pgPoolFamilies["pgxpool"], 16, 16, 3, &evidence.PGActivity{Sessions: 16,
			States: map[string]int{"active": 14, "idle in transaction": 1, "idle": 1}, WaitType: map[string]int{"Lock": 13}}), "see db.lock-wait"},
		{"a healthy pool fills only under overload", func() *Input {
			fam := pgPoolFamilies["pgxpool"]
			stmts := []evidence.PGStatement{pgStmtDelta(11, "SELECT id, total FROM invoices WHERE id = $1", 4000, 0.05)}
			return pgRun(
				pgRunStep{rps: 20, latencyMS: 2, stmts: stmts, metrics: fam(0.1, 2, 16, 20, 0, 0)},
				pgRunStep{rps: 4000, latencyMS: 3, stmts: stmts, metrics: fam(4, 12, 16, 4000, 10, 0.01)},
				pgRunStep{rps: 8000, latencyMS: 900, failed: true, stmts: stmts, act: pgIdleSessions(16), metrics: fam(16, 0, 16, 6000, 5500, 4)},
			)
		}(), "held only for fast statements"},
		{"the target is CPU-bound: the pool fills as a symptom", func() *Input {
			in := pgPoolRun(pgPoolFamilies["pgxpool"], 2, 2, 3, pgIdleSessions(2))
			for _, st := range in.Steps {
				cpu := 0.1
				if !st.MetSLO {
					cpu = 1.9 // of the 2 cores, the generator using 0.05
				}
				for t := st.StartMS + 1000; t <= st.EndMS; t += 1000 {
					in.Proc = append(in.Proc,
						evidence.ProcRecord{T: t, Role: evidence.RoleTarget, PID: 10, IntervalMS: 1000, Process: &evidence.ProcessSample{Name: "shop", CPUCores: cpu}},
						evidence.ProcRecord{T: t, Role: evidence.RoleLoadgen, PID: 11, IntervalMS: 1000, Process: &evidence.ProcessSample{Name: "chokepoint", CPUCores: 0.05}},
						evidence.ProcRecord{T: t, Role: evidence.RoleMachine, IntervalMS: 1000, Machine: &evidence.MachineSample{Cores: 2, CPUBusy: min(1, (cpu+0.05)/2)}})
				}
			}
			return in
		}(), "the target is CPU-bound at the knee"},
		{"no pool metrics", pgPoolRun(func(float64, float64, float64, float64, float64, float64) []evidence.MetricSample {
			return []evidence.MetricSample{pgGauge("go_goroutines", 40), pgGauge("process_open_fds", 12), pgGauge("http_server_active_connections", 30)}
		}, 2, 2, 3, pgIdleSessions(2)), "could not check: the target exports no connection-pool metrics"},
	}
	for _, tc := range near {
		t.Run(tc.name, func(t *testing.T) { dbCheckNone(t, r, tc.in, tc.why) })
	}
}

func TestClassifyPool(t *testing.T) {
	cases := []struct {
		name string
		typ  string
		want pgPoolRole
	}{
		{"pgxpool_acquired_conns", evidence.MetricGauge, pgPoolInUse},
		{"pgxpool_constructing_conns", evidence.MetricGauge, pgPoolNone},
		{"pgxpool_max_conns", evidence.MetricGauge, pgPoolMax},
		{"pgxpool_empty_acquire_count_total", evidence.MetricCounter, pgPoolWaits},
		{"pgxpool_canceled_acquire_count_total", evidence.MetricCounter, pgPoolTimeouts},
		{"pgxpool_acquire_count_total", evidence.MetricCounter, pgPoolAcquires},
		{"pgxpool_acquire_duration_seconds_total", evidence.MetricCounter, pgPoolWaitTime},
		{"pgxpool_max_lifetime_destroy_count_total", evidence.MetricCounter, pgPoolNone},
		{"go_sql_max_open_connections", evidence.MetricGauge, pgPoolMax},
		{"go_sql_wait_count_total", evidence.MetricCounter, pgPoolWaits},
		{"go_sql_max_idle_time_closed_total", evidence.MetricCounter, pgPoolNone},
		{"hikaricp_connections_acquire_seconds_max", evidence.MetricGauge, pgPoolNone},
		{"hikaricp_connections_min", evidence.MetricGauge, pgPoolNone},
		{"hikaricp_connections_pending", evidence.MetricGauge, pgPoolPending},
		{"hikaricp_connections_acquire_seconds_count", evidence.MetricSummary, pgPoolWaitCount},
		{"http_server_active_connections", evidence.MetricGauge, pgPoolNone},
		{"process_open_fds", evidence.MetricGauge, pgPoolNone},
		{"go_goroutines", evidence.MetricGauge, pgPoolNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, _ := pgClassifyPool(evidence.MetricSample{Name: c.name, Type: c.typ}); got != c.want {
				t.Errorf("role %d, want %d", got, c.want)
			}
		})
	}
}
