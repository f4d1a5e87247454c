package evidence

// Span kinds as written in Span.Kind (OpenTelemetry SpanKind, lower case).
const (
	SpanKindUnspecified = "unspecified"
	SpanKindInternal    = "internal"
	SpanKindServer      = "server"
	SpanKindClient      = "client"
	SpanKindProducer    = "producer"
	SpanKindConsumer    = "consumer"
)

// Span statuses as written in Span.Status (OpenTelemetry status code; unset
// is written as the empty string).
const (
	SpanStatusOK    = "ok"
	SpanStatusError = "error"
)

// Span is one span received from the target over OTLP: one line of
// spans.jsonl. Attributes are normalised across the old and the current
// OpenTelemetry semantic conventions, so readers never look at raw
// attribute names. String fields are bounded in length by the receiver.
type Span struct {
	T        int64  `json:"t"`                   // span start, Unix milliseconds (the run's clock)
	TraceID  string `json:"trace_id"`            // 32 lower-case hex digits
	SpanID   string `json:"span_id"`             // 16 lower-case hex digits
	ParentID string `json:"parent_id,omitempty"` // empty for a root span
	Service  string `json:"service,omitempty"`   // resource attribute service.name
	Name     string `json:"name"`
	Kind     string `json:"kind"` // SpanKind* constants
	StartNS  int64  `json:"start_ns"`
	EndNS    int64  `json:"end_ns"`
	Status   string `json:"status,omitempty"` // SpanStatus* constants; empty when unset
	// StatusMessage is the status description, truncated.
	StatusMessage string `json:"status_message,omitempty"`

	// HTTP (server and client spans).
	HTTPMethod string `json:"http_method,omitempty"` // http.request.method / http.method
	// HTTPRoute is the route template: http.route on server spans,
	// url.template on client spans.
	HTTPRoute string `json:"http_route,omitempty"`
	// HTTPURL is the full URL (url.full / http.url, or rebuilt from the
	// scheme, host and target); user info is removed and the values of
	// sensitive query parameters are redacted.
	HTTPURL    string `json:"http_url,omitempty"`
	HTTPStatus int    `json:"http_status,omitempty"` // http.response.status_code / http.status_code

	// Database (client spans).
	DBSystem string `json:"db_system,omitempty"` // db.system / db.system.name
	// DBStatement is db.statement / db.query.text as sent, truncated. It is
	// left empty when the statement may carry a secret (a PASSWORD clause);
	// DBQuery still identifies it.
	DBStatement string `json:"db_statement,omitempty"`
	// DBQuery is the statement normalised as pg_stat_statements writes it
	// (internal/sqlnorm), so it matches postgres.jsonl.
	DBQuery string `json:"db_query,omitempty"`
	// DBArgs fingerprints the statement's parameter values (its literals,
	// or db.query.parameter.* attributes for a statement with $n
	// placeholders). Two calls with the same DBQuery and the same non-empty
	// DBArgs are identical; empty means the values are unknown.
	DBArgs string `json:"db_args,omitempty"`

	// Peer is the remote end of a client span as host:port (server.address
	// and server.port, net.peer.name and net.peer.port, or peer.service).
	Peer string `json:"peer,omitempty"`

	// SampleRate is the probability with which the receiver kept this
	// span's trace (whole traces are kept or dropped by trace id; see
	// SpanWindow). 0 means the trace was not sampled: every trace of its
	// second was kept. Weight is what the span stands for in counts.
	SampleRate float64 `json:"sample_rate,omitempty"`
}

// Weight is the number of traces of the target that this span's trace
// stands for: 1/SampleRate, or 1 when every trace was kept. Rates and
// counts computed from spans.jsonl are scaled by it; ratios within one
// trace (calls per request, critical-path shares) need no scaling.
func (s Span) Weight() float64 {
	if s.SampleRate <= 0 || s.SampleRate >= 1 {
		return 1
	}
	return 1 / s.SampleRate
}

// SpanWindowsStream is the OTLP receiver's per-second account of what it
// received and kept (SpanWindow records), beside SpansStream.
const SpanWindowsStream = "span_windows.jsonl"

// SpanWindow is one second of span arrival at the OTLP receiver: how many
// spans and traces arrived, how many were kept, and at which rate. Written
// for each second in which a span arrived.
type SpanWindow struct {
	T int64 `json:"t"` // the second of arrival (its start), Unix milliseconds
	// SampleRate is the probability that a trace first seen in this second
	// was kept (1: all were). Traces are kept whole, decided by their id.
	SampleRate float64 `json:"sample_rate"`
	SpansSeen  int64   `json:"spans_seen"`
	SpansKept  int64   `json:"spans_kept"`
	// TracesSeen counts distinct trace ids; exact when SampleRate is 1,
	// otherwise estimated from the kept ones (kept / rate).
	TracesSeen int64 `json:"traces_seen"`
	TracesKept int64 `json:"traces_kept"`
	// TracesContinued is how many of the kept traces were kept in the
	// previous second and went on in this one (kept at that second's rate,
	// which their spans carry).
	TracesContinued int64 `json:"traces_continued,omitempty"`
	// SpansCapped counts spans of kept traces dropped at a bound (spans per
	// trace, or the room for continued traces): those traces are partial.
	SpansCapped int64 `json:"spans_capped,omitempty"`
	// Lost is true when the writer fell behind and this second's spans
	// were discarded (the counts above say what they were).
	Lost bool `json:"lost,omitempty"`
}

// DurationNS is the span's duration in nanoseconds; 0 when the end is
// before the start (clock skew or bad data).
func (s Span) DurationNS() int64 {
	if s.EndNS < s.StartNS {
		return 0
	}
	return s.EndNS - s.StartNS
}
