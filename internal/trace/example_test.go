package trace_test

import (
	"fmt"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/trace"
)

func ExampleAnalyze() {
	const ms = int64(1e6)
	spans := []evidence.Span{{
		TraceID: "t1", SpanID: "root", Kind: evidence.SpanKindServer,
		HTTPMethod: "GET", HTTPRoute: "/orders", StartNS: 0, EndNS: 100 * ms,
	}}
	for i := range 8 {
		spans = append(spans, evidence.Span{
			TraceID: "t1", SpanID: fmt.Sprint("q", i), ParentID: "root", Kind: evidence.SpanKindClient,
			DBSystem: "postgresql", DBQuery: "SELECT * FROM items WHERE order_id = $1", DBArgs: fmt.Sprint(i),
			StartNS: int64(10+10*i) * ms, EndNS: int64(15+10*i) * ms,
		})
	}
	for _, ep := range trace.Analyze(spans) {
		for _, p := range ep.NPlusOne {
			fmt.Printf("%s: %q runs %.0f times per request (%.0f%% of its latency)\n",
				ep.Endpoint, p.Resource.Name, p.MeanCount, 100*p.LatencyShare)
		}
	}
	// Output: GET /orders: "SELECT * FROM items WHERE order_id = $1" runs 8 times per request (40% of its latency)
}
