package zoo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chokepoint/chokepoint/internal/testpg"
)

// childEnv makes the test binary run the zoo command line instead of the
// tests: StartProcess's binary in tests is the test binary itself.
const childEnv = "ZOO_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	os.Exit(testpg.Main(m))
}

// The package's tests share one seeded database: seeding takes seconds,
// and the modes that change the schema restore what they need at Start.
var sharedDB struct {
	once sync.Once
	dsn  string
	err  error
}

func seededDSN(t *testing.T) string {
	t.Helper()
	c := testpg.Shared(t)
	sharedDB.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sharedDB.dsn, sharedDB.err = c.CreateDatabase(ctx, "zoo_shared")
		if sharedDB.err == nil {
			sharedDB.err = Seed(ctx, sharedDB.dsn, 1)
		}
	})
	if sharedDB.err != nil {
		t.Fatalf("shared database: %v", sharedDB.err)
	}
	return sharedDB.dsn
}

func startZoo(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start %v fixed=%v: %v", cfg.Bottlenecks, cfg.Fixed, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func TestSeedIsIdempotentAndFast(t *testing.T) {
	dsn := testpg.NewDB(t)
	ctx := t.Context()
	start := time.Now()
	if err := Seed(ctx, dsn, 1); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	t.Logf("seeded %d orders in %v", ordersPerScale, first)
	if first > 30*time.Second {
		t.Errorf("seeding took %v, want seconds", first)
	}
	start = time.Now()
	if err := Seed(ctx, dsn, 1); err != nil {
		t.Fatal(err)
	}
	if again := time.Since(start); again > time.Second {
		t.Errorf("second seed took %v: not idempotent", again)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for table, want := range map[string]int64{"orders": ordersPerScale, "customers": customersPerScale, "products": productCount} {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
	}
	if err := Seed(ctx, dsn, 0); err == nil {
		t.Error("scale 0 accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"healthy without db", Config{}, ""},
		{"none", Config{Bottlenecks: []string{"none"}}, ""},
		{"unknown", Config{Bottlenecks: []string{"cpu.warm"}}, "unknown mode"},
		{"three", Config{Bottlenecks: []string{"cpu.hot-path,gc.pressure,lock.contention"}}, "at most 2"},
		{"needs db", Config{Bottlenecks: []string{DBMissingIndex}}, "dsn"},
		{"needs process", Config{Bottlenecks: []string{CPUThrottled}}, "process of its own"},
		{"isolated", Config{Bottlenecks: []string{CPUThrottled}, Isolated: true}, ""},
		{"negative pool", Config{PoolSize: -1}, "pool size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestModesGroundTruth(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Modes() {
		if seen[m.Name] {
			t.Errorf("mode %s twice", m.Name)
		}
		seen[m.Name] = true
		if len(m.Paths) == 0 {
			t.Errorf("%s: no paths", m.Name)
		}
		if m.Name == None {
			continue
		}
		if m.Truth.Endpoint == "" && m.Truth.Resource == "" {
			t.Errorf("%s: ground truth names neither endpoint nor resource", m.Name)
		}
		if m.Truth.Function != "" && !strings.HasPrefix(m.Truth.Function, fnPrefix) {
			t.Errorf("%s: function %q outside the zoo", m.Name, m.Truth.Function)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Modes() {
		for _, want := range []string{"`" + m.Name + "`", m.Truth.Function, m.Truth.Query, m.Truth.Table, m.Truth.Endpoint} {
			if want != "" && !strings.Contains(string(readme), want) {
				t.Errorf("README.md does not show %s's %q", m.Name, want)
			}
		}
	}
}

func TestHealthyServes(t *testing.T) {
	dsn := seededDSN(t)
	s := startZoo(t, Config{DSN: dsn})
	for _, u := range s.Endpoints() {
		if code, body := fetch(t, u); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", u, code, body)
		}
	}
	code, body := fetch(t, s.URL()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "pgxpool_acquire_count_total",
		"pgxpool_acquire_duration_seconds_total", "pgxpool_empty_acquire_count_total", "pgxpool_acquired_conns",
		"pgxpool_idle_conns", "pgxpool_total_conns", "pgxpool_max_conns 16", `http_server_requests_total{code="200",method="GET",route="/orders"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := fetch(t, s.URL()+"/debug/pprof/mutex?debug=1"); code != http.StatusOK || !strings.Contains(body, "mutex") {
		t.Errorf("/debug/pprof/mutex: %d", code)
	}
	if code, _ := fetch(t, s.URL()+"/orders?id=0"); code != http.StatusBadRequest {
		t.Errorf("bad id: %d, want 400", code)
	}
	if code, _ := fetch(t, s.URL()+"/orders?id=999999999"); code != http.StatusNotFound {
		t.Errorf("missing order: %d, want 404", code)
	}
}

func TestNoLeakOfMode(t *testing.T) {
	dsn := seededDSN(t)
	s := startZoo(t, Config{DSN: dsn, Bottlenecks: []string{DBNPlusOne, LockContention}})
	for _, u := range append(s.Endpoints(), s.URL()+"/metrics") {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range Modes() {
			if m.Name == None {
				continue
			}
			for k, v := range resp.Header {
				if strings.Contains(strings.ToLower(k+strings.Join(v, ",")), m.Name) {
					t.Errorf("%s: header %s names mode %s", u, k, m.Name)
				}
			}
			if strings.Contains(string(b), m.Name) || strings.Contains(string(b), "bottleneck") {
				t.Errorf("%s: body names mode %s", u, m.Name)
			}
		}
	}
}

func TestEndpointsAnswerWithoutDatabase(t *testing.T) {
	s := startZoo(t, Config{Bottlenecks: []string{CPUHotPath}})
	code, body := fetch(t, s.URL()+"/search?q=lamp")
	if code != http.StatusOK {
		t.Fatalf("search: %d %s", code, body)
	}
	var reply struct{ Results []searchResult }
	if err := json.Unmarshal([]byte(body), &reply); err != nil || len(reply.Results) != searchLimit {
		t.Fatalf("search reply %q: %v", body, err)
	}
	if reply.Results[0].Distance != 0 || !strings.Contains(reply.Results[0].Name, "lamp") {
		t.Errorf("best hit %+v, want an exact lamp", reply.Results[0])
	}
	if code, _ := fetch(t, s.URL()+"/orders?id=1"); code != http.StatusServiceUnavailable {
		t.Errorf("orders without db: %d, want 503", code)
	}
	if code, _ := fetch(t, s.URL()+"/search?q="+strings.Repeat("x", 200)); code != http.StatusBadRequest {
		t.Errorf("long query: %d, want 400", code)
	}
}

// TestRouteAnswers checks each route's answer to good and bad requests:
// a database route without a database answers 503 before it reads its
// parameters; bad parameters 400; unknown ids 404.
func TestRouteAnswers(t *testing.T) {
	cart21 := strings.TrimSuffix(strings.Repeat("1,", maxCartSize+1), ",")
	tests := []struct {
		name    string
		db      bool
		modes   []string
		path    string
		code    int
		bodyHas string
	}{
		{name: "no database before a bad id", path: "/orders?id=abc", code: http.StatusServiceUnavailable},
		{name: "no database before a bad category", path: "/catalog/products?category=x", code: http.StatusServiceUnavailable},
		{name: "price without a database", path: "/products/price?id=17", code: http.StatusOK, bodyHas: `"sku":"SKU-000017"`},
		{name: "bad product id", path: "/products/price?id=0", code: http.StatusBadRequest},
		{name: "unknown product", path: "/quote?product=99999999", code: http.StatusNotFound},
		{name: "empty region", path: "/shipping?product=17&region=", code: http.StatusBadRequest},
		{name: "product checked before region", path: "/shipping?product=0&region=", code: http.StatusBadRequest, bodyHas: "product:"},
		{name: "unknown cart item", path: "/cart/quote?items=1,x", code: http.StatusBadRequest},
		{name: "cart too large", path: "/cart/quote?items=" + cart21, code: http.StatusBadRequest},
		{name: "cart", path: "/cart/quote?items=17,230", code: http.StatusOK, bodyHas: `"total_cents":`},
		{name: "order", db: true, path: "/orders?id=1017", code: http.StatusOK, bodyHas: `"id":1017`},
		{name: "order id missing", db: true, path: "/orders", code: http.StatusBadRequest},
		{name: "order unknown", db: true, path: "/orders?id=999999999", code: http.StatusNotFound},
		{name: "history of nobody", db: true, path: "/orders/history?customer=99999999", code: http.StatusOK, bodyHas: `"orders":[]`},
		{name: "history bad customer", db: true, path: "/orders/history?customer=0", code: http.StatusBadRequest},
		{name: "status", db: true, path: "/orders/status?id=1017", code: http.StatusOK, bodyHas: `"delivery_days":`},
		{name: "status in a transaction", db: true, modes: []string{DBConnectionsSaturate}, path: "/orders/status?id=1017", code: http.StatusOK, bodyHas: `"delivery_days":`},
		{name: "status unknown", db: true, modes: []string{DBConnectionsSaturate}, path: "/orders/status?id=999999999", code: http.StatusNotFound},
		{name: "total unknown", db: true, path: "/orders/total?id=999999999", code: http.StatusNotFound},
		{name: "quote unknown", db: true, path: "/orders/quote?id=999999999", code: http.StatusNotFound},
		{name: "customer unknown", db: true, path: "/customers?id=99999999", code: http.StatusNotFound},
		{name: "product page unknown", db: true, path: "/products?id=99999999", code: http.StatusNotFound},
		{name: "sales of an unknown category", db: true, path: "/reports/sales?category=x", code: http.StatusBadRequest},
		{name: "bad cursor", db: true, path: "/catalog/products?category=lighting&after=x", code: http.StatusBadRequest},
		{name: "page with a cursor", db: true, path: "/catalog/products?category=lighting&after=50", code: http.StatusOK, bodyHas: `"next":`},
		{name: "the unpaged listing ignores the cursor", db: true, modes: []string{PayloadLarge}, path: "/catalog/products?category=lighting&after=x", code: http.StatusOK, bodyHas: `"description":`},
	}
	// One zoo per configuration, for the whole test.
	servers := map[string]*Server{}
	server := func(db bool, modes []string) *Server {
		key := fmt.Sprint(db, modes)
		if s, ok := servers[key]; ok {
			return s
		}
		cfg := Config{Bottlenecks: modes}
		if db {
			cfg.DSN = seededDSN(t)
		}
		servers[key] = startZoo(t, cfg)
		return servers[key]
	}
	for _, tt := range tests {
		s := server(tt.db, tt.modes)
		t.Run(tt.name, func(t *testing.T) {
			code, body := fetch(t, s.URL()+tt.path)
			if code != tt.code || !strings.Contains(body, tt.bodyHas) {
				t.Errorf("GET %s: %d %.200s; want %d with %q", tt.path, code, body, tt.code, tt.bodyHas)
			}
		})
	}
}

func TestSearchIndexedMatchesSearch(t *testing.T) {
	ps := make([]product, 500)
	for i := range ps {
		ps[i] = genProduct(int64(i + 1))
	}
	c := newCatalog(ps)
	for _, q := range []string{"lamp", "chiar", "walnut", "blu", "x", "ünïcode"} {
		a, b := c.search(q), c.searchIndexed(q)
		if len(a) != len(b) {
			t.Fatalf("%q: %d vs %d hits", q, len(a), len(b))
		}
		for i := range a {
			if a[i].p.ID != b[i].p.ID || a[i].score != b[i].score {
				t.Errorf("%q hit %d: %d/%d vs %d/%d", q, i, a[i].p.ID, a[i].score, b[i].p.ID, b[i].score)
			}
		}
	}
}

func FuzzEditDistance(f *testing.F) {
	f.Add("kitten", "sitting")
	f.Add("", "abc")
	f.Add("\xff\xfe", "ü")
	f.Fuzz(func(t *testing.T, a, b string) {
		if len(a) > 200 || len(b) > 200 {
			t.Skip()
		}
		d := editDistance(a, b)
		la, lb := len([]rune(a)), len([]rune(b))
		if d < max(la, lb)-min(la, lb) || d > max(la, lb) {
			t.Fatalf("editDistance(%q, %q) = %d out of bounds", a, b, d)
		}
		if d != editDistance(b, a) {
			t.Fatalf("not symmetric for %q, %q", a, b)
		}
		if (d == 0) != (string([]rune(a)) == string([]rune(b))) {
			t.Fatalf("zero distance iff equal broken for %q, %q", a, b)
		}
	})
}

func TestCLI(t *testing.T) {
	var out, errb strings.Builder
	if code := Main(t.Context(), []string{"modes"}, &out, &errb, nil); code != 0 {
		t.Fatalf("modes: %d %s", code, errb.String())
	}
	for _, m := range Modes() {
		if !strings.Contains(out.String(), m.Name) {
			t.Errorf("modes lacks %s", m.Name)
		}
	}
	out.Reset()
	if code := Main(t.Context(), []string{"modes", "--json"}, &out, &errb, nil); code != 0 {
		t.Fatalf("modes --json: %d", code)
	}
	var ms []Mode
	if err := json.Unmarshal([]byte(out.String()), &ms); err != nil || len(ms) != len(Modes()) {
		t.Fatalf("modes --json: %v (%d modes)", err, len(ms))
	}
	for _, args := range [][]string{{}, {"nope"}, {"serve", "--bottleneck", "bogus"}, {"seed"}, {"serve", "extra"}} {
		errb.Reset()
		if code := Main(t.Context(), args, io.Discard, &errb, nil); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s, err := Start(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL() + "/health"); err == nil {
		t.Error("still serving after Close")
	} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "refused") {
		t.Logf("after close: %v", err)
	}
}

// TestTruthQueriesAsPgStatStatementsWritesThem checks that each ground-truth
// query is the string pg_stat_statements records for it.
func TestTruthQueriesAsPgStatStatementsWritesThem(t *testing.T) {
	dsn := seededDSN(t)
	pairs := [][]string{{DBMissingIndex, DBSlowQuery}, {DBNPlusOne, DBLockWait}, {CacheOpportunity}}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, modes := range pairs {
		s, err := Start(ctx, Config{DSN: dsn, Bottlenecks: modes})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range s.Endpoints() {
			if code, body := fetch(t, u); code != http.StatusOK {
				t.Errorf("GET %s: %d %s", u, code, body)
			}
		}
		s.Close(ctx)
		for _, m := range s.Truth() {
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_statements WHERE query = $1", m.Truth.Query).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("%s: pg_stat_statements has no %q", m.Name, m.Truth.Query)
			}
		}
	}
}
