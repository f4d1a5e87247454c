package zoo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// spanBatchTimeout is how long spans wait before they are exported: short,
// so that a hunt's receiver sees a step's spans within that step (the SDK's
// default is 5 s, longer than many steps).
const spanBatchTimeout = 500 * time.Millisecond

// spanQueueSize bounds the spans buffered for export; under overload the SDK
// drops the excess rather than growing memory (the SDK default is 2048,
// too small for a few thousand requests a second with several spans each).
const spanQueueSize = 65536

var propagator = propagation.TraceContext{}

// newTracerProvider returns a provider exporting to endpoint (an OTLP/HTTP
// base URL such as http://127.0.0.1:4318), or nil when endpoint is empty.
func newTracerProvider(ctx context.Context, endpoint, service string) (*sdktrace.TracerProvider, error) {
	if endpoint == "" {
		return nil, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("otlp endpoint %q: want http://host:port", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if p := strings.TrimSuffix(u.Path, "/"); p != "" {
		opts = append(opts, otlptracehttp.WithURLPath(p+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.version", "1.0.0"),
		attribute.String("telemetry.sdk.language", "go"),
	)
	return sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(spanBatchTimeout), sdktrace.WithMaxQueueSize(spanQueueSize)),
	), nil
}

func tracerOf(tp *sdktrace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		return noop.NewTracerProvider().Tracer(name)
	}
	return tp.Tracer(name)
}

// statusRecorder remembers the status code and size of a response.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument wraps a route's handler with a server span and the request
// metrics. route is the mux pattern without the method ("/orders").
func instrument(tr trace.Tracer, m *httpMetrics, route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		host, port := splitHostPort(r.Host)
		ctx, span := tr.Start(ctx, r.Method+" "+route,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("http.route", route),
				attribute.String("url.path", r.URL.Path),
				attribute.String("url.query", r.URL.RawQuery),
				attribute.String("url.scheme", "http"),
				attribute.String("server.address", host),
				attribute.Int("server.port", port),
				attribute.String("network.protocol.version", strings.TrimPrefix(r.Proto, "HTTP/")),
			))
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r.WithContext(ctx))
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", rec.code),
			attribute.Int64("http.response.body.size", rec.bytes))
		if rec.code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.code))
		}
		span.End()
		m.observe(r.Method, route, rec.code, time.Since(start))
	})
}

func splitHostPort(hostport string) (string, int) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// tracingTransport makes a client span per outgoing request and propagates
// the trace context.
type tracingTransport struct {
	base   http.RoundTripper
	tracer trace.Tracer
}

func (t *tracingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	host, port := splitHostPort(r.URL.Host)
	ctx, span := t.tracer.Start(r.Context(), r.Method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.full", r.URL.String()),
			attribute.String("url.path", r.URL.Path),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
		))
	r = r.Clone(ctx)
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	span.End()
	return resp, nil
}

// dbTracer makes one span per SQL statement (with its text), per connect
// and per pool acquire.
type dbTracer struct {
	tracer trace.Tracer
	host   string
	port   int
	dbName string
}

var (
	_ pgx.QueryTracer       = (*dbTracer)(nil)
	_ pgx.ConnectTracer     = (*dbTracer)(nil)
	_ pgxpool.AcquireTracer = (*dbTracer)(nil)
	_ pgx.PrepareTracer     = (*dbTracer)(nil)
	_ pgxpool.ReleaseTracer = (*dbTracer)(nil)
	_ http.RoundTripper     = (*tracingTransport)(nil)
	_ http.Flusher          = (*statusRecorder)(nil)
)

func (d *dbTracer) attrs(extra ...attribute.KeyValue) trace.SpanStartEventOption {
	a := []attribute.KeyValue{
		attribute.String("db.system", "postgresql"),
		attribute.String("db.system.name", "postgresql"),
		attribute.String("db.namespace", d.dbName),
		attribute.String("db.name", d.dbName),
		attribute.String("server.address", d.host),
		attribute.Int("server.port", d.port),
	}
	return trace.WithAttributes(append(a, extra...)...)
}

func (d *dbTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	op := sqlOperation(data.SQL)
	ctx, _ = d.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), d.attrs(
		attribute.String("db.operation.name", op),
		attribute.String("db.operation", op),
		attribute.String("db.query.text", data.SQL),
		attribute.String("db.statement", data.SQL),
	))
	return ctx
}

func (d *dbTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	if data.Err != nil {
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, data.Err.Error())
	} else {
		span.SetAttributes(attribute.Int64("db.response.returned_rows", data.CommandTag.RowsAffected()))
	}
	span.End()
}

func (d *dbTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	ctx, _ = d.tracer.Start(ctx, "PREPARE", trace.WithSpanKind(trace.SpanKindClient), d.attrs(
		attribute.String("db.operation.name", "PREPARE"),
		attribute.String("db.query.text", data.SQL),
		attribute.String("db.statement", data.SQL),
	))
	return ctx
}

func (d *dbTracer) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareEndData) {
	endSpan(ctx, data.Err)
}

func (d *dbTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	ctx, _ = d.tracer.Start(ctx, "connect", trace.WithSpanKind(trace.SpanKindClient), d.attrs())
	return ctx
}

func (d *dbTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	endSpan(ctx, data.Err)
}

func (d *dbTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	ctx, _ = d.tracer.Start(ctx, "pool.acquire", trace.WithSpanKind(trace.SpanKindInternal), d.attrs())
	return ctx
}

func (d *dbTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	endSpan(ctx, data.Err)
}

func (d *dbTracer) TraceRelease(*pgxpool.Pool, pgxpool.TraceReleaseData) {}

func endSpan(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// sqlOperation is a statement's first keyword, upper-cased.
func sqlOperation(sql string) string {
	sql = strings.TrimSpace(sql)
	if i := strings.IndexAny(sql, " \t\n("); i > 0 {
		sql = sql[:i]
	}
	return strings.ToUpper(sql)
}
