package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/run"
)

// harness runs a Receiver on low loopback ports, writing into a real run
// directory.
type harness struct {
	r      *Receiver
	dir    *run.Dir
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config, setup func(*Receiver)) *harness {
	t.Helper()
	var err error
	if cfg.HTTPAddr == "" {
		if cfg.HTTPAddr, err = lowport.Addr(); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.GRPCAddr == "" {
		if cfg.GRPCAddr, err = lowport.Addr(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(r)
	}
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	dir, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{r: r, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- r.Run(ctx, dir) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop ends Run and returns the spans written.
func (h *harness) stop(t *testing.T) []evidence.Span {
	t.Helper()
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	h.dir.Close()
	return readStream[evidence.Span](t, h.dir, evidence.SpansStream)
}

// readStream reads every record of a stream of the run directory.
func readStream[T any](t *testing.T, dir *run.Dir, stream string) []T {
	t.Helper()
	var out []T
	if err := run.ReadLines(dir.Join(stream), func(v T) error {
		out = append(out, v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *harness) file(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(h.dir.Join(evidence.SpansStream))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var baseTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func traceID(n int) pcommon.TraceID {
	var id pcommon.TraceID
	copy(id[:], fmt.Sprintf("trace-%010d", n))
	return id
}

func spanID(trace, n int) pcommon.SpanID {
	var id pcommon.SpanID
	copy(id[:], fmt.Sprintf("%04d%04d", trace%10000, n))
	return id
}

// orderTrace builds one request of GET /orders/{id}: a server span, three
// database calls with different literals, one with a placeholder and a
// parameter attribute, an HTTP client call with credentials in its URL,
// and a statement carrying a password.
func orderTrace(ss ptrace.ScopeSpans, n int) {
	tid := traceID(n)
	t0 := baseTime.Add(time.Duration(n) * time.Millisecond)
	root := ss.Spans().AppendEmpty()
	root.SetTraceID(tid)
	root.SetSpanID(spanID(n, 0))
	root.SetName("GET /orders/{id}")
	root.SetKind(ptrace.SpanKindServer)
	root.SetStartTimestamp(pcommon.NewTimestampFromTime(t0))
	root.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(20 * time.Millisecond)))
	root.Status().SetCode(ptrace.StatusCodeOk)
	a := root.Attributes()
	a.PutStr("http.request.method", "GET")
	a.PutStr("http.route", "/orders/{id}")
	a.PutStr("url.path", "/orders/42")
	a.PutStr("url.query", "session=abc&page=2")
	a.PutStr("url.scheme", "http")
	a.PutStr("server.address", "127.0.0.1")
	a.PutInt("server.port", 8080)
	a.PutInt("http.response.status_code", 200)

	child := func(i int, name string, kind ptrace.SpanKind, from, to time.Duration) pcommon.Map {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(tid)
		s.SetSpanID(spanID(n, i))
		s.SetParentSpanID(spanID(n, 0))
		s.SetName(name)
		s.SetKind(kind)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(from)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(to)))
		return s.Attributes()
	}
	for i := 1; i <= 3; i++ {
		a := child(i, "SELECT items", ptrace.SpanKindClient, time.Duration(i)*time.Millisecond, time.Duration(i+1)*time.Millisecond)
		a.PutStr("db.system", "postgresql")
		a.PutStr("db.statement", fmt.Sprintf("SELECT *\n  FROM items WHERE order_id = %d AND sku = 'A-%d'", 40+i, i))
		a.PutStr("net.peer.name", "db.local")
		a.PutInt("net.peer.port", 5432)
	}
	a = child(4, "SELECT customer", ptrace.SpanKindClient, 5*time.Millisecond, 6*time.Millisecond)
	a.PutStr("db.system.name", "postgresql")
	a.PutStr("db.query.text", "SELECT name FROM customers WHERE id = $1")
	a.PutStr("db.query.parameter.0", "7")
	a.PutStr("server.address", "db.local")
	a.PutInt("server.port", 5432)
	a = child(5, "GET", ptrace.SpanKindClient, 6*time.Millisecond, 16*time.Millisecond)
	a.PutStr("http.method", "GET")
	a.PutStr("http.url", "http://alice:pa55word@127.0.0.1:9090/price?sku=1&api_key=SECRETKEY")
	a.PutInt("http.status_code", 503)
	a = child(6, "ALTER ROLE", ptrace.SpanKindClient, 17*time.Millisecond, 18*time.Millisecond)
	a.PutStr("db.system", "postgresql")
	a.PutStr("db.statement", "ALTER ROLE app PASSWORD 'hunter2'")
}

// orderRequest builds an export request with traces orders, numbered from
// first.
func orderRequest(first, traces int) ptraceotlp.ExportRequest {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "shop")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range traces {
		orderTrace(ss, first+i)
	}
	return ptraceotlp.NewExportRequestFromTraces(td)
}

func post(t *testing.T, addr, ct, encoding string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+TracesPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func grpcClient(t *testing.T, addr string) ptraceotlp.GRPCClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return ptraceotlp.NewGRPCClient(cc)
}

func TestExport(t *testing.T) {
	cases := []struct {
		name string
		send func(t *testing.T, h *harness, er ptraceotlp.ExportRequest)
	}{
		{"http protobuf", func(t *testing.T, h *harness, er ptraceotlp.ExportRequest) {
			body, _ := er.MarshalProto()
			code, resp := post(t, h.r.Addr(), contentProto, "", body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, resp)
			}
			out := ptraceotlp.NewExportResponse()
			if err := out.UnmarshalProto(resp); err != nil {
				t.Fatalf("response is not an ExportTraceServiceResponse: %v", err)
			}
			if n := out.PartialSuccess().RejectedSpans(); n != 0 {
				t.Errorf("rejected %d spans", n)
			}
		}},
		{"http protobuf gzip", func(t *testing.T, h *harness, er ptraceotlp.ExportRequest) {
			body, _ := er.MarshalProto()
			if code, resp := post(t, h.r.Addr(), contentProto, "gzip", gzipped(t, body)); code != http.StatusOK {
				t.Fatalf("status %d: %s", code, resp)
			}
		}},
		{"http json", func(t *testing.T, h *harness, er ptraceotlp.ExportRequest) {
			body, _ := er.MarshalJSON()
			// OTLP/JSON writes ids as hex, not base64.
			if !bytes.Contains(body, []byte(`"traceId":"74726163652d30303030303030303030"`)) {
				t.Fatalf("payload does not carry hex trace ids: %.300s", body)
			}
			code, resp := post(t, h.r.Addr(), contentJSON+"; charset=utf-8", "", body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, resp)
			}
			if !json.Valid(resp) {
				t.Errorf("JSON request answered with %q", resp)
			}
		}},
		{"grpc", func(t *testing.T, h *harness, er ptraceotlp.ExportRequest) {
			resp, err := grpcClient(t, h.r.GRPCAddr()).Export(t.Context(), er)
			if err != nil {
				t.Fatal(err)
			}
			if n := resp.PartialSuccess().RejectedSpans(); n != 0 {
				t.Errorf("rejected %d spans", n)
			}
		}},
		{"grpc gzip", func(t *testing.T, h *harness, er ptraceotlp.ExportRequest) {
			if _, err := grpcClient(t, h.r.GRPCAddr()).Export(t.Context(), er, grpc.UseCompressor(grpcgzip.Name)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, Config{}, nil)
			c.send(t, h, orderRequest(0, 2))
			spans := h.stop(t)
			if len(spans) != 14 {
				t.Fatalf("wrote %d spans, want 14", len(spans))
			}
			checkOrderSpans(t, spans)
			file := h.file(t)
			for _, leak := range []string{"hunter2", "SECRETKEY", "pa55word", "alice", "abc"} {
				if strings.Contains(file, leak) {
					t.Errorf("spans.jsonl holds the secret %q", leak)
				}
			}
			cov := h.r.Coverage()
			if cov.Status != probe.StatusOK || !strings.Contains(cov.Detail, "kept 14") {
				t.Errorf("coverage %+v", cov)
			}
		})
	}
}

func checkOrderSpans(t *testing.T, spans []evidence.Span) {
	t.Helper()
	byID := map[string]evidence.Span{}
	for _, s := range spans {
		if s.TraceID != "74726163652d30303030303030303030" && s.TraceID != "74726163652d30303030303030303031" {
			t.Errorf("trace id %q", s.TraceID)
		}
		if s.Service != "shop" {
			t.Errorf("service %q", s.Service)
		}
		if s.T != s.StartNS/1e6 || s.EndNS <= s.StartNS {
			t.Errorf("times t=%d start=%d end=%d", s.T, s.StartNS, s.EndNS)
		}
		if s.TraceID == "74726163652d30303030303030303030" {
			byID[s.SpanID] = s
		}
	}
	hexID := func(i int) string { id := spanID(0, i); return fmt.Sprintf("%x", id[:]) }
	root := byID[hexID(0)]
	if root.Kind != evidence.SpanKindServer || root.HTTPMethod != "GET" || root.HTTPRoute != "/orders/{id}" ||
		root.HTTPStatus != 200 || root.Status != evidence.SpanStatusOK || root.ParentID != "" {
		t.Errorf("root span %+v", root)
	}
	if root.HTTPURL != "http://127.0.0.1:8080/orders/42?page=2&session=%3Credacted%3E" {
		t.Errorf("root url %q", root.HTTPURL)
	}
	var args []string
	for i := 1; i <= 3; i++ {
		db := byID[hexID(i)]
		if db.Kind != evidence.SpanKindClient || db.ParentID != hexID(0) || db.DBSystem != "postgresql" ||
			db.DBQuery != "SELECT * FROM items WHERE order_id = $1 AND sku = $2" || db.Peer != "db.local:5432" {
			t.Errorf("db span %d: %+v", i, db)
		}
		if !strings.HasPrefix(db.DBStatement, "SELECT *\n  FROM items WHERE order_id = 4") {
			t.Errorf("raw statement %q", db.DBStatement)
		}
		args = append(args, db.DBArgs)
	}
	if args[0] == "" || args[0] == args[1] || args[1] == args[2] {
		t.Errorf("argument fingerprints %q: want distinct and non-empty", args)
	}
	if p := byID[hexID(4)]; p.DBQuery != "SELECT name FROM customers WHERE id = $1" || p.DBArgs == "" || p.DBSystem != "postgresql" {
		t.Errorf("placeholder span %+v", p)
	}
	dn := byID[hexID(5)]
	if dn.HTTPURL != "http://127.0.0.1:9090/price?api_key=%3Credacted%3E&sku=1" || dn.HTTPMethod != "GET" ||
		dn.HTTPStatus != 503 || dn.Peer != "127.0.0.1:9090" {
		t.Errorf("downstream span %+v", dn)
	}
	if pw := byID[hexID(6)]; pw.DBStatement != "" || pw.DBQuery != "ALTER ROLE app PASSWORD $1" {
		t.Errorf("password span %+v", pw)
	}
}

func TestRefusedRequests(t *testing.T) {
	h := start(t, Config{MaxRequestBytes: 1 << 20}, nil)
	valid, _ := orderRequest(0, 1).MarshalProto()
	big := bytes.Repeat([]byte{0x0a}, 2<<20)
	cases := []struct {
		name, method, ct, enc string
		body                  []byte
		want                  int
	}{
		{"get", http.MethodGet, contentProto, "", nil, http.StatusMethodNotAllowed},
		{"text body", http.MethodPost, "text/plain", "", valid, http.StatusUnsupportedMediaType},
		{"brotli", http.MethodPost, contentProto, "br", valid, http.StatusUnsupportedMediaType},
		{"garbage protobuf", http.MethodPost, contentProto, "", []byte{0xff, 0xff, 0xff, 0x01}, http.StatusBadRequest},
		{"garbage json", http.MethodPost, contentJSON, "", []byte(`{"resourceSpans":[{`), http.StatusBadRequest},
		{"bad gzip", http.MethodPost, contentProto, "gzip", valid, http.StatusBadRequest},
		{"oversize", http.MethodPost, contentProto, "", big, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), c.method, "http://"+h.r.Addr()+TracesPath, bytes.NewReader(c.body))
			req.Header.Set("Content-Type", c.ct)
			if c.enc != "" {
				req.Header.Set("Content-Encoding", c.enc)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.want, body)
			}
		})
	}
	if spans := h.stop(t); len(spans) != 0 {
		t.Errorf("refused requests wrote %d spans", len(spans))
	}
}

// A gzip bomb (100 MiB of zeros in ~100 KB) is refused after reading
// just over the limit, without allocating anything like its size.
func TestGzipBomb(t *testing.T) {
	h := start(t, Config{}, nil)
	// A gzip file may hold several members, read one after another:
	// 100 copies of 1 MiB of zeros compressed once.
	member := gzipped(t, make([]byte, 1<<20))
	bomb := bytes.Repeat(member, 100)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	code, _ := post(t, h.r.Addr(), contentProto, "gzip", bomb)
	runtime.ReadMemStats(&after)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", code)
	}
	// The limit is 8 MiB; reading up to it allocates about twice that.
	const budget = 48 << 20
	if got := after.TotalAlloc - before.TotalAlloc; got > budget {
		t.Errorf("allocated %d MiB for a %d KiB bomb, want under %d MiB", got>>20, len(bomb)>>10, budget>>20)
	}
}

func TestGRPCOversize(t *testing.T) {
	h := start(t, Config{MaxRequestBytes: 1 << 20}, nil)
	er := orderRequest(0, 1)
	er.Traces().ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().
		PutStr("huge", strings.Repeat("a", 4<<20))
	for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor(grpcgzip.Name)}} {
		_, err := grpcClient(t, h.r.GRPCAddr()).Export(t.Context(), er, opts...)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("export of 4 MiB (options %d) to a 1 MiB receiver: %v, want ResourceExhausted", len(opts), err)
		}
	}
}

// Under a flood of exports within one second the receiver keeps whole
// traces within its budget, marks them with the sampling rate and writes
// the second's counts.
func TestReservoirFlood(t *testing.T) {
	const limit = 280 // 40 whole traces of 7 spans
	h := start(t, Config{SpansPerWindow: limit}, func(r *Receiver) {
		r.now = func() time.Time { return baseTime } // every request lands in one window
	})
	const senders, perSender, tracesPerRequest = 4, 10, 5
	var mu sync.Mutex
	var rejected int64
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				body, _ := orderRequest((s*perSender+i)*tracesPerRequest, tracesPerRequest).MarshalProto()
				code, resp := post(t, h.r.Addr(), contentProto, "", body)
				if code != http.StatusOK {
					t.Errorf("status %d", code)
					return
				}
				out := ptraceotlp.NewExportResponse()
				out.UnmarshalProto(resp)
				mu.Lock()
				rejected += out.PartialSuccess().RejectedSpans()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	spans := h.stop(t)
	const traces = senders * perSender * tracesPerRequest
	const total = traces * 7
	if len(spans) == 0 || len(spans) > limit {
		t.Fatalf("kept %d spans, want 1 to %d", len(spans), limit)
	}
	if rejected == 0 || rejected > total-int64(len(spans)) {
		t.Errorf("responses rejected %d spans, want between 1 and %d", rejected, total-len(spans))
	}
	perTrace := map[string]int{}
	for _, s := range spans {
		perTrace[s.TraceID]++
	}
	for id, n := range perTrace {
		if n != 7 {
			t.Errorf("trace %s kept with %d of its 7 spans", id, n)
		}
	}
	windows := readStream[evidence.SpanWindow](t, h.dir, evidence.SpanWindowsStream)
	if len(windows) != 1 {
		t.Fatalf("%d window records, want 1: %+v", len(windows), windows)
	}
	w := windows[0]
	if w.T != baseTime.UnixMilli() || w.SpansSeen != total || w.SpansKept != int64(len(spans)) ||
		w.TracesKept != int64(len(perTrace)) || w.SampleRate >= 1 || w.SampleRate <= 0 {
		t.Errorf("window %+v: want %d spans seen, %d kept in %d traces, a rate below 1", w, total, len(spans), len(perTrace))
	}
	// The kept traces over the rate estimate the traces sent.
	if w.TracesSeen < traces/3 || w.TracesSeen > traces*3 {
		t.Errorf("traces seen estimated at %d, sent %d", w.TracesSeen, traces)
	}
	for _, s := range spans {
		if s.SampleRate != w.SampleRate || s.Weight() != 1/w.SampleRate {
			t.Fatalf("span sample rate %v (weight %v), want the window's %v", s.SampleRate, s.Weight(), w.SampleRate)
		}
	}
	cov := h.r.Coverage()
	if !strings.Contains(cov.Detail, fmt.Sprintf("kept %d, dropped %d", len(spans), total-len(spans))) {
		t.Errorf("coverage %q does not count %d drops", cov.Detail, total-len(spans))
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"http port busy", Config{HTTPAddr: busy.Addr().String(), GRPCAddr: free}, ErrPortBusy},
		{"grpc port busy", Config{HTTPAddr: free, GRPCAddr: busy.Addr().String()}, ErrPortBusy},
		{"all interfaces", Config{HTTPAddr: "0.0.0.0:4318", DisableGRPC: true}, ErrRemoteListen},
		{"remote host", Config{GRPCAddr: "example.com:4317", DisableHTTP: true}, ErrRemoteListen},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = r.Listen()
			if !errors.Is(err, c.want) {
				t.Fatalf("Listen: %v, want %v", err, c.want)
			}
			if r.Addr() != "" || r.GRPCAddr() != "" {
				t.Errorf("a failed Listen left a listener bound")
			}
			// The free address must be free again (all or nothing).
			l, err := net.Listen("tcp", free)
			if err != nil {
				t.Fatalf("Listen leaked %s: %v", free, err)
			}
			l.Close()
		})
	}
	if _, err := New(Config{DisableHTTP: true, DisableGRPC: true}); err == nil {
		t.Error("a config with both protocols off was accepted")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4318": true, "127.8.0.1:1": true, "[::1]:4317": true, "localhost:4318": true,
		"0.0.0.0:4318": false, ":4318": false, "[::]:4318": false, "10.0.0.1:4318": false, "otel:4318": false, "junk": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}

func TestCoverageWithoutSpans(t *testing.T) {
	h := start(t, Config{}, nil)
	h.stop(t)
	cov := h.r.Coverage()
	if cov.Status != probe.StatusUnavailable || !strings.Contains(cov.Detail, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+h.r.Addr()) {
		t.Errorf("coverage %+v", cov)
	}
}

func fuzzDecode(f *testing.F, ct string, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	r, err := New(Config{SpansPerWindow: 100})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<20 {
			return
		}
		er, err := decode(ct, body)
		if err != nil {
			return
		}
		r.consume(er.Traces(), "fuzz")
		r.mu.Lock()
		r.res.take(0)
		r.mu.Unlock()
	})
}

func FuzzDecodeProto(f *testing.F) {
	a, _ := orderRequest(0, 1).MarshalProto()
	b, _ := ptraceotlp.NewExportRequest().MarshalProto()
	fuzzDecode(f, contentProto, [][]byte{a, b, {0x0a, 0x00}})
}

func FuzzDecodeJSON(f *testing.F) {
	a, _ := orderRequest(0, 1).MarshalJSON()
	fuzzDecode(f, contentJSON, [][]byte{a, []byte(`{}`), []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`)})
}
