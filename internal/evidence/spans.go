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
}

// DurationNS is the span's duration in nanoseconds; 0 when the end is
// before the start (clock skew or bad data).
func (s Span) DurationNS() int64 {
	if s.EndNS < s.StartNS {
		return 0
	}
	return s.EndNS - s.StartNS
}
