package diagnose

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// FuzzDBEvidence feeds untrusted text (statements from the target's
// database, metric names from its /metrics, plans from its server) to the
// database rules' readers: none may panic, and what they return must be
// bounded by what they were given.
func FuzzDBEvidence(f *testing.F) {
	f.Add("UPDATE site_counters SET value = value + $1 WHERE name = $2", "pgxpool_acquired_conns", pgSeqScanPlan("public", "orders", 6))
	f.Add(`update "a""b".c set x=1`, "hikaricp_connections_acquire_seconds_sum", `[{"Plan": {"Node Type": "Seq Scan", "Plans": [{}]}}]`)
	f.Add("WITH x AS (SELECT 1) DELETE FROM only t", "db_client_connection_count", `{"Plan": {"Node Type": "Sort", "Sort Key": ["a"]}}`)
	f.Fuzz(func(t *testing.T, query, metric, plan string) {
		if tab := pgStatementTable(query); len(tab) > len(query) {
			t.Errorf("table %q longer than the statement", tab)
		}
		if pgHasParams(query) && !strings.Contains(query, "$") {
			t.Errorf("parameters found in %q without a $", query)
		}
		if id := pgIdent(query); query != "" && !strings.Contains(id, strings.ReplaceAll(query, `"`, `""`)) {
			t.Errorf("pgIdent(%q) = %q lost the name", query, id)
		}
		for _, typ := range []string{evidence.MetricGauge, evidence.MetricCounter, evidence.MetricSummary, ""} {
			role, unit := pgClassifyPool(evidence.MetricSample{Name: metric, Type: typ, Labels: map[string]string{"state": query}})
			if role != pgPoolNone && unit <= 0 {
				t.Errorf("role %d with unit %v", role, unit)
			}
		}
		p := &evidence.PGPlan{Query: query}
		if json.Valid([]byte(plan)) {
			p.Plan = json.RawMessage(plan)
		}
		p.SeqScans = []evidence.PGSeqScan{{Relation: metric, Filter: query}}
		pi := pgAnalysePlan(p)
		for _, n := range pi.Nodes {
			if n.Share < 0 {
				t.Errorf("negative cost share %v", n.Share)
			}
		}
	})
}

func TestDBCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 200000: "200,000", -1234567: "-1,234,567"} {
		if got := dbCount(n); got != want {
			t.Errorf("dbCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDBLocusTable(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"public", "orders"}: "orders", {"", "public.orders"}: "orders", {"shop", "orders"}: "shop.orders",
		{"", "shop.orders"}: "shop.orders", {"", "orders"}: "orders",
	} {
		if got := dbLocusTable(in[0], in[1]); got != want {
			t.Errorf("dbLocusTable(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
	if !strings.Contains(pgIdent("Orders"), `"Orders"`) || pgIdent("orders") != "orders" {
		t.Error("pgIdent quotes only what needs it")
	}
}
