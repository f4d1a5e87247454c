package evidence

// MetricsRecord is one scrape of the target's Prometheus / OpenMetrics
// endpoint in MetricsStream (metrics.jsonl): the kept samples (Go runtime,
// process, connection pools, HTTP server and names asked for), each with its
// per-second rate when it is a counter.
type MetricsRecord struct {
	T          int64          `json:"t"`           // when the scrape started
	DurationMS float64        `json:"duration_ms"` // how long it took
	Samples    []MetricSample `json:"samples"`
	Dropped    int            `json:"dropped,omitempty"` // samples not kept: NaN/Inf values, or over the per-scrape bound
	Families   int            `json:"families"`          // families the target exposed
	Error      string         `json:"error,omitempty"`   // the scrape failed; Samples is empty
	Format     string         `json:"format,omitempty"`  // "text" or "openmetrics"
}

// Metric types as recorded (the family's type; histogram and summary
// samples are flattened to name_bucket/_sum/_count and quantile series).
const (
	MetricCounter   = "counter"
	MetricGauge     = "gauge"
	MetricHistogram = "histogram"
	MetricSummary   = "summary"
	MetricUntyped   = "untyped"
)

// MetricSample is one series' value in one scrape.
type MetricSample struct {
	Name   string            `json:"name"` // series name: family name, or family_bucket / _sum / _count
	Labels map[string]string `json:"labels,omitempty"`
	Type   string            `json:"type"` // MetricCounter, ...
	Value  float64           `json:"value"`
	// Rate is the per-second increase since the previous scrape, for
	// cumulative series (counters, histogram and summary _sum/_count/_bucket);
	// absent on the first scrape of a series. A counter that went down was
	// reset: its rate is then value / interval, as Prometheus counts it.
	Rate *float64 `json:"rate,omitempty"`
}

// Label returns the value of a label ("" when absent).
func (s MetricSample) Label(name string) string { return s.Labels[name] }
