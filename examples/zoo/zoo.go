// Package zoo is a small shop service (orders, customers, products and a
// "pricing" downstream) with one switchable bottleneck per finding kind and
// its textbook fix: the ground truth chokepoint is tested against.
//
// Each bottleneck is written the way it happens in real code (a missing
// index, a query per item, a mutex held across a call, a pool too small…);
// nothing in a response, header or metric names the mode. The service
// exposes /debug/pprof/ (mutex and block profiling on), /metrics (Go
// runtime, process, request and pgxpool statistics) and, when configured,
// OpenTelemetry traces over OTLP/HTTP.
package zoo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// Profiling rates set by Start. One mutex contention event in
// mutexProfileFraction is recorded, and blocking events are sampled about
// once per blockProfileRate nanoseconds blocked: both keep overhead to a
// few percent while a contended lock or a queue shows within a second.
const (
	mutexProfileFraction = 5
	blockProfileRate     = 10_000
)

// feedBufferSize is the initial size of a product feed buffer: a
// category's feed is about 100 kB.
const feedBufferSize = 256 << 10

// maxModes is how many bottlenecks may be switched on at once.
const maxModes = 2

// Config configures a zoo. The zero value (plus DSN for database modes)
// serves the healthy shop on a free loopback port.
type Config struct {
	// Addr is the listen address; empty means 127.0.0.1 at a free port
	// below 32768.
	Addr string
	// DSN is the PostgreSQL database (seeded with Seed). Required by modes
	// whose NeedsDB is true; without it, database routes answer 503.
	DSN string
	// Bottlenecks are the modes switched on (see Modes): at most two;
	// empty or "none" is the healthy service.
	Bottlenecks []string
	// Fixed applies each mode's textbook fix.
	Fixed bool
	// OTLPEndpoint is an OTLP/HTTP base URL (http://127.0.0.1:4318) to send
	// traces to; empty means no tracing.
	OTLPEndpoint string
	// PoolSize overrides the database pool size; 0 means the mode's
	// default.
	PoolSize int
	// Logger receives the zoo's logs; nil discards them.
	Logger *slog.Logger
	// DataDir is where io.disk writes its events; empty means a temporary
	// directory removed by Close.
	DataDir string
	// Isolated says the zoo is a process of its own (the zoo binary), so a
	// mode may change process-wide state: cpu.throttled moves the process
	// into a CPU-limited cgroup. Without it cpu.throttled is refused.
	Isolated bool
	// Env is extra environment ("NAME=value") for the process StartProcess
	// starts; Start ignores it.
	Env []string
}

// ErrNeedsProcess is returned by Start for cpu.throttled without
// Config.Isolated: the mode must run in its own process (StartProcess).
var ErrNeedsProcess = errors.New("mode needs the zoo in a process of its own")

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	names := c.modeNames()
	if len(names) > maxModes {
		return fmt.Errorf("bottlenecks: at most %d at once, got %d", maxModes, len(names))
	}
	for _, n := range names {
		m, ok := LookupMode(n)
		if !ok {
			return fmt.Errorf("bottlenecks: unknown mode %q (see zoo modes)", n)
		}
		if m.NeedsDB && c.DSN == "" {
			return fmt.Errorf("dsn: mode %s needs a database", n)
		}
		if m.Process && !c.Isolated {
			return fmt.Errorf("bottlenecks: %s: %w", n, ErrNeedsProcess)
		}
	}
	if c.PoolSize < 0 {
		return fmt.Errorf("pool size: must not be negative")
	}
	return nil
}

// modeNames are the modes switched on, without "none" and duplicates.
func (c Config) modeNames() []string {
	var out []string
	for _, b := range c.Bottlenecks {
		for _, n := range strings.Split(b, ",") {
			n = strings.TrimSpace(n)
			if n != "" && n != None && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// Server is a running zoo.
type Server struct {
	cfg   Config
	modes map[string]bool
	log   *slog.Logger

	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for per-request connections
	cat     *catalog

	tp, pricingTP *sdktrace.TracerProvider
	tracer        trace.Tracer

	pricing  *pricingServer
	price    *pricingClient
	quotes   *quoteBook
	workers  *workerPool
	replay   *replayLog
	prices   *priceCache
	summary  *summaryCache
	outbox   *outbox
	feedBufs sync.Pool // *[]byte, reused by the product feed
	cg       *cgroup
	tempDir  string
	ln       net.Listener
	srv      *http.Server
	url      string
	served   chan error
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// Start starts a zoo and returns once it accepts requests.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("zoo config: %w", err)
	}
	s := &Server{cfg: cfg, modes: map[string]bool{}, log: cfg.Logger, served: make(chan error, 1)}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, n := range cfg.modeNames() {
		s.modes[n] = true
	}
	defer func() {
		if err != nil {
			s.teardown(context.WithoutCancel(ctx))
		}
	}()

	if s.tp, err = newTracerProvider(ctx, cfg.OTLPEndpoint, "zoo"); err != nil {
		return nil, err
	}
	if s.pricingTP, err = newTracerProvider(ctx, cfg.OTLPEndpoint, "pricing"); err != nil {
		return nil, err
	}
	s.tracer = tracerOf(s.tp, "github.com/chokepoint/chokepoint/examples/zoo")

	if cfg.DSN != "" {
		dt := &dbTracer{tracer: s.tracer}
		if s.pool, err = openPool(ctx, cfg.DSN, s.poolSize(), dt); err != nil {
			return nil, err
		}
		s.connCfg = s.pool.Config().ConnConfig.Copy()
		if err = s.prepareDB(ctx); err != nil {
			return nil, err
		}
	}
	if s.cat, err = loadCatalog(ctx, s.pool); err != nil {
		return nil, err
	}

	pln, err := lowport.Listen()
	if err != nil {
		return nil, fmt.Errorf("pricing listener: %w", err)
	}
	latency, shipCap := pricingLatency, 0
	if s.on(DownstreamSlow) {
		latency = pricingSlowLatency
	}
	if s.on(ErrorsUnderLoad) {
		shipCap = shippingCapSmall
		if cfg.Fixed {
			shipCap = shippingCapLarge
		}
	}
	s.pricing = startPricing(pln, latency, shipCap, tracerOf(s.pricingTP, "pricing"), s.log)
	s.price = newPricingClient(s.pricing.addr(), s.tracer)

	s.quotes = newQuoteBook(s.price)
	workers := quoteWorkersLarge
	if s.broken(ConcurrencyLimit) {
		workers = quoteWorkersSmall
	}
	s.workers = newWorkerPool(workers)
	s.replay = newReplayLog(!s.broken(MemoryLeak))
	s.prices = newPriceCache(s.price)
	s.summary = &summaryCache{}
	s.feedBufs.New = func() any { b := make([]byte, 0, feedBufferSize); return &b }
	if s.on(IODisk) {
		dir := cfg.DataDir
		if dir == "" {
			if s.tempDir, err = os.MkdirTemp("", "zoo-outbox-"); err != nil {
				return nil, fmt.Errorf("data dir: %w", err)
			}
			dir = s.tempDir
		}
		if s.outbox, err = openOutbox(dir, !cfg.Fixed); err != nil {
			return nil, err
		}
	}

	if s.on(CPUThrottled) {
		quota := throttledQuota
		if cfg.Fixed {
			quota = float64(runtime.NumCPU())
		}
		if s.cg, err = enterCPUQuota(quota); err != nil {
			return nil, err
		}
	}

	if s.ln, err = s.listen(); err != nil {
		return nil, err
	}
	s.url = "http://" + s.ln.Addr().String()

	runtime.SetMutexProfileFraction(mutexProfileFraction)
	runtime.SetBlockProfileRate(blockProfileRate)

	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.on(NetConnectionLimit) {
		// One response per connection, as behind an old proxy: every
		// request passes through accept.
		s.srv.SetKeepAlivesEnabled(false)
	}
	go func() { s.served <- s.srv.Serve(s.ln) }()
	s.log.Info("zoo serving", "url", s.url, "pricing", s.pricing.addr(), "modes", cfg.modeNames(), "fixed", cfg.Fixed)
	return s, nil
}

// on reports whether mode is switched on.
func (s *Server) on(mode string) bool { return s.modes[mode] }

// broken reports whether mode is switched on without its fix.
func (s *Server) broken(mode string) bool { return s.modes[mode] && !s.cfg.Fixed }

func (s *Server) poolSize() int {
	switch {
	case s.cfg.PoolSize > 0:
		return s.cfg.PoolSize
	case s.on(DBConnectionsSaturate) && s.cfg.Fixed:
		return poolSizeSane
	case s.on(DBConnectionsSaturate):
		return poolSizeHuge
	case s.on(DBPoolExhausted) && s.cfg.Fixed:
		return poolSizeRight
	case s.on(DBPoolExhausted):
		return poolSizeSmall
	}
	return poolSizeDefault
}

func (s *Server) listen() (net.Listener, error) {
	var ln net.Listener
	var err error
	if s.cfg.Addr == "" {
		ln, err = lowport.Listen()
	} else {
		ln, err = net.Listen("tcp", s.cfg.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if s.on(NetConnectionLimit) {
		return limitListener(ln, !s.cfg.Fixed)
	}
	return ln, nil
}

// URL is the zoo's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.url }

// PricingAddr is the pricing downstream's host:port.
func (s *Server) PricingAddr() string { return s.pricing.addr() }

// Endpoints are the URLs a hunt of the zoo's modes should load.
func (s *Server) Endpoints() []string {
	var out []string
	for _, m := range s.Truth() {
		for _, p := range m.Paths {
			if u := s.url + p; !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// Truth returns the modes switched on ("none" when healthy) with the
// pricing address filled into their ground truth.
func (s *Server) Truth() []Mode {
	names := s.cfg.modeNames()
	if len(names) == 0 {
		names = []string{None}
	}
	out := make([]Mode, 0, len(names))
	for _, n := range names {
		m, _ := LookupMode(n)
		out = append(out, m.resolve(s.pricing.addr()))
	}
	return out
}

// Close stops serving, waits for requests in flight (until ctx ends), and
// releases everything Start acquired.
func (s *Server) Close(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	s.closeErr = s.teardown(ctx)
	return s.closeErr
}

func (s *Server) teardown(ctx context.Context) error {
	var errs []error
	if s.srv != nil {
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
			s.srv.Close()
		}
		if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	} else if s.ln != nil {
		s.ln.Close()
	}
	if s.pricing != nil {
		if err := s.pricing.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pricing shutdown: %w", err))
		}
	}
	if s.price != nil {
		s.price.close()
	}
	if s.workers != nil {
		s.workers.close()
	}
	if s.outbox != nil {
		if err := s.outbox.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.tempDir != "" {
		if err := os.RemoveAll(s.tempDir); err != nil {
			errs = append(errs, fmt.Errorf("remove data dir: %w", err))
		}
	}
	if s.pool != nil {
		s.pool.Close()
	}
	for _, tp := range []*sdktrace.TracerProvider{s.tp, s.pricingTP} {
		if tp != nil {
			if err := tp.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("trace export: %w", err))
			}
		}
	}
	if s.cg != nil {
		if err := s.cg.leave(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// routes is the service's HTTP surface.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	var poolFn func() *pgxpool.Pool
	if s.pool != nil {
		poolFn = func() *pgxpool.Pool { return s.pool }
	}
	reg, m := newRegistry(poolFn)
	handle := func(route string, h http.HandlerFunc) {
		mux.Handle("GET "+route, instrument(s.tracer, m, route, h))
	}
	handle("/orders", s.getOrder)
	handle("/orders/history", s.orderHistory)
	handle("/orders/recent", s.recentOrders)
	handle("/orders/quote", s.orderQuote)
	handle("/orders/invoice", s.orderInvoice)
	handle("/orders/status", s.orderStatus)
	handle("/orders/total", s.orderTotal)
	handle("/customers", s.getCustomer)
	handle("/products", s.getProduct)
	handle("/products/price", s.productPrice)
	handle("/products/feed", s.productFeed)
	handle("/search", s.search)
	handle("/quote", s.quote)
	handle("/cart/quote", s.cartQuote)
	handle("/shipping", s.shipping)
	handle("/reports/sales", s.salesReport)
	handle("/catalog/summary", s.catalogSummary)
	handle("/catalog/products", s.catalogProducts)
	handle("/track", s.track)

	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
