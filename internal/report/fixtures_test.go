package report

import "math"

func fp(v float64) *float64 { return &v }

// Representative reports, shared by the golden, HTML and browser tests.

const t0 = int64(1_790_000_000_000)

// hunted builds the steps of a target that holds p99 ~ base ms up to
// capacity and then queues.
func hunted(rates []float64, capacity, base, slo float64) []Step {
	var out []Step
	start := t0 + 3000
	for i, r := range rates {
		met := r <= capacity
		p99 := base * (1 + r/capacity/4)
		if !met {
			p99 = slo * 2.5 * r / capacity
		}
		achieved := math.Min(r, capacity*1.04)
		out = append(out, Step{Index: i + 1, Phase: "probe", OfferedRPS: r, AchievedRPS: achieved,
			InflightMean: achieved * p99 / 1000 / 3,
			Latency:      Latency{P50: p99 / 5, P90: p99 / 2, P99: p99, Max: p99 * 1.6},
			StartMS:      start, EndMS: start + 5000, Requests: int64(achieved * 5), MetSLO: met})
		start += 5000
	}
	return out
}

func completeReport() *Report {
	rates := []float64{100, 200, 400, 800, 1600, 1200, 1000, 900}
	return &Report{
		Schema: Schema, Status: "complete",
		Target: Target{URLs: []string{"http://127.0.0.1:8080/orders?customer=7"}, PID: 4242},
		SLO:    SLO{P99MS: 500, ErrorRate: 0.01},
		Capacity: Capacity{MaxRPS: fp(812), FirstFailingRPS: fp(900), KneeRPS: fp(700), LimitedBy: "db.missing-index",
			USL: &USL{Sigma: 0.03, Kappa: 0.0004, Lambda: 210, R2: 0.98, Reliable: true}},
		Steps: hunted(rates, 850, 40, 500),
		Endpoints: []Endpoint{
			{Name: "GET /orders", Requests: 41000, ErrorRate: 0.002, Latency: Latency{P50: 12, P90: 60, P99: 310, Max: 2400}},
			{Name: "GET /health", Requests: 9000, Latency: Latency{P50: 0.4, P90: 0.7, P99: 1.9, Max: 12}},
		},
		Findings: []Finding{
			{
				Kind: "db.missing-index", Title: "Sequential scan of orders (1.2M rows) on every GET /orders", Severity: SeverityCritical,
				Impact: 0.83, Confidence: 0.9,
				Locus: Locus{Endpoint: "GET /orders", Query: "SELECT id, total FROM orders WHERE customer_id = $1", Table: "orders", Columns: []string{"customer_id"}},
				Evidence: []Evidence{
					{Source: "postgres", What: "share of database time", Value: 0.83, Unit: "ratio"},
					{Source: "postgres", What: "mean execution time", Value: 41.2, Unit: "ms"},
				},
				Recommendation: "CREATE INDEX CONCURRENTLY ON orders (customer_id);",
				ExpectedGain:   &ExpectedGain{Metric: "max_rps", From: 812, To: 4100, Method: "database time per request removed"},
			},
			{
				Kind: "db.pool-exhausted", Title: "Requests wait for one of 10 pool connections", Severity: SeverityMajor,
				Impact: 0.31, Confidence: 0.7,
				Locus:          Locus{Resource: "db-pool", Limit: 10, Function: "github.com/acme/shop/store.(*Store).Orders"},
				Evidence:       []Evidence{{Source: "metrics", What: "pool wait time per request", Value: 18, Unit: "ms"}},
				Recommendation: "Raise the pool to 32 connections (pgxpool MaxConns).",
			},
		},
		RuledOut: []RuledOut{
			{Kind: "cpu.hot-path", Why: "the target used 0.4 of 8 cores at the knee"},
			{Kind: "lock.contention", Why: "mutex wait 0.1% of wall time"},
		},
		Coverage: []Coverage{
			{Source: "loadgen", Status: "ok", Detail: "client-side latency, errors and throughput per endpoint"},
			{Source: "pprof", Status: "ok", Detail: "cpu, heap, mutex, block"},
			{Source: "postgres", Status: "ok", Detail: "pg_stat_statements, pg_stat_activity"},
			{Source: "otlp", Status: "unavailable", Detail: "no spans received: export the target's traces to http://127.0.0.1:4318 (OTEL_EXPORTER_OTLP_ENDPOINT)"},
		},
		StartMS: t0, EndMS: t0 + 48_000,
	}
}

func noneFoundReport() *Report {
	return &Report{
		Schema: Schema, Status: "complete",
		Target: Target{URLs: []string{"http://127.0.0.1:8080/fast"}},
		SLO:    SLO{P99MS: 500, ErrorRate: 0.01},
		Capacity: Capacity{MaxRPS: fp(2000), LimitedBy: LimitedNoneFound,
			USL: &USL{Lambda: 2100, R2: 0.42, Note: "throughput never bent: nothing to fit"}},
		Steps:     hunted([]float64{250, 500, 1000, 2000}, 5000, 2, 500),
		Endpoints: []Endpoint{{Name: "GET /fast", Requests: 18750, Latency: Latency{P50: 0.4, P90: 0.8, P99: 2.1, Max: 9}}},
		Findings:  []Finding{},
		RuledOut:  []RuledOut{{Kind: "cpu.hot-path", Why: "the target used 0.9 of 8 cores at 2000 req/s"}},
		Coverage:  []Coverage{{Source: "loadgen", Status: "ok", Detail: "client-side latency"}, {Source: "postgres", Status: "unavailable", Detail: "no database given: pass --postgres DSN"}},
		StartMS:   t0, EndMS: t0 + 30_000,
	}
}

func loadgenReport() *Report {
	return &Report{
		Schema: Schema, Status: "complete",
		Target: Target{URLs: []string{"http://127.0.0.1:8080/search?q=lamp"}},
		SLO:    SLO{P99MS: 100, ErrorRate: 0.01},
		Capacity: Capacity{LimitedBy: LimitedLoadgen,
			USL: &USL{Lambda: 472, Note: "2 usable points: nothing to fit"}},
		Steps:     hunted([]float64{10, 20, 40}, 30, 3, 100),
		Endpoints: []Endpoint{{Name: "GET /search", Requests: 651, Latency: Latency{P50: 2.46, P90: 6.25, P99: 18.3, Max: 49.8}}},
		Findings: []Finding{{
			Kind: LimitedLoadgen, Title: "The load generator limited this test; the result is not the target's capacity", Severity: SeverityCritical,
			Impact: 1, Confidence: 0.9, Locus: Locus{Resource: "cpu"},
			Evidence:       []Evidence{{Source: "loadgen", What: "step 3 at 40 req/s: generator schedule lag p99 13.9ms above 10ms", Value: 1, Unit: "flag"}},
			Recommendation: "Give the generator more CPU (run it on another machine or core), raise --max-inflight, or hunt a lower --max-rate; then hunt again.",
		}},
		RuledOut: []RuledOut{},
		Coverage: []Coverage{{Source: "loadgen", Status: "ok", Detail: "client-side latency"}},
		Notes:    []string{"step 1 (10 req/s): p99 from 31 requests (fewer than 500)"},
		StartMS:  t0, EndMS: t0 + 22_000,
	}
}

func partialReport() *Report {
	return &Report{
		Schema: Schema, Status: "partial",
		Target: Target{URLs: []string{"http://127.0.0.1:8080/"}, Scenario: "shop.yaml"},
		SLO:    SLO{P99MS: 200, ErrorRate: 0.01},
		Capacity: Capacity{MaxRPS: fp(400), LimitedBy: LimitedNotReached,
			USL: &USL{Note: "3 usable points: too few to fit"}},
		Steps:     hunted([]float64{100, 200, 400}, 1000, 5, 200),
		Endpoints: []Endpoint{{Name: "list orders", Requests: 3500, Latency: Latency{P50: 1, P99: 6}}, {Name: "create order", Requests: 1200, ErrorRate: 0.004, Latency: Latency{P50: 3, P99: 11}}},
		Findings: []Finding{{
			Kind: "memory.leak", Title: "Heap grows by 2.1 MB per 1000 requests and is not released", Severity: SeverityMajor,
			Impact: 0.4, Confidence: 0.75, Locus: Locus{Function: "main.(*cache).put"},
			Evidence:       []Evidence{{Source: "pprof", What: "retained heap growth", Value: 2.1, Unit: "MB/1000 req"}},
			Recommendation: "Bound the cache (an LRU with a size limit) or expire its entries.",
			ExpectedGain:   &ExpectedGain{Metric: "heap_bytes", From: 512e6, To: 64e6, Method: "growth stops"},
		}},
		RuledOut: []RuledOut{},
		Coverage: []Coverage{{Source: "loadgen", Status: "ok", Detail: "client-side latency"}, {Source: "pprof", Status: "error", Detail: "connection refused at http://127.0.0.1:8080/debug/pprof: start the target with net/http/pprof"}},
		Notes:    []string{"interrupted (Ctrl-C) during step 4"},
		StartMS:  t0, EndMS: t0 + 17_000,
	}
}

// Markup an attacker could put in a target's URL, endpoint names, query
// text and function names.
const (
	xssScript = `<script>alert(1)</script>`
	xssImg    = `"><img src=x onerror=alert(1)>`
)

func xssReport() *Report {
	r := completeReport()
	evil := xssScript + xssImg
	r.Target.URLs = []string{"http://127.0.0.1:8080/" + evil + "?q=" + evil}
	r.Target.Scenario = evil + ".yaml"
	r.Endpoints[0].Name = "GET /" + evil
	f := &r.Findings[0]
	f.Title = "Sequential scan " + evil
	f.Locus.Endpoint = "GET /" + evil
	f.Locus.Query = "SELECT '" + evil + "' FROM orders WHERE note = $1"
	f.Locus.Function = "main.(*" + evil + ").ServeHTTP"
	f.Evidence[0].What = evil
	f.Recommendation = "CREATE INDEX ON orders (" + evil + ");"
	r.Coverage[3].Detail = evil
	r.RuledOut[0].Why = evil
	r.Notes = []string{evil}
	return r
}
