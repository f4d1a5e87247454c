package trace

import (
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

const ms = int64(1e6)

// sp builds a span of trace "t1" lasting [from, to) milliseconds.
func sp(id, parent, kind string, from, to int64, opts ...func(*evidence.Span)) evidence.Span {
	s := evidence.Span{TraceID: "t1", SpanID: id, ParentID: parent, Kind: kind, Name: id,
		StartNS: from * ms, EndNS: to * ms, T: from}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func inTrace(t string) func(*evidence.Span) { return func(s *evidence.Span) { s.TraceID = t } }

func route(method, r string) func(*evidence.Span) {
	return func(s *evidence.Span) { s.HTTPMethod, s.HTTPRoute = method, r }
}

func db(query, args string) func(*evidence.Span) {
	return func(s *evidence.Span) { s.DBSystem, s.DBQuery, s.DBArgs = "postgresql", query, args }
}

func get(url string) func(*evidence.Span) {
	return func(s *evidence.Span) { s.HTTPMethod, s.HTTPURL = "GET", url }
}

func root(to int64) evidence.Span {
	return sp("root", "", evidence.SpanKindServer, 0, to, route("GET", "/orders"))
}

const (
	qItems = "SELECT * FROM items WHERE order_id = $1"
	qUser  = "SELECT name FROM users WHERE id = $1"
)

func dbRes(q string) Resource   { return Resource{Kind: KindDB, Name: q} }
func httpRes(n string) Resource { return Resource{Kind: KindHTTP, Name: n} }

func analyzeOne(t *testing.T, spans []evidence.Span) Request {
	t.Helper()
	traces := Assemble(spans)
	if len(traces) != 1 {
		t.Fatalf("assembled %d traces, want 1", len(traces))
	}
	req := AnalyzeTrace(traces[0])
	checkCritical(t, req)
	return req
}

// checkCritical asserts the critical path partitions the request.
func checkCritical(t testing.TB, req Request) {
	t.Helper()
	at := req.StartNS
	var sum int64
	for _, s := range req.Critical {
		if s.StartNS != at || s.EndNS <= s.StartNS {
			t.Fatalf("critical path has a gap or overlap at %d: %+v", at, req.Critical)
		}
		at = s.EndNS
		sum += s.EndNS - s.StartNS
	}
	if sum != req.DurationNS {
		t.Fatalf("critical path sums to %d, request lasts %d", sum, req.DurationNS)
	}
}

type seg struct {
	Res      string
	From, To int64
}

func segs(req Request) []seg {
	var out []seg
	for _, s := range req.Critical {
		g := seg{s.Resource.String(), (s.StartNS - req.StartNS) / ms, (s.EndNS - req.StartNS) / ms}
		if l := len(out) - 1; l >= 0 && out[l].Res == g.Res && out[l].To == g.From {
			out[l].To = g.To // self time of nested spans, joined
			continue
		}
		out = append(out, g)
	}
	return out
}

func TestCriticalPath(t *testing.T) {
	cases := []struct {
		name  string
		spans []evidence.Span
		want  []seg
	}{
		{
			name: "overlapping children: the one ending last is critical",
			spans: []evidence.Span{
				root(100),
				sp("a", "root", evidence.SpanKindClient, 10, 30, db(qItems, "1")),
				sp("b", "root", evidence.SpanKindClient, 20, 60, get("http://127.0.0.1:9090/price")),
				sp("c", "root", evidence.SpanKindClient, 70, 80, db(qUser, "2")),
			},
			want: []seg{
				{"self", 0, 10}, {"db " + qItems, 10, 20}, {"http GET http://127.0.0.1:9090/price", 20, 60},
				{"self", 60, 70}, {"db " + qUser, 70, 80}, {"self", 80, 100},
			},
		},
		{
			name: "parallel calls: only the longest is critical",
			spans: []evidence.Span{
				root(50),
				sp("a", "root", evidence.SpanKindClient, 0, 40, get("http://a:1/x")),
				sp("b", "root", evidence.SpanKindClient, 0, 20, get("http://b:1/y")),
			},
			want: []seg{{"http GET http://a:1/x", 0, 40}, {"self", 40, 50}},
		},
		{
			name: "internal span: its own time is self, its calls are theirs",
			spans: []evidence.Span{
				root(100),
				sp("i", "root", evidence.SpanKindInternal, 10, 90),
				sp("d", "i", evidence.SpanKindClient, 20, 50, db(qItems, "1")),
			},
			want: []seg{{"self", 0, 20}, {"db " + qItems, 20, 50}, {"self", 50, 100}},
		},
		{
			name: "clock skew: a child past its parent is clamped",
			spans: []evidence.Span{
				root(100),
				sp("d", "root", evidence.SpanKindClient, 90, 130, db(qItems, "1")),
				sp("e", "root", evidence.SpanKindClient, -20, 10, db(qUser, "1")),
			},
			want: []seg{{"db " + qUser, 0, 10}, {"self", 10, 90}, {"db " + qItems, 90, 100}},
		},
		{
			name: "a downstream's own spans belong to the downstream",
			spans: []evidence.Span{
				root(100),
				sp("c", "root", evidence.SpanKindClient, 10, 90, get("http://inv:8080/stock")),
				sp("s", "c", evidence.SpanKindServer, 12, 88, route("GET", "/stock")),
				sp("q", "s", evidence.SpanKindClient, 20, 80, db(qUser, "1")),
			},
			want: []seg{{"self", 0, 10}, {"http GET http://inv:8080/stock", 10, 90}, {"self", 90, 100}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := analyzeOne(t, c.spans)
			if diff := cmp.Diff(c.want, segs(req)); diff != "" {
				t.Errorf("critical path (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAssembleHostile(t *testing.T) {
	cases := []struct {
		name            string
		spans           []evidence.Span
		root            string
		nodes, unplaced int
		adopted         []string
	}{
		{"missing parent is adopted by the root",
			[]evidence.Span{root(100), sp("d", "gone", evidence.SpanKindClient, 10, 20, db(qItems, "1"))},
			"root", 2, 0, []string{"d"}},
		{"orphan outside the root's time is left out",
			[]evidence.Span{root(100), sp("d", "gone", evidence.SpanKindClient, 500, 520)},
			"root", 1, 1, nil},
		{"parent cycle is cut",
			[]evidence.Span{root(100),
				sp("a", "b", evidence.SpanKindInternal, 10, 50), sp("b", "a", evidence.SpanKindInternal, 20, 40)},
			"root", 3, 0, []string{"a"}},
		{"self parent",
			[]evidence.Span{root(100), sp("a", "a", evidence.SpanKindInternal, 10, 50)},
			"root", 2, 0, []string{"a"}},
		{"duplicate span id",
			[]evidence.Span{root(100), sp("a", "root", evidence.SpanKindInternal, 10, 50), sp("a", "root", evidence.SpanKindInternal, 60, 70)},
			"root", 2, 1, nil},
		{"no parentless span: a cycle of two",
			[]evidence.Span{sp("a", "b", evidence.SpanKindServer, 0, 50), sp("b", "a", evidence.SpanKindInternal, 10, 20)},
			"a", 2, 0, nil},
		{"root found when a client span is parentless too",
			[]evidence.Span{sp("c", "", evidence.SpanKindClient, 0, 10), root(100)},
			"root", 2, 0, []string{"c"}},
		{"end before start",
			[]evidence.Span{root(100), sp("a", "root", evidence.SpanKindClient, 50, 40, db(qItems, "1"))},
			"root", 2, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			traces := Assemble(c.spans)
			if len(traces) != 1 {
				t.Fatalf("%d traces", len(traces))
			}
			tr := traces[0]
			if tr.Root.Span.SpanID != c.root || tr.Spans != c.nodes || tr.Unattached != c.unplaced {
				t.Errorf("root %s, %d nodes, %d unattached; want %s, %d, %d",
					tr.Root.Span.SpanID, tr.Spans, tr.Unattached, c.root, c.nodes, c.unplaced)
			}
			var adopted []string
			Walk(tr.Root, func(n *Node) {
				if n.Adopted {
					adopted = append(adopted, n.Span.SpanID)
				}
			})
			if diff := cmp.Diff(c.adopted, adopted); diff != "" {
				t.Errorf("adopted (-want +got):\n%s", diff)
			}
			checkCritical(t, AnalyzeTrace(tr))
		})
	}
}

// calls returns n sequential database calls of query q under parent,
// starting at from, 2 ms each, with arguments from args(i).
func calls(q, parent string, n int, from int64, args func(i int) string) []evidence.Span {
	var out []evidence.Span
	for i := range n {
		s := from + int64(i)*2
		out = append(out, sp(fmt.Sprintf("%s-%d", parent, i), parent, evidence.SpanKindClient, s, s+2, db(q, args(i))))
	}
	return out
}

func distinctArgs(i int) string { return fmt.Sprint("args", i) }
func sameArgs(int) string       { return "args" }
func unknownArgs(int) string    { return "" }

func TestRepeats(t *testing.T) {
	cases := []struct {
		name      string
		spans     []evidence.Span
		nPlusOne  []Repeat
		redundant []Repeat
	}{
		{"n+1: 25 statements with different parameters",
			append([]evidence.Span{root(100)}, calls(qItems, "root", 25, 0, distinctArgs)...),
			[]Repeat{{Resource: dbRes(qItems), Count: 25, Distinct: 25, TotalNS: 50 * ms}}, nil},
		{"n+1 with unknown parameters",
			append([]evidence.Span{root(100)}, calls(qItems, "root", 6, 0, unknownArgs)...),
			[]Repeat{{Resource: dbRes(qItems), Count: 6, Distinct: -1, TotalNS: 12 * ms}}, nil},
		{"n+1 counted across nested spans",
			append(append([]evidence.Span{root(100), sp("i", "root", evidence.SpanKindInternal, 0, 100)},
				calls(qItems, "root", 3, 0, distinctArgs)...), calls(qItems, "i", 3, 10, func(i int) string { return fmt.Sprint("x", i) })...),
			[]Repeat{{Resource: dbRes(qItems), Count: 6, Distinct: 6, TotalNS: 12 * ms}}, nil},
		{"near miss: a statement repeated twice is not n+1",
			append([]evidence.Span{root(100)}, calls(qItems, "root", 2, 0, distinctArgs)...),
			nil, nil},
		{"near miss: four is not n+1 either",
			append([]evidence.Span{root(100)}, calls(qItems, "root", NPlusOneMinCalls-1, 0, distinctArgs)...),
			nil, nil},
		{"identical statements are redundant, not n+1",
			append([]evidence.Span{root(100)}, calls(qItems, "root", 6, 0, sameArgs)...),
			nil, []Repeat{{Resource: dbRes(qItems), Count: 6, Distinct: 1, Extra: 5, TotalNS: 12 * ms, WastedNS: 10 * ms}}},
		{"identical HTTP call twice is redundant",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 0, 10, get("http://p:80/price?sku=1")),
				sp("b", "root", evidence.SpanKindClient, 10, 30, get("http://p:80/price?sku=1")),
			},
			nil, []Repeat{{Resource: httpRes("GET http://p:80/price"), Count: 2, Distinct: 1, Extra: 1, TotalNS: 30 * ms, WastedNS: 20 * ms}}},
		{"near miss: different URLs are not redundant",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 0, 10, get("http://p:80/price?sku=1")),
				sp("b", "root", evidence.SpanKindClient, 10, 30, get("http://p:80/price?sku=2")),
			},
			nil, nil},
		{"near miss: unknown parameters are never redundant",
			append([]evidence.Span{root(100)}, calls(qItems, "root", 3, 0, unknownArgs)...),
			nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := analyzeOne(t, c.spans)
			if diff := cmp.Diff(c.nPlusOne, req.NPlusOne); diff != "" {
				t.Errorf("n+1 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.redundant, req.Redundant); diff != "" {
				t.Errorf("redundant (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSerial(t *testing.T) {
	price := get("http://price:80/price")
	stock := get("http://stock:80/stock")
	reviews := get("http://reviews:80/reviews")
	cases := []struct {
		name  string
		spans []evidence.Span
		want  []SerialGroup
	}{
		{"three downstreams one after another",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 10, 20, price),
				sp("b", "root", evidence.SpanKindClient, 20, 40, stock),
				sp("c", "root", evidence.SpanKindClient, 45, 75, reviews),
			},
			[]SerialGroup{{ParentSpanID: "root", Calls: 3, Stages: 3, Runs: 1, SumNS: 60 * ms, MaxNS: 30 * ms, SavingNS: 30 * ms,
				Resources:  []Resource{httpRes("GET http://price:80/price"), httpRes("GET http://stock:80/stock"), httpRes("GET http://reviews:80/reviews")},
				ResourceNS: []int64{10 * ms, 20 * ms, 30 * ms}}}},
		{"a parallel pair then a third call",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 10, 30, price),
				sp("b", "root", evidence.SpanKindClient, 12, 40, stock),
				sp("c", "root", evidence.SpanKindClient, 50, 60, reviews),
			},
			[]SerialGroup{{ParentSpanID: "root", Calls: 3, Stages: 2, Runs: 1, SumNS: 40 * ms, MaxNS: 30 * ms, SavingNS: 10 * ms,
				Resources:  []Resource{httpRes("GET http://price:80/price"), httpRes("GET http://stock:80/stock"), httpRes("GET http://reviews:80/reviews")},
				ResourceNS: []int64{20 * ms, 28 * ms, 10 * ms}}}},
		{"two runs split by a long pause save within each run",
			[]evidence.Span{root(200),
				sp("a", "root", evidence.SpanKindClient, 0, 10, price),
				sp("b", "root", evidence.SpanKindClient, 10, 30, stock),
				sp("c", "root", evidence.SpanKindClient, 100, 110, reviews),
				sp("d", "root", evidence.SpanKindClient, 111, 116, get("http://price:80/price?sku=2")),
			},
			[]SerialGroup{{ParentSpanID: "root", Calls: 4, Stages: 4, Runs: 2, SumNS: 45 * ms, MaxNS: 30 * ms, SavingNS: 15 * ms,
				Resources:  []Resource{httpRes("GET http://price:80/price"), httpRes("GET http://stock:80/stock"), httpRes("GET http://reviews:80/reviews")},
				ResourceNS: []int64{15 * ms, 20 * ms, 10 * ms}}}},
		{"near miss: a pause longer than the calls between them is not a chain",
			[]evidence.Span{root(200),
				sp("a", "root", evidence.SpanKindClient, 0, 10, price),
				sp("b", "root", evidence.SpanKindClient, 50, 60, stock),
			},
			nil},
		{"near miss: siblings that overlap are not serial",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 10, 30, price),
				sp("b", "root", evidence.SpanKindClient, 29, 50, stock),
			},
			nil},
		{"near miss: a loop over one downstream is not serial",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 10, 20, price),
				sp("b", "root", evidence.SpanKindClient, 20, 30, price),
			},
			nil},
		{"near miss: database statements are not serial work",
			append([]evidence.Span{root(100)}, append(calls(qItems, "root", 1, 0, sameArgs), calls(qUser, "root", 1, 10, sameArgs)...)...),
			nil},
		{"near miss: calls under different parents",
			[]evidence.Span{root(100),
				sp("i", "root", evidence.SpanKindInternal, 0, 50),
				sp("a", "i", evidence.SpanKindClient, 10, 20, price),
				sp("b", "root", evidence.SpanKindClient, 60, 70, stock),
			},
			nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := analyzeOne(t, c.spans)
			if diff := cmp.Diff(c.want, req.Serial); diff != "" {
				t.Errorf("serial (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAggregate(t *testing.T) {
	var spans []evidence.Span
	// Two requests of GET /orders: 20 and 30 item queries (2 ms each) and
	// one user query each; one request of GET /health.
	for i, n := range []int{20, 30} {
		tr := fmt.Sprint("o", i)
		r := root(100)
		r.TraceID = tr
		spans = append(spans, r)
		for _, c := range calls(qItems, "root", n, 0, func(j int) string { return fmt.Sprint(i, "-", j) }) {
			c.TraceID = tr
			spans = append(spans, c)
		}
		spans = append(spans, sp("u", "root", evidence.SpanKindClient, 90, 95, db(qUser, "7"), inTrace(tr)))
	}
	spans = append(spans, sp("h", "", evidence.SpanKindServer, 0, 1, route("GET", "/health"), inTrace("h")))

	eps := Analyze(spans)
	if len(eps) != 2 || eps[0].Endpoint != "GET /health" || eps[1].Endpoint != "GET /orders" {
		t.Fatalf("endpoints %+v", eps)
	}
	o := eps[1]
	if o.Requests != 2 || o.MeanDurationMS != 100 {
		t.Errorf("requests %d, mean %v ms", o.Requests, o.MeanDurationMS)
	}
	res := map[Resource]ResourceStats{}
	for _, r := range o.Resources {
		res[r.Resource] = r
	}
	items := res[dbRes(qItems)]
	if items.CallsPerRequest != 25 || items.MeanCallMS != 2 || items.MeanTimeMS != 50 || !near(items.CriticalShare, 0.5) {
		t.Errorf("item query stats %+v", items)
	}
	if self := res[Self]; !near(self.CriticalShare, 0.45) || self.CallsPerRequest != 0 {
		t.Errorf("self stats %+v", self)
	}
	if o.Resources[0].Resource != dbRes(qItems) {
		t.Errorf("largest share is %v, want the item query", o.Resources[0].Resource)
	}
	if len(o.NPlusOne) != 1 {
		t.Fatalf("n+1 %+v", o.NPlusOne)
	}
	p := o.NPlusOne[0]
	want := PatternStats{Resource: dbRes(qItems), Requests: 2, Share: 1, MeanCount: 25, MeanDistinct: 25, MeanTimeMS: 50, LatencyShare: 0.5}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("n+1 stats (-want +got):\n%s", diff)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestResourceNames(t *testing.T) {
	cases := []struct {
		name string
		span evidence.Span
		want Resource
		ok   bool
	}{
		{"http with route template", evidence.Span{Kind: evidence.SpanKindClient, HTTPMethod: "GET", HTTPRoute: "/price/{sku}", HTTPURL: "http://127.0.0.1:9090/price/17?x=1"},
			httpRes("GET http://127.0.0.1:9090/price/{sku}"), true},
		{"http ids templated", evidence.Span{Kind: evidence.SpanKindClient, HTTPMethod: "POST", HTTPURL: "https://api.example/v1/orders/123/items/9f86d081884c7d65"},
			httpRes("POST https://api.example:443/v1/orders/{id}/items/{id}"), true},
		{"http default port", evidence.Span{Kind: evidence.SpanKindClient, HTTPMethod: "GET", HTTPURL: "http://inv/stock"},
			httpRes("GET http://inv:80/stock"), true},
		{"database without statement", evidence.Span{Kind: evidence.SpanKindClient, DBSystem: "redis", Name: "GET"},
			Resource{Kind: KindDB, Name: "GET"}, true},
		{"other call", evidence.Span{Kind: evidence.SpanKindClient, Name: "inventory.Reserve", Peer: "inv:50051"},
			Resource{Kind: KindCall, Name: "inventory.Reserve inv:50051"}, true},
		{"server span is not a call", evidence.Span{Kind: evidence.SpanKindServer, HTTPMethod: "GET"}, Resource{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ResourceOf(c.span)
			if got != c.want || ok != c.ok {
				t.Errorf("ResourceOf = %v %v, want %v %v", got, ok, c.want, c.ok)
			}
		})
	}
	if got := Endpoint(evidence.Span{HTTPMethod: "GET", HTTPURL: "/orders/42?x=1"}); got != "GET /orders/42" {
		t.Errorf("Endpoint without route = %q", got)
	}
}

// FuzzAnalyze builds span sets from bytes (ids from a small alphabet, so
// that parents, duplicates and cycles are common) and checks that analysis
// never panics and that every critical path partitions its request.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{0, 0, 16, 1, 0, 100, 1, 1, 0, 2, 10, 20, 1, 2, 1, 2, 15, 30})
	f.Add([]byte{0, 1, 2, 0, 5, 5, 0, 2, 1, 0, 1, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		const rec = 6
		if len(b) > 600*rec {
			return
		}
		kinds := []string{evidence.SpanKindServer, evidence.SpanKindClient, evidence.SpanKindInternal}
		var spans []evidence.Span
		for i := 0; i+rec <= len(b); i += rec {
			r := b[i : i+rec]
			s := evidence.Span{
				TraceID: fmt.Sprint("t", r[0]%3),
				SpanID:  fmt.Sprint(r[1] % 16),
				Kind:    kinds[int(r[3])%len(kinds)],
				StartNS: int64(int8(r[4])) * ms,
				EndNS:   int64(int8(r[4]))*ms + int64(int8(r[5]))*ms,
			}
			if r[2]%17 != 16 {
				s.ParentID = fmt.Sprint(r[2] % 17)
			}
			switch r[3] / 3 % 4 {
			case 1:
				s.DBSystem, s.DBQuery, s.DBArgs = "postgresql", fmt.Sprint("q", r[5]%3), fmt.Sprint(r[4]%4)
			case 2:
				s.HTTPMethod, s.HTTPURL = "GET", fmt.Sprint("http://h:1/p", r[5]%3)
			}
			spans = append(spans, s)
		}
		var reqs []Request
		for _, tr := range Assemble(spans) {
			req := AnalyzeTrace(tr)
			checkCritical(t, req)
			reqs = append(reqs, req)
			Walk(tr.Root, func(n *Node) {
				g, ok := SerialCalls(n)
				if !ok {
					return
				}
				if g.SavingNS <= 0 || g.SavingNS != g.SumNS-g.MaxNS || g.Stages < 2*g.Runs || g.Calls < g.Stages || len(g.ResourceNS) != len(g.Resources) {
					t.Fatalf("inconsistent serial group %+v", g)
				}
			})
		}
		for _, ep := range Aggregate(reqs) {
			var share float64
			for _, r := range ep.Resources {
				share += r.CriticalShare
			}
			if ep.MeanDurationMS > 0 && math.Abs(share-1) > 1e-6 {
				t.Fatalf("critical shares of %s sum to %v", ep.Endpoint, share)
			}
		}
	})
}

// TestSerialCalls covers what SerialCalls adds to Request.Serial: a loop
// over one route is serial (the commonest pattern), and a repeat of an
// identical call is left out (it is redundant, not serial).
func TestSerialCalls(t *testing.T) {
	price := func(sku string) func(*evidence.Span) { return get("http://price:80/price?sku=" + sku) }
	priceRes := []Resource{httpRes("GET http://price:80/price")}
	cases := []struct {
		name   string
		spans  []evidence.Span
		want   SerialGroup
		wantOK bool
	}{
		{"a loop over items one at a time",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 0, 3, price("1")),
				sp("b", "root", evidence.SpanKindClient, 3, 6, price("2")),
				sp("c", "root", evidence.SpanKindClient, 6, 10, price("3")),
			},
			SerialGroup{ParentSpanID: "root", Resources: priceRes, ResourceNS: []int64{10 * ms}, Calls: 3, Stages: 3, Runs: 1, SumNS: 10 * ms, MaxNS: 4 * ms, SavingNS: 6 * ms}, true},
		{"near miss: the same items at once",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 0, 3, price("1")),
				sp("b", "root", evidence.SpanKindClient, 0, 4, price("2")),
				sp("c", "root", evidence.SpanKindClient, 1, 4, price("3")),
			},
			SerialGroup{}, false},
		{"near miss: the identical call repeated",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 0, 3, price("1")),
				sp("b", "root", evidence.SpanKindClient, 3, 6, price("1")),
			},
			SerialGroup{}, false},
		{"near miss: a single slow call",
			[]evidence.Span{root(100),
				sp("a", "root", evidence.SpanKindClient, 0, 90, price("1")),
			},
			SerialGroup{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			traces := Assemble(c.spans)
			if len(traces) != 1 {
				t.Fatalf("assembled %d traces, want 1", len(traces))
			}
			got, ok := SerialCalls(traces[0].Root)
			if ok != c.wantOK {
				t.Fatalf("ok = %v, want %v (%+v)", ok, c.wantOK, got)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("serial (-want +got):\n%s", diff)
			}
		})
	}
}
