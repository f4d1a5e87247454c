package schemas

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

func ptr(f float64) *float64 { return &f }

// fullReport sets every field of report.Report, so that a field the schema
// does not know (or a renamed tag) fails validation.
func fullReport() report.Report {
	lat := report.Latency{P50: 3.1, P90: 5, P99: 9.7, Max: 14}
	return report.Report{
		Schema: report.Schema,
		Status: "complete",
		Target: report.Target{URLs: []string{"http://127.0.0.1:8080/orders"}, Scenario: "orders.yaml", PID: 4242},
		SLO:    report.SLO{P99MS: 500, ErrorRate: 0.01},
		Capacity: report.Capacity{
			MaxRPS: ptr(812), FirstFailingRPS: ptr(900), KneeRPS: ptr(700),
			LimitedBy: "db.missing-index",
			USL:       &report.USL{Sigma: 0.03, Kappa: 0.0004, Lambda: 210, R2: 0.98, Reliable: true},
		},
		Steps: []report.Step{{Index: 3, Phase: "refine", OfferedRPS: 100, AchievedRPS: 99.8, ErrorRate: 0, InflightMean: 0.4, Latency: lat,
			StartMS: 1700000000000, EndMS: 1700000005000, Requests: 499, Late: 1, Dropped: 0, MetSLO: true, LoadgenCPU: 0.2}},
		Endpoints: []report.Endpoint{{Name: "GET /orders", Requests: 12000, ErrorRate: 0, Latency: lat}},
		Findings: []report.Finding{{
			Kind: "db.missing-index", Title: "Sequential scan of orders on every GET /orders", Severity: report.SeverityCritical,
			Impact: 0.83, Confidence: 0.9,
			Locus: report.Locus{Endpoint: "GET /orders", Function: "main.(*store).ordersByCustomer",
				Query: "SELECT id FROM orders WHERE customer_id = $1", Table: "orders", Columns: []string{"customer_id"},
				Downstream: "GET http://127.0.0.1:9090/price", Process: "postgres", Limit: 64, Resource: "cpu"},
			Evidence:       []report.Evidence{{Source: "postgres", What: "mean execution time", Value: 41.2, Unit: "ms"}},
			Recommendation: "CREATE INDEX CONCURRENTLY ON orders (customer_id);",
			ExpectedGain:   &report.ExpectedGain{Metric: "max_rps", From: 812, To: 4100, Method: "queueing model"},
		}},
		RuledOut: []report.RuledOut{{Kind: "lock.contention", Why: "mutex wait 0.1% of wall time"}},
		Coverage: []report.Coverage{{Source: "pprof", Status: "ok", Detail: "cpu, heap, mutex"}, {Source: "otlp", Status: "unavailable", Detail: "no spans: start the target with OTEL_EXPORTER_OTLP_ENDPOINT"}},
		Loadgen:  &report.LoadgenInfo{CPUShareAtKnee: 0.1, SharedMachine: true},
		StartMS:  1700000000000, EndMS: 1700000060000,
		Notes: []string{"target shares the machine with the generator"},
	}
}

// minimalReport is what a hunt interrupted before its first step writes.
func minimalReport() report.Report {
	return report.Report{
		Schema: report.Schema, Status: "partial",
		Target:   report.Target{URLs: []string{"http://127.0.0.1:8080/"}},
		SLO:      report.SLO{P99MS: 500, ErrorRate: 0.01},
		Capacity: report.Capacity{LimitedBy: report.LimitedNotReached},
		Steps:    []report.Step{}, Endpoints: []report.Endpoint{}, Findings: []report.Finding{},
		RuledOut: []report.RuledOut{}, Coverage: []report.Coverage{},
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutate decodes doc, lets f change it, and encodes it again.
func mutate(t *testing.T, doc []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	return marshal(t, m)
}

func at(m map[string]any, path ...any) map[string]any {
	var cur any = m
	for _, p := range path {
		switch k := p.(type) {
		case string:
			cur = cur.(map[string]any)[k]
		case int:
			cur = cur.([]any)[k]
		}
	}
	return cur.(map[string]any)
}

func TestAllSchemasCompile(t *testing.T) {
	names := Names()
	for _, want := range []string{"compare.v1.json", "manifest.v1.json", "report.v1.json"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("Names() = %v, missing %s", names, want)
		}
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			err := Validate(n, []byte(`{}`))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate(%s, {}) = %v, want a mismatch (the schema must compile and require fields)", n, err)
			}
		})
	}
}

func TestReportValid(t *testing.T) {
	noneFound := minimalReport()
	noneFound.Status = "complete"
	noneFound.Capacity = report.Capacity{MaxRPS: ptr(100000), LimitedBy: report.LimitedNoneFound,
		USL: &report.USL{Reliable: false, Note: "too few steps"}}
	tests := map[string]report.Report{"full": fullReport(), "minimal": minimalReport(), "none-found": noneFound}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			for _, schema := range []string{"report.v1.json", "report.v1", report.Schema} {
				if err := Validate(schema, marshal(t, r)); err != nil {
					t.Fatalf("Validate(%s): %v", schema, err)
				}
			}
		})
	}
}

func TestReportInvalid(t *testing.T) {
	valid := marshal(t, fullReport())
	tests := []struct {
		name        string
		change      func(m map[string]any)
		wantPointer string
		wantMsg     string
	}{
		{"missing schema", func(m map[string]any) { delete(m, "schema") }, "", "'schema'"},
		{"wrong schema", func(m map[string]any) { m["schema"] = "chokepoint.report/v2" }, "/schema", "chokepoint.report/v1"},
		{"bad status", func(m map[string]any) { m["status"] = "done" }, "/status", "complete"},
		{"bad severity", func(m map[string]any) { at(m, "findings", 0)["severity"] = "high" }, "/findings/0/severity", "critical"},
		{"unknown limited_by", func(m map[string]any) { at(m, "capacity")["limited_by"] = "db.too-slow" }, "/capacity/limited_by", "none-found"},
		{"unknown finding kind", func(m map[string]any) { at(m, "findings", 0)["kind"] = "cpu.hot" }, "/findings/0/kind", "cpu.hot-path"},
		{"bad coverage source", func(m map[string]any) { at(m, "coverage", 0)["source"] = "jaeger" }, "/coverage/0/source", "otlp"},
		{"bad coverage status", func(m map[string]any) { at(m, "coverage", 0)["status"] = "fine" }, "/coverage/0/status", "unavailable"},
		{"bad gain metric", func(m map[string]any) { at(m, "findings", 0, "expected_gain")["metric"] = "rps" }, "/findings/0/expected_gain/metric", "heap_bytes"},
		{"bad resource", func(m map[string]any) { at(m, "findings", 0, "locus")["resource"] = "gpu" }, "/findings/0/locus/resource", "db-pool"},
		{"impact above 1", func(m map[string]any) { at(m, "findings", 0)["impact"] = 1.5 }, "/findings/0/impact", "maximum"},
		{"missing-index without table", func(m map[string]any) { delete(at(m, "findings", 0, "locus"), "table") }, "/findings/0/locus", "'table'"},
		{"max_rps missing", func(m map[string]any) { delete(at(m, "capacity"), "max_rps") }, "/capacity", "'max_rps'"},
		{"steps null", func(m map[string]any) { m["steps"] = nil }, "/steps", "want array"},
		{"undocumented field", func(m map[string]any) { at(m, "slo")["p95_ms"] = 3 }, "/slo", "'p95_ms'"},
		{"latency p99 missing", func(m map[string]any) { delete(at(m, "endpoints", 0, "latency_ms"), "p99") }, "/endpoints/0/latency_ms", "'p99'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate("report.v1.json", mutate(t, valid, tt.change))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want an *Error", err)
			}
			for _, p := range e.Problems {
				if p.Pointer == tt.wantPointer && strings.Contains(p.Message, tt.wantMsg) {
					return
				}
			}
			t.Fatalf("no problem at %q mentioning %q in: %v", tt.wantPointer, tt.wantMsg, err)
		})
	}
}

func TestLocusRulesPerKind(t *testing.T) {
	// Each kind with the locus CONTRACT.md §5 asks for passes; an empty locus fails.
	loci := map[string]report.Locus{
		"cpu.hot-path":             {Function: "main.work", Resource: "cpu"},
		"cpu.throttled":            {Resource: "cpu"},
		"gc.pressure":              {Function: "main.alloc"},
		"memory.leak":              {Function: "main.grow"},
		"lock.contention":          {Function: "main.(*cache).get", Resource: "lock"},
		"concurrency.limit":        {Resource: "concurrency", Limit: 8},
		"db.missing-index":         {Table: "orders", Columns: []string{"customer_id"}, Query: "SELECT 1"},
		"db.slow-query":            {Query: "SELECT 1"},
		"db.n-plus-one":            {Endpoint: "GET /o", Query: "SELECT 1"},
		"db.pool-exhausted":        {Resource: "db-pool", Limit: 4},
		"db.lock-wait":             {Table: "orders", Query: "UPDATE orders SET x = $1"},
		"db.connections-saturated": {Resource: "db-connections", Limit: 100},
		"db.connection-churn":      {Resource: "db-connections"},
		"downstream.slow":          {Downstream: "GET http://127.0.0.1:9090/price"},
		"downstream.serial":        {Endpoint: "GET /o", Downstream: "GET http://127.0.0.1:9090/price"},
		"downstream.redundant":     {Endpoint: "GET /o", Query: "SELECT 1"},
		"cache.opportunity":        {Query: "SELECT 1"},
		"io.disk":                  {Resource: "disk"},
		"net.connection-limit":     {Resource: "fd", Process: "nginx"},
		"errors.under-load":        {Endpoint: "GET /o"},
		"payload.large":            {Endpoint: "GET /o"},
		"loadgen.saturated":        {Resource: "concurrency"},
	}
	for kind, locus := range loci {
		t.Run(kind, func(t *testing.T) {
			r := minimalReport()
			r.Findings = []report.Finding{{Kind: kind, Title: kind, Severity: "major", Impact: 0.5, Confidence: 0.8,
				Locus: locus, Evidence: []report.Evidence{}, Recommendation: "fix it"}}
			if err := Validate("report.v1.json", marshal(t, r)); err != nil {
				t.Fatalf("with its locus: %v", err)
			}
			r.Findings[0].Locus = report.Locus{}
			if err := Validate("report.v1.json", marshal(t, r)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("with an empty locus: %v, want a mismatch", err)
			}
		})
	}
}

func TestManifest(t *testing.T) {
	m := run.Manifest{Schema: run.ManifestSchema, Command: "hunt", Args: []string{"http://127.0.0.1:8080/", "-H", "Authorization: <redacted>"},
		Version: "v0.1.0", GoVersion: "go1.26.8", Machine: run.ThisMachine(), StartMS: 1700000000000, EndMS: 1700000060000,
		Status: run.StatusPartial, StatusNote: "interrupted"}
	valid := marshal(t, m)
	if err := Validate("chokepoint.manifest/v1", valid); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	running := m
	running.EndMS, running.StatusNote, running.Status = 0, "", run.StatusRunning
	if err := Validate("manifest.v1.json", marshal(t, running)); err != nil {
		t.Fatalf("running manifest: %v", err)
	}
	for name, change := range map[string]func(map[string]any){
		"bad status":   func(m map[string]any) { m["status"] = "ok" },
		"missing args": func(m map[string]any) { delete(m, "args") },
		"zero cores":   func(m map[string]any) { at(m, "machine")["cores"] = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			if err := Validate("manifest.v1.json", mutate(t, valid, change)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want a mismatch", err)
			}
		})
	}
}

const compareExample = `{
  "schema": "chokepoint.compare/v1",
  "verdict": "improved",
  "regression": false,
  "a": {"dir": "runs/before", "status": "complete", "command": "hunt", "chokepoint_version": "v0.1.0", "start_ms": 1700000000000, "scenario": "orders.yaml", "urls": ["http://127.0.0.1:8080"], "machine": {"cores": 2}},
  "b": {"dir": "runs/after", "status": "complete"},
  "tolerance": {"capacity_pct": 5, "p99_pct": 10},
  "capacity": {"a_rps": 812, "b_rps": 4100, "ratio": 5.05, "ratio_low": 4.6, "ratio_high": 5.5, "uncertainty": "step spacing", "limited_by_a": "db.missing-index", "limited_by_b": "cpu.hot-path", "change": "improved"},
  "endpoints": [
    {"name": "GET /orders", "a": {"requests": 12000, "error_rate": 0, "p50_ms": 3, "p99_ms": 40}, "b": {"requests": 50000, "error_rate": 0, "p50_ms": 0.8, "p99_ms": 4}, "p50_ratio": 0.27, "p99_ratio": 0.1, "p_value": 0.0001, "change": "improved"},
    {"name": "GET /new", "a": null, "b": {"requests": 10, "error_rate": 0, "p50_ms": 1, "p99_ms": 2}, "p_value": null, "change": "unknown"}
  ],
  "findings": {
    "resolved": [{"kind": "db.missing-index", "locus": {"table": "orders", "columns": ["customer_id"], "query": "SELECT id FROM orders WHERE customer_id = $1"}, "severity_a": "critical"}],
    "new": [],
    "remaining": [{"kind": "gc.pressure", "locus": {"function": "encoding/json.Marshal"}, "severity_a": "minor", "severity_b": "major"}]
  },
  "warnings": [{"code": "version-differs", "message": "run A was made by v0.1.0, run B by v0.2.0", "decisive": false}]
}`

func TestCompare(t *testing.T) {
	valid := []byte(compareExample)
	if err := Validate("compare.v1.json", valid); err != nil {
		t.Fatalf("valid compare: %v", err)
	}
	tests := []struct {
		name, pointer string
		change        func(m map[string]any)
	}{
		{"bad verdict", "/verdict", func(m map[string]any) { m["verdict"] = "better" }},
		{"missing warnings", "", func(m map[string]any) { delete(m, "warnings") }},
		{"bad finding kind", "/findings/resolved/0/kind", func(m map[string]any) { at(m, "findings")["resolved"].([]any)[0].(map[string]any)["kind"] = "db.index" }},
		{"bad warning code", "/warnings/0/code", func(m map[string]any) { at(m, "warnings", 0)["code"] = "other" }},
		{"p_value above 1", "/endpoints/0/p_value", func(m map[string]any) { at(m, "endpoints", 0)["p_value"] = 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate("compare.v1.json", mutate(t, valid, tt.change))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate = %v, want an *Error", err)
			}
			for _, p := range e.Problems {
				if p.Pointer == tt.pointer {
					return
				}
			}
			t.Fatalf("no problem at %q in: %v", tt.pointer, err)
		})
	}
}

func TestValidateInput(t *testing.T) {
	if err := Validate("nope.v1.json", []byte(`{}`)); err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown schema: %v", err)
	}
	err := Validate("report.v1.json", []byte(`{"schema":`))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("broken JSON: %v", err)
	}
	r := minimalReport()
	r.Status = "nope"
	r.SLO.ErrorRate = 2
	err = Validate("report.v1.json", marshal(t, r))
	if err == nil || !strings.Contains(err.Error(), "report.v1.json: /slo/error_rate: ") || !strings.Contains(err.Error(), "; /status: ") {
		t.Errorf("error %v should name both pointers, in document order", err)
	}
}
