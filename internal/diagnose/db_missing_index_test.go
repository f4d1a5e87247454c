package diagnose

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

const (
	pgQHistory   = "SELECT id, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2"
	pgQHistoryID = int64(-1994010768808878850)
)

// pgSeqScanPlan is EXPLAIN (FORMAT JSON, VERBOSE) of a filtered, sorted
// sequential scan, as PostgreSQL 15 writes it.
func pgSeqScanPlan(schema, table string, planRows float64) string {
	return fmt.Sprintf(`[{"Plan": {"Node Type": "Limit", "Startup Cost": 4616.68, "Total Cost": 4616.79, "Plan Rows": 1, "Plan Width": 43,
 "Plans": [{"Node Type": "Sort", "Parent Relationship": "Outer", "Startup Cost": 3616.67, "Total Cost": 3616.68, "Plan Rows": %[3]g, "Plan Width": 43,
  "Sort Key": ["%[2]s.created_at DESC"],
  "Plans": [{"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "%[2]s", "Schema": "%[1]s", "Alias": "%[2]s",
   "Startup Cost": 0.0, "Total Cost": 3616.59, "Plan Rows": %[3]g, "Plan Width": 43, "Filter": "(%[2]s.customer_id = $1)"}]}]}}]`, schema, table, planRows)
}

// pgIndexRun is a run whose one statement scans a table of live rows: fast
// at low load, dominating at the knee.
func pgIndexRun(schema, table string, live int64, planRows float64, meanMS float64) *Input {
	q := strings.ReplaceAll(pgQHistory, "orders", table)
	if schema != "public" {
		q = strings.ReplaceAll(pgQHistory, "orders", schema+"."+table)
	}
	tab := func(calls int64) []evidence.PGTable {
		return []evidence.PGTable{{Schema: schema, Name: table, SeqScan: calls, SeqTupRead: calls * live, LiveTuples: live}}
	}
	in := pgRun(
		pgRunStep{rps: 10, latencyMS: meanMS + 2, stmts: []evidence.PGStatement{pgStmtDelta(pgQHistoryID, q, 10, meanMS), pgStmtDelta(7, "SELECT 1", 10, 0.01)}, tables: tab(10)},
		pgRunStep{rps: 40, latencyMS: 4*meanMS + 2, failed: true, stmts: []evidence.PGStatement{pgStmtDelta(pgQHistoryID, q, 40, 4*meanMS), pgStmtDelta(7, "SELECT 1", 40, 0.01)}, tables: tab(40)},
	)
	return pgWithPlan(in, pgQHistoryID, q, pgSeqScanPlan(schema, table, planRows))
}

func TestMissingIndex(t *testing.T) {
	r := dbMissingIndex{}
	t.Run("fires on a selective scan of a large table", func(t *testing.T) {
		c := dbCheckOne(t, r, pgIndexRun("public", "orders", 200_000, 6, 20))
		if !c.Limiting {
			t.Error("not limiting")
		}
		l := c.Locus
		if l.Table != "orders" || strings.Join(l.Columns, ",") != "customer_id" || l.Query != pgQHistory || l.Endpoint != "GET /things" {
			t.Errorf("locus %+v", l)
		}
		if !strings.HasPrefix(c.Recommendation, "CREATE INDEX CONCURRENTLY ON orders (customer_id, created_at);") {
			t.Errorf("recommendation %q", c.Recommendation)
		}
		if c.ExpectedGain == nil || c.ExpectedGain.Metric != "max_rps" {
			t.Errorf("gain %+v", c.ExpectedGain)
		}
		if c.Confidence < 0.8 {
			t.Errorf("confidence %.2f: table scans and latency share agree", c.Confidence)
		}
	})
	t.Run("schema outside public is kept", func(t *testing.T) {
		c := dbCheckOne(t, r, pgIndexRun("shop", "orders", 200_000, 6, 20))
		if c.Locus.Table != "shop.orders" || !strings.HasPrefix(c.Recommendation, "CREATE INDEX CONCURRENTLY ON shop.orders (") {
			t.Errorf("table %q, recommendation %q", c.Locus.Table, c.Recommendation)
		}
	})
	t.Run("hypothetical index cost is shown", func(t *testing.T) {
		in := pgIndexRun("public", "orders", 200_000, 6, 20)
		in.Postgres[len(in.Postgres)-1].Plan.Hypo = []evidence.PGHypoResult{{Index: "CREATE INDEX ON orders (customer_id, created_at)", CostBefore: 4616.79, CostAfter: 12.4, Used: true}}
		c := dbCheckOne(t, r, in)
		found := false
		for _, e := range c.Evidence {
			if strings.Contains(e.What, "hypothetical") && e.Value == 12.4 {
				found = true
			}
		}
		if !found || c.Confidence < 0.9 {
			t.Errorf("hypothetical cost not in evidence or confidence %.2f: %+v", c.Confidence, c.Evidence)
		}
	})

	near := []struct {
		name string
		in   *Input
		why  string
	}{
		{"tiny table", pgIndexRun("public", "orders", 5_000, 2, 20), "5,000 live rows, below the 10,000"},
		{"filter keeps most rows", pgIndexRun("public", "orders", 200_000, 150_000, 20), "above the 10% an index serves"},
		{"negligible statement", pgIndexRun("public", "orders", 200_000, 6, 0.05), "below 30% of database time and 20% of latency"},
		{"the planner would not use the index", func() *Input {
			in := pgIndexRun("public", "orders", 200_000, 6, 20)
			in.Postgres[len(in.Postgres)-1].Plan.Hypo = []evidence.PGHypoResult{{Index: "CREATE INDEX ON orders (customer_id)", CostBefore: 4616, CostAfter: 4616}}
			return in
		}(), "would not gain from an index"},
		{"no plan", func() *Input {
			in := pgIndexRun("public", "orders", 200_000, 6, 20)
			in.Postgres = in.Postgres[:len(in.Postgres)-1]
			return in
		}(), "no plan was recorded"},
		{"pg_stat_statements missing", func() *Input {
			in := pgIndexRun("public", "orders", 200_000, 6, 20)
			in.Postgres[0].Server.PGStatStatements = false
			in.Postgres[0].Server.PGStatStatementsWhy = "the extension is not created in this database"
			return in
		}(), "could not check: pg_stat_statements is unusable"},
	}
	for _, tc := range near {
		t.Run(tc.name, func(t *testing.T) { dbCheckNone(t, r, tc.in, tc.why) })
	}
}

const (
	pgQSales   = "SELECT p.id, sum(o.total) AS revenue FROM orders o JOIN products p ON p.id = o.product_id WHERE p.category = $1 GROUP BY p.id ORDER BY revenue DESC LIMIT $2"
	pgQSalesID = int64(2015347696449449324)
)

// pgAggregatePlan joins a full scan of a large table to a small filtered one
// and aggregates.
const pgAggregatePlan = `[{"Plan": {"Node Type": "Limit", "Startup Cost": 5964.63, "Total Cost": 5964.76, "Plan Rows": 50, "Plan Width": 40,
 "Plans": [{"Node Type": "Sort", "Startup Cost": 5964.63, "Total Cost": 5965.88, "Plan Rows": 500, "Sort Key": ["(sum(o.total)) DESC"],
  "Plans": [{"Node Type": "Aggregate", "Startup Cost": 5935.97, "Total Cost": 5942.22, "Plan Rows": 500,
   "Plans": [{"Node Type": "Hash Join", "Startup Cost": 1170.94, "Total Cost": 5842.22, "Plan Rows": 12500,
    "Plans": [{"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public", "Alias": "o", "Startup Cost": 0, "Total Cost": 4146, "Plan Rows": 200000},
              {"Node Type": "Hash", "Startup Cost": 1164.69, "Total Cost": 1164.69, "Plan Rows": 500,
               "Plans": [{"Node Type": "Seq Scan", "Relation Name": "products", "Schema": "public", "Alias": "p", "Startup Cost": 0, "Total Cost": 1164.69, "Plan Rows": 500, "Filter": "(p.category = $1)"}]}]}]}]}]}}]`

func pgSlowRun(query string, meanMS float64, callsPerReq int64) *Input {
	tabs := []evidence.PGTable{{Schema: "public", Name: "orders", SeqScan: 10, SeqTupRead: 2_000_000, LiveTuples: 200_000},
		{Schema: "public", Name: "products", SeqScan: 10, SeqTupRead: 80_000, LiveTuples: 8_000}}
	in := pgRun(
		pgRunStep{rps: 10, latencyMS: meanMS*float64(callsPerReq) + 3, stmts: []evidence.PGStatement{pgStmtDelta(pgQSalesID, query, 10*callsPerReq, meanMS)}, tables: tabs},
		pgRunStep{rps: 40, latencyMS: 3*meanMS*float64(callsPerReq) + 3, failed: true, stmts: []evidence.PGStatement{pgStmtDelta(pgQSalesID, query, 40*callsPerReq, 3*meanMS)}, tables: tabs},
	)
	return pgWithPlan(in, pgQSalesID, query, pgAggregatePlan)
}

func TestSlowQuery(t *testing.T) {
	r := dbSlowQuery{}
	t.Run("fires on a dominant aggregate over a large table", func(t *testing.T) {
		c := dbCheckOne(t, r, pgSlowRun(pgQSales, 100, 1))
		if !c.Limiting || c.Locus.Query != pgQSales || c.Locus.Endpoint != "GET /things" {
			t.Errorf("limiting %v, locus %+v", c.Limiting, c.Locus)
		}
		if !strings.Contains(c.Recommendation, "precompute the aggregate") || !strings.Contains(c.Title, "Seq Scan on orders") {
			t.Errorf("title %q, recommendation %q", c.Title, c.Recommendation)
		}
		if strings.Contains(c.Recommendation, "ORDER BY from an index") {
			t.Errorf("the sort is a small share of the plan; recommendation %q", c.Recommendation)
		}
	})
	t.Run("a statement without parameters is a cache opportunity, not the limit", func(t *testing.T) {
		c := dbCheckOne(t, r, pgSlowRun("SELECT category, count(*) FROM products GROUP BY category", 100, 1))
		if c.Limiting || !strings.Contains(c.Recommendation, "cache") {
			t.Errorf("limiting %v, recommendation %q", c.Limiting, c.Recommendation)
		}
	})
	near := []struct {
		name string
		in   *Input
		why  string
	}{
		{"fast statement called per item", pgSlowRun(pgQSales, 2, 10), "below the 5 ms of a slow query"},
		{"slowish statement called per item", pgSlowRun(pgQSales, 8, 10), "per-item pattern (db.n-plus-one)"},
		{"missing index instead", pgIndexRun("public", "orders", 200_000, 6, 20), "a missing index, not a slow query"},
		{"not dominant", func() *Input {
			in := pgSlowRun(pgQSales, 100, 1)
			for i := range in.Postgres {
				if in.Postgres[i].Kind == evidence.PGKindStatements {
					s := in.Postgres[i].Statements[0]
					in.Postgres[i].Statements = append([]evidence.PGStatement{s},
						pgStmtDelta(98, "UPDATE stock SET n = n - $1 WHERE id = $2", s.Calls, s.MeanExecMS),
						pgStmtDelta(99, "SELECT id FROM carts WHERE id = $1", s.Calls, s.MeanExecMS))
				}
			}
			return in
		}(), "no statement dominates"},
	}
	for _, tc := range near {
		t.Run(tc.name, func(t *testing.T) { dbCheckNone(t, r, tc.in, tc.why) })
	}
}
