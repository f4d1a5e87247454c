package profilesum

import (
	"math"
	"slices"
	"testing"

	"github.com/google/pprof/profile"
)

// withLabels sets string labels on a profile's samples (by index).
func withLabels(p *profile.Profile, labels map[int]map[string][]string) *profile.Profile {
	for i, l := range labels {
		p.Sample[i].Label = l
	}
	return p
}

// Go's net/http stacks under a middleware, as the runtime prints them
// (outermost last).
var (
	serveMux   = []string{"net/http.HandlerFunc.ServeHTTP", "net/http.(*ServeMux).ServeHTTP", "net/http.serverHandler.ServeHTTP", "net/http.(*conn).serve"}
	middleware = append([]string{"net/http.HandlerFunc.ServeHTTP", "github.com/acme/shop.instrument.func3"}, serveMux...)
)

func stack(leaf ...string) func(outer []string) []string {
	return func(outer []string) []string { return append(slices.Clone(leaf), outer...) }
}

func TestIsDispatch(t *testing.T) {
	for fn, want := range map[string]bool{
		"net/http.HandlerFunc.ServeHTTP":                         true,
		"net/http.(*ServeMux).ServeHTTP":                         true,
		"github.com/go-chi/chi/v5.(*Mux).routeHTTP":              true,
		"github.com/gorilla/mux.(*Router).ServeHTTP":             true,
		"github.com/acme/shop.(*router).ServeHTTP":               true,
		"github.com/gin-gonic/gin.(*Context).Next":               true,
		"google.golang.org/grpc.(*Server).processUnaryRPC":       true,
		"github.com/acme/shop.(*Server).search":                  false,
		"github.com/acme/ServeHTTP.F":                            false, // a package named like the method
		"net/http.(*conn).serve":                                 false,
		NoFunction:                                               false,
		"":                                                       false,
		"github.com/acme/shop.(*mw).ServeHTTP.func1":             true,
		"github.com/labstack/echo/v4.(*Echo).ServeHTTP.func1":    true,
		"github.com/valyala/fasthttp.(*Server).serveConn":        true,
		"github.com/acme/shop.(*Server).routes.func2.instrument": false,
	} {
		if got := IsDispatch(fn); got != want {
			t.Errorf("IsDispatch(%q) = %v, want %v", fn, got, want)
		}
	}
}

func TestEntryOf(t *testing.T) {
	cpu := []string{"cpu/nanoseconds"}
	tests := []struct {
		name   string
		stack  []string
		labels map[string][]string
		want   EntryPoint
	}{
		{name: "handler under middleware",
			stack: stack("main.distance", "github.com/acme/shop.(*Server).search-fm")(middleware),
			want:  EntryPoint{Name: "github.com/acme/shop.(*Server).search"}},
		{name: "middleware's own work",
			stack: stack("time.Now", "github.com/acme/shop.instrument.func3")(serveMux),
			want:  EntryPoint{Name: "github.com/acme/shop.instrument.func3"}},
		{name: "gin handler",
			stack: []string{"encoding/json.Marshal", "main.listOrders", "github.com/gin-gonic/gin.(*Context).Next", "github.com/gin-gonic/gin.(*Engine).handleHTTPRequest", "github.com/gin-gonic/gin.(*Engine).ServeHTTP", "net/http.serverHandler.ServeHTTP"},
			want:  EntryPoint{Name: "main.listOrders"}},
		{name: "label wins",
			stack:  stack("main.distance", "main.search")(serveMux),
			labels: map[string][]string{"http.route": {"/search"}},
			want:   EntryPoint{Name: "/search", Label: "http.route"}},
		{name: "unrelated label ignored",
			stack:  stack("main.distance", "main.search")(serveMux),
			labels: map[string][]string{"tenant": {"acme"}},
			want:   EntryPoint{Name: "main.search"}},
		{name: "background goroutine",
			stack: []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}},
		{name: "server internals only",
			stack: []string{"syscall.Syscall", "net.(*conn).Read", "net/http.(*conn).serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := synth(cpu, st(v(1), tt.stack...))
			if tt.labels != nil {
				withLabels(p, map[int]map[string][]string{0: tt.labels})
			}
			if got := (Options{}).EntryOf(p.Sample[0]); got != tt.want {
				t.Errorf("EntryOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHotPathsSynthetic(t *testing.T) {
	cpu := []string{"samples/count", "cpu/nanoseconds"}
	search := stack("github.com/acme/shop.(*catalog).search", "github.com/acme/shop.(*Server).search")
	p := synth(cpu,
		// 40 + 5: the search handler's edit distance (with an allocation
		// inside it).
		st(v(4, 40), append([]string{"github.com/acme/shop.editDistance"}, search(middleware)...)...),
		st(v(1, 5), append([]string{"runtime.mallocgc", "runtime.growslice", "github.com/acme/shop.editDistance"}, search(middleware)...)...),
		// 1: the search loop's own code.
		st(v(1, 1), search(middleware)...),
		// 15: the cart handler calls pricing over HTTP (library frames).
		st(v(1, 15), stack("net/http.(*Transport).roundTrip", "net/http.(*Client).Do", "github.com/acme/shop.(*Server).cartQuote")(middleware)...),
		// 10: the cart handler encodes its response.
		st(v(1, 10), stack("encoding/json.Marshal", "github.com/acme/shop.(*Server).cartQuote")(middleware)...),
		// 4: the middleware's own work.
		st(v(1, 4), stack("time.Now", "github.com/acme/shop.instrument.func3")(serveMux)...),
		// 25: the runtime and the server's connection handling.
		st(v(1, 15), "runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"),
		st(v(1, 10), "syscall.Syscall", "net.(*conn).Read", "net/http.(*conn).serve"),
	)
	paths, tot, err := HotPaths(p, "cpu", HotPathOptions{Aside: []string{"encoding/json."}})
	if err != nil {
		t.Fatal(err)
	}
	if tot != 100 || len(paths) != 3 {
		t.Fatalf("total %d, paths %+v", tot, paths)
	}
	top := paths[0]
	wantPath := []string{"github.com/acme/shop.(*Server).search", "github.com/acme/shop.(*catalog).search", "github.com/acme/shop.editDistance"}
	if top.Function != "github.com/acme/shop.editDistance" || top.Value != 45 || !slices.Equal(top.Path, wantPath) || top.GC != 5 {
		t.Errorf("top path = %+v", top)
	}
	if got := top.Own(tot); math.Abs(got-0.40) > 1e-9 {
		t.Errorf("own share %.3f, want 0.40 (45 less 5 allocating)", got)
	}
	if len(top.Entries) != 1 || top.Entries[0].Entry.Name != "github.com/acme/shop.(*Server).search" || top.Entries[0].Share != 1 {
		t.Errorf("top entries = %+v", top.Entries)
	}
	// The cart handler splits 15/10 between pricing and encoding: neither
	// callee keeps PathFollow of it, so the path ends at the handler, with
	// its encoding set aside.
	cart := paths[1]
	if cart.Function != "github.com/acme/shop.(*Server).cartQuote" || cart.Value != 25 || cart.Aside != 10 || math.Abs(cart.Own(tot)-0.15) > 1e-9 {
		t.Errorf("cart path = %+v", cart)
	}
	if mw := paths[2]; mw.Function != "github.com/acme/shop.instrument.func3" || mw.Value != 4 {
		t.Errorf("middleware path = %+v: the middleware must not be charged its handlers' cost", mw)
	}
	if _, _, err := HotPaths(p, "alloc_space", HotPathOptions{}); err == nil {
		t.Error("missing sample type: no error")
	}
}

func TestHotPathsMergesSharedHelper(t *testing.T) {
	cpu := []string{"cpu/nanoseconds"}
	p := synth(cpu,
		st(v(30), stack("main.hash", "main.listOrders")(serveMux)...),
		st(v(20), stack("main.hash", "main.getOrder")(serveMux)...),
		st(v(50), "runtime.gcBgMarkWorker"),
	)
	paths, _, err := HotPaths(p, "cpu", HotPathOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || paths[0].Function != "main.hash" || paths[0].Value != 50 || math.Abs(paths[0].Share-0.5) > 1e-9 {
		t.Fatalf("paths = %+v", paths)
	}
	e := paths[0].Entries
	if len(e) != 2 || e[0].Entry.Name != "main.listOrders" || math.Abs(e[0].Share-0.6) > 1e-9 {
		t.Errorf("entries = %+v", e)
	}
}

func TestRouteWords(t *testing.T) {
	for in, want := range map[string][]string{
		"GET /orders/history":             {"order", "history"},
		"cartQuote":                       {"cart", "quote"},
		"getOrder":                        {"order"},
		"HTTPServerStatus":                {"status"},
		"list_orders_by_customer":         {"list", "order", "customer"},
		"GET /orders?id=1017":             {"order"},
		"POST /api/v1/users/{id}/address": {"v1", "user", "id", "address"},
		"":                                nil,
		"ServeHTTP":                       nil,
		"GET /catalog/products":           {"catalog", "product"},
		"create order":                    {"create", "order"},
		"Класс":                           {"класс"},
		"GET /status":                     {"status"},
		"//--..":                          nil,
		"GET /search?q=lamp":              {"search"},
		"search lamps LAMP123 x":          {"search", "lamp", "lamp123"},
	} {
		if got := RouteWords(in); !slices.Equal(got, want) {
			t.Errorf("RouteWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchEndpoint(t *testing.T) {
	fn := func(name string) EntryPoint { return EntryPoint{Name: name} }
	orders := []string{"GET /orders", "GET /orders/history", "GET /quote", "GET /cart/quote"}
	tests := []struct {
		entry     EntryPoint
		endpoints []string
		want      string // "" = no match
	}{
		{fn("github.com/acme/shop.(*Server).getOrder"), orders, "GET /orders"},
		{fn("github.com/acme/shop.(*Server).orderHistory"), orders, "GET /orders/history"},
		{fn("github.com/acme/shop.(*Server).quote"), orders, "GET /quote"},
		{fn("github.com/acme/shop.(*Server).cartQuote"), orders, "GET /cart/quote"},
		{fn("github.com/acme/shop.(*Server).search"), orders, ""},
		{fn("github.com/acme/shop/orders.(*Handler).List"), []string{"list orders", "create order"}, "list orders"},
		{fn("github.com/acme/shop/orders.(*Handler).Create"), []string{"list orders", "create order"}, "create order"},
		{fn("main.main.func1"), orders, ""},
		{EntryPoint{Name: "/cart/quote", Label: "http.route"}, orders, "GET /cart/quote"},
		{EntryPoint{Name: "GET /orders", Label: "span_name"}, orders, "GET /orders"},
		// A tie names nothing.
		{fn("main.orderQuote"), []string{"GET /orders", "GET /quote"}, ""},
		{fn("main.search"), nil, ""},
	}
	for _, tt := range tests {
		got, ok := MatchEndpoint(tt.entry, tt.endpoints)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("MatchEndpoint(%+v, %q) = %q, %v; want %q", tt.entry, tt.endpoints, got, ok, tt.want)
		}
	}
}

func TestSiteEntries(t *testing.T) {
	types := []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}
	record := stack("runtime.mallocgc", "main.(*replayLog).record")
	prev := synth(types,
		st(v(1, 100, 1, 100), record(stack("main.getOrder")(serveMux))...),
		st(v(1, 100, 1, 50), record(stack("main.quote")(serveMux))...),
		st(v(1, 900, 1, 900), stack("runtime.mallocgc", "main.render")(stack("main.quote")(serveMux))...),
	)
	cur := synth(types,
		st(v(1, 100, 1, 9100), record(stack("main.getOrder")(serveMux))...),
		st(v(1, 100, 1, 150), record(stack("main.quote")(serveMux))...),
		st(v(1, 900, 1, 100), stack("runtime.mallocgc", "main.render")(stack("main.quote")(serveMux))...),
	)
	es, tot, err := SiteEntries(cur, "inuse_space", "main.(*replayLog).record", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tot != 9250 || len(es) != 2 || es[0].Entry.Name != "main.getOrder" || es[0].Value != 9100 {
		t.Errorf("SiteEntries = %+v (total %d)", es, tot)
	}
	g, err := SiteEntryGrowth(prev, cur, "main.(*replayLog).record", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || g[0].Entry.Name != "main.getOrder" || g[0].Value != 9000 || math.Abs(g[0].Share-9000.0/9100) > 1e-9 || g[1].Value != 100 {
		t.Errorf("SiteEntryGrowth = %+v", g)
	}
	if _, err := SiteEntryGrowth(prev, synth([]string{"cpu/nanoseconds"}), "main.f", Options{}); err == nil {
		t.Error("a CPU profile as heap: no error")
	}
}

// FuzzRouteScore: names come from scenario files and from the target's
// profiles; matching them must not panic and scores stay in [0, 1].
func FuzzRouteScore(f *testing.F) {
	f.Add("github.com/acme/shop.(*Server).cartQuote-fm", "", "GET /cart/quote?items=1,2")
	f.Add("/orders/{id}", "http.route", "GET /orders/17")
	f.Add("main.(*T[...]).M.func1.2", "", "ÄÖÜ /x")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, name, label, endpoint string) {
		const maxLen = 4 << 10 // fuzz memory bound: names longer than a URL are not interesting
		if len(name) > maxLen || len(endpoint) > maxLen {
			return
		}
		e := EntryPoint{Name: name, Label: label}
		sc := RouteScore(e, endpoint)
		if sc < 0 || sc > 1 || math.IsNaN(sc) {
			t.Errorf("RouteScore(%q, %q) = %v", name, endpoint, sc)
		}
		if got, ok := MatchEndpoint(e, []string{endpoint}); ok && got != endpoint {
			t.Errorf("MatchEndpoint returned %q, not offered", got)
		}
	})
}

func TestHotPathsSpreadWork(t *testing.T) {
	// The handler's cost splits over four steps of its own: each is a path
	// with a fifth of the CPU, and the handler one whose own work (Self)
	// is only its 10.
	var ss []sample
	for _, f := range []string{"main.parse", "main.validate", "main.price", "main.render"} {
		ss = append(ss, st(v(20), stack(f, "main.checkout")(serveMux)...))
	}
	ss = append(ss, st(v(10), stack("strconv.Itoa", "main.checkout")(serveMux)...), st(v(10), "runtime.gcBgMarkWorker"))
	paths, tot, err := HotPaths(synth([]string{"cpu/nanoseconds"}, ss...), "cpu", HotPathOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 5 || paths[0].Function != "main.parse" || math.Abs(paths[0].Own(tot)-0.2) > 1e-9 {
		t.Fatalf("paths = %+v", paths)
	}
	if c := paths[4]; c.Function != "main.checkout" || c.Value != 90 || c.Self != 10 || math.Abs(c.Own(tot)-0.1) > 1e-9 {
		t.Errorf("handler path = %+v", c)
	}
}

func TestHotPathsUnderSplitHandler(t *testing.T) {
	// The handler splits 60/40 between a hot loop and a query: the loop is
	// the hot path though the handler does not pass PathFollow to it.
	p := synth([]string{"cpu/nanoseconds"},
		st(v(60), stack("main.score", "main.rank", "main.search")(serveMux)...),
		st(v(40), stack("github.com/jackc/pgx/v5.(*Conn).Query", "main.load", "main.search")(serveMux)...),
		st(v(10), stack("main.search", "main.search")(serveMux)...), // direct recursion collapses
	)
	paths, tot, err := HotPaths(p, "cpu", HotPathOptions{})
	if err != nil {
		t.Fatal(err)
	}
	top := paths[0]
	if top.Function != "main.score" || !slices.Equal(top.Path, []string{"main.search", "main.rank", "main.score"}) || math.Abs(top.Own(tot)-60.0/110) > 1e-9 {
		t.Errorf("top = %+v", top)
	}
	for _, h := range paths {
		if h.Share > 1 || h.Value > tot {
			t.Errorf("path %s counts %d of %d", h.Function, h.Value, tot)
		}
	}
}

func TestHotPathsIndirectRecursion(t *testing.T) {
	p := synth([]string{"cpu/nanoseconds"},
		st(v(50), stack("main.walk", "main.visit", "main.walk", "main.handle")(serveMux)...),
		st(v(50), stack("main.visit", "main.walk", "main.handle")(serveMux)...),
	)
	paths, tot, err := HotPaths(p, "cpu", HotPathOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range paths {
		if h.Value > tot || h.Self > h.Value {
			t.Errorf("path %+v over the total %d", h, tot)
		}
	}
}
