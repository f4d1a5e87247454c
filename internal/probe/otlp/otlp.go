// Package otlp is an embedded OpenTelemetry trace receiver (OTLP/HTTP with
// protobuf or JSON, and OTLP/gRPC) that turns the target's spans into
// evidence.Span records in spans.jsonl, with bounded request size and
// bounded memory.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed gRPC exports

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/probe"
)

// Source is the coverage source name of this probe.
const Source = "otlp"

// Default listen addresses: the OTLP specification's default ports, on
// loopback only.
const (
	DefaultHTTPAddr = "127.0.0.1:4318"
	DefaultGRPCAddr = "127.0.0.1:4317"
)

// DefaultMaxRequestBytes bounds one export request, compressed and again
// after decompression. The OpenTelemetry Collector's OTLP receiver accepts
// 4 MiB gRPC messages by default; twice that leaves room for OTLP/JSON,
// which is larger than protobuf for the same spans.
const DefaultMaxRequestBytes = 8 << 20

// DefaultSpansPerWindow bounds the spans kept per one-second window of the
// traces first seen in it. At ~400 bytes a record that is ~2 MB/s of
// spans.jsonl and, with the room for traces continued from the previous
// second (half as much) and the windows waiting for the writer, ~15 MB of
// memory at most; it holds every span of a few hundred traced requests per
// second with a dozen spans each, and samples whole traces beyond.
const DefaultSpansPerWindow = 5000

// DefaultSpansPerTrace bounds the spans kept of one trace per window. The
// trace rules look for calls repeated 5 times or more (n+1) or a few
// sequential calls; a thousand spans show the shape of even a batch
// request, and one such trace still leaves four fifths of a default window
// to the others.
const DefaultSpansPerTrace = 1000

// maxConcurrentExports bounds the export requests decoded at the same time
// (HTTP and gRPC together), so memory stays under a few times
// DefaultMaxRequestBytes whatever the exporters do; exporters that find it
// busy wait, which is the back-pressure OTLP expects.
const maxConcurrentExports = 2

// flushInterval is how often closed windows are written out.
const flushInterval = 250 * time.Millisecond

// shutdownGrace bounds how long Run waits for in-flight exports when its
// context ends.
const shutdownGrace = 2 * time.Second

// Errors Listen returns, for the hunt to turn into a notice.
var (
	// ErrPortBusy: the address is taken (another collector or agent is
	// already listening there).
	ErrPortBusy = errors.New("port busy")
	// ErrRemoteListen: the address is not a loopback one and
	// Config.AllowRemote is not set.
	ErrRemoteListen = errors.New("refusing to listen on a non-loopback address")
)

// Config configures a Receiver. The zero value listens on both default
// addresses, on loopback only, with the default bounds.
type Config struct {
	// HTTPAddr is where OTLP/HTTP is served ("" means DefaultHTTPAddr).
	// Use port 0 only outside tests.
	HTTPAddr string
	// GRPCAddr is where OTLP/gRPC is served ("" means DefaultGRPCAddr).
	GRPCAddr string
	// DisableHTTP and DisableGRPC turn one protocol off.
	DisableHTTP, DisableGRPC bool
	// AllowRemote permits listen addresses that are not loopback.
	AllowRemote bool
	// MaxRequestBytes bounds one request, before and after decompression
	// (0 means DefaultMaxRequestBytes).
	MaxRequestBytes int64
	// SpansPerWindow bounds the spans kept per second of arrival (0 means
	// DefaultSpansPerWindow); beyond it whole traces are sampled.
	SpansPerWindow int
	// SpansPerTrace bounds the spans kept of one trace per second (0 means
	// DefaultSpansPerTrace); a trace cut there is counted as partial.
	SpansPerTrace int
	// Logger receives operational messages (nil discards them).
	Logger *slog.Logger
}

// Validate checks the configuration; its errors name the field.
func (c Config) Validate() error {
	if c.DisableHTTP && c.DisableGRPC {
		return errors.New("otlp: DisableHTTP and DisableGRPC: nothing to listen on")
	}
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("otlp: MaxRequestBytes: %d is negative", c.MaxRequestBytes)
	}
	if c.SpansPerWindow < 0 {
		return fmt.Errorf("otlp: SpansPerWindow: %d is negative", c.SpansPerWindow)
	}
	if c.SpansPerTrace < 0 {
		return fmt.Errorf("otlp: SpansPerTrace: %d is negative", c.SpansPerTrace)
	}
	for _, f := range []struct{ name, addr string }{{"HTTPAddr", c.HTTPAddr}, {"GRPCAddr", c.GRPCAddr}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return fmt.Errorf("otlp: %s: %w", f.name, err)
		}
	}
	return nil
}

// Receiver is the OTLP trace receiver. It implements probe.Probe.
type Receiver struct {
	cfg  Config
	log  *slog.Logger
	seed maphash.Seed
	now  func() time.Time // the arrival clock; tests replace it
	sem  chan struct{}

	mu       sync.Mutex
	httpLn   net.Listener
	grpcLn   net.Listener
	running  bool
	res      reservoir
	requests map[string]int64 // export requests accepted, by protocol
	invalid  int64            // spans without valid ids
	badReqs  int64            // requests refused (malformed, too large, ...)
	written  int64
	writeErr error

	writeMu sync.Mutex // orders writes of closed windows
}

var _ probe.Probe = (*Receiver)(nil)

// New returns a Receiver for cfg. It does not listen yet.
func New(cfg Config) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = DefaultGRPCAddr
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.SpansPerWindow == 0 {
		cfg.SpansPerWindow = DefaultSpansPerWindow
	}
	if cfg.SpansPerTrace == 0 {
		cfg.SpansPerTrace = DefaultSpansPerTrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Receiver{
		cfg:      cfg,
		log:      log,
		seed:     maphash.MakeSeed(),
		now:      time.Now,
		sem:      make(chan struct{}, maxConcurrentExports),
		res:      newReservoir(cfg.SpansPerWindow, cfg.SpansPerTrace),
		requests: map[string]int64{},
	}, nil
}

// Source implements probe.Probe.
func (r *Receiver) Source() string { return Source }

// Listen binds the configured addresses, so that the caller learns at once
// whether the receiver can run (and where) before starting the target.
// Either every enabled listener is bound or none is. A busy address yields
// an error wrapping ErrPortBusy; a non-loopback one without AllowRemote,
// ErrRemoteListen. Run calls Listen itself when it was not called.
func (r *Receiver) Listen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.httpLn != nil || r.grpcLn != nil {
		return nil
	}
	var hl, gl net.Listener
	var err error
	if !r.cfg.DisableHTTP {
		if hl, err = r.listen("OTLP/HTTP", r.cfg.HTTPAddr); err != nil {
			return err
		}
	}
	if !r.cfg.DisableGRPC {
		if gl, err = r.listen("OTLP/gRPC", r.cfg.GRPCAddr); err != nil {
			if hl != nil {
				hl.Close()
			}
			return err
		}
	}
	r.httpLn, r.grpcLn = hl, gl
	return nil
}

func (r *Receiver) listen(proto, addr string) (net.Listener, error) {
	if !r.cfg.AllowRemote && !isLoopback(addr) {
		return nil, fmt.Errorf("otlp: %s listen %s: %w (set AllowRemote)", proto, addr, ErrRemoteListen)
	}
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("otlp: %s listen %s: %w: %w", proto, addr, ErrPortBusy, err)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp: %s listen %s: %w", proto, addr, err)
	}
	return l, nil
}

// isLoopback reports whether a host:port names a loopback address.
// Hostnames other than localhost are not resolved: they count as remote.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr is the OTLP/HTTP address actually bound (host:port), or "" before
// Listen or when HTTP is disabled. Point a target's exporter at
// "http://" + Addr().
func (r *Receiver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.httpLn == nil {
		return ""
	}
	return r.httpLn.Addr().String()
}

// GRPCAddr is the OTLP/gRPC address actually bound, or "".
func (r *Receiver) GRPCAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grpcLn == nil {
		return ""
	}
	return r.grpcLn.Addr().String()
}

// Run serves OTLP until ctx is done, appending the kept spans to
// evidence.SpansStream and each second's counts to
// evidence.SpanWindowsStream as the seconds close, then shuts the servers down,
// writes what it still holds and returns nil. It returns an error only
// when it cannot listen (see Listen).
func (r *Receiver) Run(ctx context.Context, sink probe.Sink) error {
	if err := r.Listen(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("otlp: Run called twice")
	}
	r.running = true
	hl, gl := r.httpLn, r.grpcLn
	r.mu.Unlock()

	var wg sync.WaitGroup
	var hs *http.Server
	if hl != nil {
		hs = &http.Server{
			Handler:           r.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		}
		wg.Go(func() {
			if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Warn("otlp http server stopped", "err", err)
			}
		})
	}
	var gs *grpc.Server
	if gl != nil {
		gs = grpc.NewServer(
			grpc.MaxRecvMsgSize(int(r.cfg.MaxRequestBytes)),
			grpc.MaxConcurrentStreams(maxConcurrentExports*4),
		)
		ptraceotlp.RegisterGRPCServer(gs, &grpcTraces{r: r})
		wg.Go(func() {
			if err := gs.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				r.log.Warn("otlp grpc server stopped", "err", err)
			}
		})
	}

	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			r.flush(sink, r.now().Unix())
		}
	}

	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if hs != nil {
		if err := hs.Shutdown(stopCtx); err != nil {
			hs.Close()
		}
	}
	if gs != nil {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-stopCtx.Done():
			gs.Stop()
			<-done
		}
	}
	wg.Wait()
	r.flush(sink, 0)
	return nil
}

// flush writes the windows closed before second now (all when now is 0).
func (r *Receiver) flush(sink probe.Sink, now int64) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	windows := r.res.take(now)
	r.mu.Unlock()
	var n int64
	var werr error
write:
	for _, w := range windows {
		if err := sink.Append(evidence.SpanWindowsStream, &w.stats); err != nil {
			werr = err
			break
		}
		for i := range w.spans {
			if err := sink.Append(evidence.SpansStream, &w.spans[i]); err != nil {
				werr = err
				break write
			}
			n++
		}
	}
	r.mu.Lock()
	r.written += n
	if werr != nil && r.writeErr == nil {
		r.writeErr = werr
	}
	r.mu.Unlock()
}

// consume offers every span of td to the reservoir and returns how many
// were not kept (for the export response's partial success).
func (r *Receiver) consume(td ptrace.Traces, proto string) (rejected int64) {
	sec := r.now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[proto]++
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		service := ""
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok {
			service = v.AsString()
		}
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				tid := sp.TraceID()
				if tid.IsEmpty() || sp.SpanID().IsEmpty() {
					r.invalid++
					rejected++
					continue
				}
				tb := r.res.admit(sec, tid, maphash.Bytes(r.seed, tid[:]))
				if tb == nil {
					rejected++
					continue
				}
				rec, _ := convertSpan(service, sp)
				tb.spans = append(tb.spans, rec)
			}
		}
	}
	return rejected
}

// Coverage implements probe.Probe.
func (r *Receiver) Coverage() probe.Coverage {
	r.mu.Lock()
	defer r.mu.Unlock()
	where := r.whereLocked()
	c := probe.Coverage{Source: Source}
	switch {
	case r.writeErr != nil:
		c.Status = probe.StatusError
		c.Detail = fmt.Sprintf("writing spans failed after %d: %v", r.written, r.writeErr)
	case r.res.seen == 0 && r.invalid == 0:
		c.Status = probe.StatusUnavailable
		c.Detail = fmt.Sprintf("no spans received on %s; export the target's traces there "+
			"(e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://%s)", where, first(r.addrLocked(r.httpLn), r.cfg.HTTPAddr))
	default:
		c.Status = probe.StatusOK
		sampled := "every trace kept"
		if r.res.maxShift > 0 {
			sampled = fmt.Sprintf("whole traces sampled down to 1/%d at most", uint64(1)<<min(r.res.maxShift, 63))
		}
		c.Detail = fmt.Sprintf("received %d spans in %d HTTP and %d gRPC requests on %s; kept %d, "+
			"dropped %d (budget %d spans/s of new traces: %s; %d spans of kept traces beyond %d per trace "+
			"or the room for continued traces), %d without trace or span id, %d requests refused",
			r.res.seen+r.invalid, r.requests["http"], r.requests["grpc"], where,
			r.written, r.res.dropped, r.cfg.SpansPerWindow, sampled,
			r.res.capped, r.cfg.SpansPerTrace, r.invalid, r.badReqs)
	}
	return c
}

func (r *Receiver) whereLocked() string {
	var parts []string
	if a := r.addrLocked(r.httpLn); a != "" {
		parts = append(parts, "http://"+a+"/v1/traces")
	}
	if a := r.addrLocked(r.grpcLn); a != "" {
		parts = append(parts, a+" (gRPC)")
	}
	if len(parts) == 0 {
		return "no address (not listening)"
	}
	return strings.Join(parts, " and ")
}

func (r *Receiver) addrLocked(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
