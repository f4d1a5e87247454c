package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/scenario"
)

func okHandler(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }

func newEngine(tb testing.TB, cfg Config) *Engine {
	tb.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return e
}

func mustRun(tb testing.TB, e *Engine, s Schedule, b Bound, onWindow func(*Window)) *Result {
	tb.Helper()
	res, err := e.Run(context.Background(), s, b, onWindow)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func TestRunConstantRate(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(okHandler))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/fast"), Window: 100 * time.Millisecond})
	var windows, windowed int64
	lastIndex := -1
	res := mustRun(t, e, Constant(1000), Bound{Duration: time.Second}, func(w *Window) {
		windows++
		windowed += w.All.Requests
		if w.Index != lastIndex+1 {
			t.Errorf("window index %d after %d", w.Index, lastIndex)
		}
		lastIndex = w.Index
		if !w.End.After(w.Start) {
			t.Errorf("window %d: end %v not after start %v", w.Index, w.End, w.Start)
		}
	})
	tot := res.Total()
	// Arrivals are exact in count whatever the machine's load: every due
	// arrival is sent (late if need be), none skipped.
	if res.Requests() != 1000 || res.Arrivals != 1000 {
		t.Errorf("requests %d arrivals %d, want 1000", res.Requests(), res.Arrivals)
	}
	if tot.Status[200] != 1000 || tot.Errors != 0 {
		t.Errorf("status %v errors %d", tot.StatusCodes(), tot.Errors)
	}
	if windowed != res.Requests() {
		t.Errorf("windows hold %d requests, the result %d", windowed, res.Requests())
	}
	if windows < 10 || windows > 12 {
		t.Errorf("%d windows of 100ms in a 1s run", windows)
	}
	if off, ok := res.OfferedRPS(); !ok || off < 999 || off > 1001 {
		t.Errorf("offered %v %v, want 1000", off, ok)
	}
	if a := res.AchievedRPS(); a < 990 || a > 1010 {
		t.Errorf("achieved %.1f/s, want 1000 within 1%%", a)
	}
	if tot.BytesIn == 0 || tot.BytesOut == 0 {
		t.Errorf("bytes in %d out %d", tot.BytesIn, tot.BytesOut)
	}
	if res.Endpoints[0].Name != "GET /fast" {
		t.Errorf("endpoint %q", res.Endpoints[0].Name)
	}
}

// TestCoordinatedOmission: the target stalls for 1 s mid-run while only two
// connections may be used. The arrivals due during the stall wait in the
// generator; latency from the intended send time must show the stall (p99
// and max near 1 s) while service time, from the actual send, does not —
// which is what a generator measuring from the actual send would report.
func TestCoordinatedOmission(t *testing.T) {
	const stall = time.Second
	var (
		once  sync.Once
		first time.Time
	)
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { first = time.Now() })
		if now, from := time.Now(), first.Add(time.Second); now.After(from) && now.Before(from.Add(stall)) {
			time.Sleep(time.Until(from.Add(stall)))
		}
		w.Write([]byte("ok"))
	}))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/"), Connections: 2})
	res := mustRun(t, e, Constant(300), Bound{Duration: 3 * time.Second}, nil)
	tot := res.Total()
	lat, svc := percentilesMS(tot.Latency), percentilesMS(tot.Service)
	t.Logf("latency %+v service %+v late %d", lat, svc, res.Late)
	if lat.P99 < 800 || lat.Max < 900 {
		t.Errorf("latency p99 %.1fms max %.1fms: the 1s stall is hidden", lat.P99, lat.Max)
	}
	if svc.P99 > 300 {
		t.Errorf("service time p99 %.1fms: want well below the stall (only 2 of 900 requests were sent into it)", svc.P99)
	}
	if svc.Max < 500 {
		t.Errorf("service time max %.1fms: the requests sent into the stall should show it", svc.Max)
	}
	if res.Late < 200 {
		t.Errorf("late %d: ~300 arrivals waited for the stall", res.Late)
	}
	if res.Requests() != 900 || res.Dropped != 0 {
		t.Errorf("requests %d dropped %d, want 900 and 0", res.Requests(), res.Dropped)
	}
}

func TestErrorClasses(t *testing.T) {
	hijack := func(write string, rst bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			if write != "" {
				c.Write([]byte(write))
			}
			if tc, ok := c.(*net.TCPConn); ok && rst {
				tc.SetLinger(0)
			}
			c.Close()
		}
	}
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
	}
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	})
	refusedAddr, err := lowport.Addr() // free: nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		handler http.Handler // nil: no server
		url     string       // when no server
		scheme  string       // "https" to speak TLS to a plain server
		want    Class
		isError bool
	}{
		{name: "ok", handler: status(200), want: ClassNone},
		{name: "redirect not followed", handler: http.RedirectHandler("/elsewhere", http.StatusFound), want: ClassNone},
		{name: "4xx", handler: status(404), want: Class4xx},
		{name: "5xx", handler: status(503), want: Class5xx, isError: true},
		{name: "timeout", handler: slow, want: ClassTimeout, isError: true},
		{name: "refused", url: "http://" + refusedAddr + "/", want: ClassRefused, isError: true},
		{name: "dns", url: "http://no-such-host.invalid:20001/", want: ClassDNS, isError: true},
		{name: "reset", handler: hijack("", true), want: ClassReset, isError: true},
		{name: "closed without answer", handler: hijack("", false), want: ClassReset, isError: true},
		{name: "not http", handler: hijack("SSH-2.0-OpenSSH_9\r\n\r\n", false), want: ClassOther, isError: true},
		{name: "tls to a plain server", handler: status(200), scheme: "https", want: ClassTLS, isError: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.url
			if tc.handler != nil {
				srv := lowport.NewServer(t, tc.handler)
				u = srv.URL + "/x"
				if tc.scheme == "https" {
					u = "https://" + strings.TrimPrefix(u, "http://")
				}
			}
			e := newEngine(t, Config{Source: urls(t, u), Timeout: 200 * time.Millisecond})
			res := mustRun(t, e, Constant(50), Bound{Duration: 200 * time.Millisecond}, nil)
			tot := res.Total()
			if tot.Requests != 10 || tot.Classes[tc.want] != 10 {
				t.Fatalf("requests %d, classes %v: want all 10 in %q", tot.Requests, tot.ErrorsByClass(), tc.want)
			}
			wantErrors := int64(0)
			if tc.isError {
				wantErrors = 10
			}
			if tot.Errors != wantErrors {
				t.Errorf("errors %d, want %d", tot.Errors, wantErrors)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	addr, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{Source: urls(t, "http://"+addr+"/")})
	res := mustRun(t, e, Constant(100), Bound{Duration: 100 * time.Millisecond}, nil)
	if !res.Unreachable() {
		t.Errorf("Unreachable() = false with classes %v", res.Total().ErrorsByClass())
	}
	srv := lowport.NewServer(t, http.HandlerFunc(okHandler))
	e2 := newEngine(t, Config{Source: urls(t, srv.URL)})
	if mustRun(t, e2, Constant(100), Bound{Duration: 100 * time.Millisecond}, nil).Unreachable() {
		t.Error("Unreachable() = true for a live server")
	}
}

// newTLSServer starts an HTTP/2-capable TLS server on a low port and
// returns it with a client TLS config that trusts it.
func newTLSServer(t *testing.T, h http.Handler) (*httptest.Server, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	l, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors are the point of some tests
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, &tls.Config{RootCAs: pool}
}

func TestProtocols(t *testing.T) {
	var proto sync.Map // proto string → count
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := proto.LoadOrStore(r.Proto, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("hello"))
	})
	tlsSrv, tlsConf := newTLSServer(t, h)

	// h2c: cleartext HTTP/2 with prior knowledge.
	l, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	h2c := &http.Server{Handler: h, Protocols: protos}
	go h2c.Serve(l)
	t.Cleanup(func() { h2c.Close() })
	h2cURL := "http://" + l.Addr().String() + "/"
	plain := lowport.NewServer(t, h)

	tests := []struct {
		name  string
		cfg   Config
		proto string
	}{
		{"http/1.1 builtin", Config{Source: urls(t, plain.URL+"/")}, "HTTP/1.1"},
		{"http/1.1 net/http", Config{Source: urls(t, plain.URL+"/"), NetHTTP: true}, "HTTP/1.1"},
		{"https http/1.1 builtin", Config{Source: urls(t, tlsSrv.URL+"/"), TLS: tlsConf}, "HTTP/1.1"},
		{"https insecure", Config{Source: urls(t, tlsSrv.URL+"/"), Insecure: true}, "HTTP/1.1"},
		{"h2 over tls", Config{Source: urls(t, tlsSrv.URL+"/"), TLS: tlsConf, HTTP2: true}, "HTTP/2.0"},
		{"h2c", Config{Source: urls(t, h2cURL), HTTP2: true}, "HTTP/2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto.Clear()
			e := newEngine(t, tc.cfg)
			res := mustRun(t, e, Constant(200), Bound{Duration: 250 * time.Millisecond}, nil)
			tot := res.Total()
			if tot.Requests != 50 || tot.Status[200] != 50 {
				t.Fatalf("requests %d, status %v, classes %v", tot.Requests, tot.StatusCodes(), tot.ErrorsByClass())
			}
			v, ok := proto.Load(tc.proto)
			if !ok || v.(*atomic.Int64).Load() != 50 {
				var seen []string
				proto.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
				t.Errorf("server saw protocols %v, want all %s", seen, tc.proto)
			}
			if tot.BytesIn < 50*int64(len("hello")) {
				t.Errorf("bytes in %d: bodies not read", tot.BytesIn)
			}
		})
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		e := newEngine(t, Config{Source: urls(t, tlsSrv.URL+"/")})
		res := mustRun(t, e, Constant(100), Bound{Duration: 100 * time.Millisecond}, nil)
		if tot := res.Total(); tot.Classes[ClassTLS] != tot.Requests || tot.Requests == 0 {
			t.Errorf("classes %v: want every request a tls error", tot.ErrorsByClass())
		}
	})
}

func TestClosedModel(t *testing.T) {
	var inflight, peak atomic.Int64
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		w.Write([]byte("ok"))
	}))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/")})
	var windows int
	res := mustRun(t, e, Closed(4), Bound{Duration: 300 * time.Millisecond}, func(w *Window) {
		windows++
		if !w.Closed || w.OfferedRPS != 0 {
			t.Errorf("closed window: Closed %v offered %v", w.Closed, w.OfferedRPS)
		}
		if w.InflightMax > 4 {
			t.Errorf("in flight %d > 4 users", w.InflightMax)
		}
	})
	if _, ok := res.OfferedRPS(); ok {
		t.Error("a closed run offers no rate")
	}
	if res.Requests() < 20 || res.Errors() != 0 {
		t.Errorf("requests %d errors %d", res.Requests(), res.Errors())
	}
	if p := peak.Load(); p > 4 || p < 2 {
		t.Errorf("server saw %d concurrent requests, want up to 4 (and more than 1)", p)
	}
	if res.Late != 0 || res.Dropped != 0 {
		t.Errorf("late %d dropped %d in a closed run", res.Late, res.Dropped)
	}
	if s := res.Summary(DefaultMaxInflight); s.OfferedRPS != nil || s.Model != "closed" || s.Concurrency != 4 {
		t.Errorf("summary model %q offered %v concurrency %d", s.Model, s.OfferedRPS, s.Concurrency)
	}
	t.Run("max requests", func(t *testing.T) {
		res := mustRun(t, e, Closed(3), Bound{Duration: time.Minute, MaxRequests: 25}, nil)
		if res.Requests() != 25 {
			t.Errorf("requests %d, want 25", res.Requests())
		}
	})
}

func TestDroppedAtInflightBound(t *testing.T) {
	release := make(chan struct{})
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/"), MaxInflight: 5})
	var once sync.Once
	res := mustRun(t, e, Constant(200), Bound{Duration: 300 * time.Millisecond}, func(w *Window) {
		once.Do(func() { close(release) }) // the run's end: let the five through
	})
	if res.Requests() != 5 || res.Dropped != 55 || res.Arrivals != 60 {
		t.Errorf("requests %d dropped %d arrivals %d, want 5, 55, 60", res.Requests(), res.Dropped, res.Arrivals)
	}
	if s := res.Summary(5); !s.Loadgen.InflightBoundHit {
		t.Error("summary does not say the in-flight bound was hit")
	}
}

func TestMaxRequests(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(okHandler))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/")})
	start := time.Now()
	res := mustRun(t, e, Constant(1000), Bound{Duration: time.Minute, MaxRequests: 50}, nil)
	if res.Requests() != 50 {
		t.Errorf("requests %d, want 50", res.Requests())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("run took %v after its 50 requests", d)
	}
}

func TestInterruptedRun(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/"), DrainGrace: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	var windows int
	start := time.Now()
	res, err := e.Run(ctx, Constant(100), Bound{Duration: time.Minute}, func(*Window) { windows++ })
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("interrupted run took %v to return", d)
	}
	if !res.Interrupted || res.Canceled == 0 || windows == 0 {
		t.Errorf("interrupted %v canceled %d windows %d", res.Interrupted, res.Canceled, windows)
	}
	if s := res.Summary(DefaultMaxInflight); s.Status != "partial" {
		t.Errorf("summary status %q", s.Status)
	}
	// The engine recovers from the abort for the next run.
	srv2 := lowport.NewServer(t, http.HandlerFunc(okHandler))
	e2 := newEngine(t, Config{Source: urls(t, srv2.URL+"/")})
	e2.tr.abort()
	e2.tr.reset()
	if r := mustRun(t, e2, Constant(100), Bound{Duration: 100 * time.Millisecond}, nil); r.Errors() != 0 || r.Requests() != 10 {
		t.Errorf("after an abort: requests %d errors %d", r.Requests(), r.Errors())
	}
}

func TestConnectionsReusedAcrossRuns(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(okHandler))
	l, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/"), Connections: 2})
	total := new(Result)
	for range 3 {
		total.Merge(mustRun(t, e, Constant(200), Bound{Duration: 200 * time.Millisecond}, nil))
	}
	if total.Requests() != 120 || total.Errors() != 0 {
		t.Errorf("merged: requests %d errors %d", total.Requests(), total.Errors())
	}
	if total.Sending < 600*time.Millisecond || total.Total().Latency.TotalCount() != 120 {
		t.Errorf("merged: sending %v, latency count %d", total.Sending, total.Total().Latency.TotalCount())
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("%d connections for 3 runs on 2 connections: not reused across runs", n)
	}
	// The server drops its idle connections between runs: the stale ones
	// are retried on fresh connections, not counted as errors.
	srv.CloseClientConnections()
	if r := mustRun(t, e, Constant(200), Bound{Duration: 100 * time.Millisecond}, nil); r.Errors() != 0 {
		t.Errorf("after the server closed idle connections: %v", r.Total().ErrorsByClass())
	}
}

func TestRequestsAsScenarioSays(t *testing.T) {
	type seen struct{ method, path, host, ua, auth, ctype, body string }
	var mu sync.Mutex
	var got []seen
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.RequestURI(), r.Host, r.UserAgent(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		if r.Method == "POST" && r.ContentLength != int64(len(b)) {
			w.WriteHeader(400)
		}
	}))
	yaml := `version: 1
base_url: ` + srv.URL + `
requests:
  - name: create order
    method: POST
    url: /orders?x=1
    headers: {Content-Type: application/json}
    body: '{"sku": "AB-12"}'
  - name: override host
    url: /h
    headers: {Host: example.test}
`
	sc, err := scenario.Parse("s.yaml", []byte(yaml), t.TempDir(), []scenario.Header{{Name: "Authorization", Value: "Bearer t0k"}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{Source: sc})
	res := mustRun(t, e, Constant(100), Bound{Duration: 200 * time.Millisecond}, nil)
	if res.Requests() != 20 || res.Total().Status[200] != 20 {
		t.Fatalf("requests %d status %v", res.Requests(), res.Total().StatusCodes())
	}
	names := map[string]int64{}
	for _, ep := range res.Endpoints {
		names[ep.Name] = ep.Requests
	}
	if names["create order"] == 0 || names["override host"] == 0 {
		t.Errorf("endpoints %v", names)
	}
	mu.Lock() // the handlers' writes are not ordered before this by the run
	defer mu.Unlock()
	for _, s := range got {
		if s.auth != "Bearer t0k" || !strings.HasPrefix(s.ua, "chokepoint/") {
			t.Fatalf("request %+v: default headers missing", s)
		}
		switch s.path {
		case "/orders?x=1":
			if s.method != "POST" || s.body != `{"sku": "AB-12"}` || s.ctype != "application/json" {
				t.Errorf("POST arrived as %+v", s)
			}
		case "/h":
			if s.host != "example.test" {
				t.Errorf("Host %q, want the scenario's override", s.host)
			}
		default:
			t.Errorf("unexpected request %+v", s)
		}
	}
}

// TestWindowMemoryFlat: windows are emitted and their memory reused, so a
// long run does not grow.
func TestWindowMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3 seconds")
	}
	srv := lowport.NewServer(t, http.HandlerFunc(okHandler))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/a", srv.URL+"/b"), Window: 20 * time.Millisecond})
	var (
		first       *Window
		firstHist   any
		heapFirst   uint64
		heapMax     uint64
		n           int
		sameWindows = true
	)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// A closed model keeps the connections (and the in-process server's)
	// fixed, so that any growth would be the recording's.
	mustRun(t, e, Closed(4), Bound{Duration: 3 * time.Second}, func(w *Window) {
		n++
		if first == nil {
			first, firstHist = w, w.Endpoints[0].Latency
		}
		if w != first || any(w.Endpoints[0].Latency) != firstHist {
			sameWindows = false
		}
		switch {
		case n == 10:
			heapFirst = heap()
		case n > 10 && n%20 == 0:
			heapMax = max(heapMax, heap())
		}
	})
	if !sameWindows {
		t.Error("windows are not reused")
	}
	if n < 30 {
		t.Fatalf("only %d windows", n)
	}
	if grow := int64(heapMax) - int64(heapFirst); grow > 1<<20 {
		t.Errorf("heap grew %d KiB over %d windows", grow>>10, n)
	}
}

func TestConfigValidate(t *testing.T) {
	src := urls(t, "http://127.0.0.1:20001/")
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Source"},
		{Config{Source: src, MaxInflight: -1}, "MaxInflight"},
		{Config{Source: src, Connections: -1}, "Connections"},
		{Config{Source: src, Timeout: -time.Second}, "Timeout"},
		{Config{Source: src, MaxBodyBytes: -1}, "MaxBodyBytes"},
		{Config{Source: src, Window: time.Millisecond}, "Window"},
		{Config{Source: src, DrainGrace: -1}, "DrainGrace"},
		{Config{Source: src, HTTP2: true, NetHTTP: true}, "NetHTTP"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want it to name %s", tc.cfg, err, tc.want)
		}
	}
	if err := (&Config{Source: src}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	e := newEngine(t, Config{Source: src})
	if _, err := e.Run(context.Background(), Constant(10), Bound{}, nil); err == nil {
		t.Error("Run with a zero Bound: no error")
	}
	if _, err := e.Run(context.Background(), Schedule{}, Bound{Duration: time.Second}, nil); err == nil {
		t.Error("Run with a zero Schedule: no error")
	}
	e.Close()
	if _, err := e.Run(context.Background(), Constant(10), Bound{Duration: time.Second}, nil); err != ErrClosed {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
}
