package evidence

// WindowRecord is one window (a second) of load in TimelineStream
// (timeline.jsonl), as the load engine recorded it. Latency is measured from
// each request's intended send time, service time from its actual send;
// both in milliseconds. Requests are counted in the window they completed
// in; arrivals in the window they were due in. The full latency
// distributions are in latency.hlog (one histogram per endpoint per window).
type WindowRecord struct {
	T       int64 `json:"t"` // the window's end, Unix ms
	StartMS int64 `json:"start_ms"`
	EndMS   int64 `json:"end_ms"`
	Step    int   `json:"step"`   // the hunt's step (0 for a plain load run)
	Window  int   `json:"window"` // index of the window within its step
	// OfferedRPS is the schedule's mean rate over the window; null for a
	// closed-model run (which offers no rate).
	OfferedRPS  *float64 `json:"offered_rps"`
	AchievedRPS float64  `json:"achieved_rps"`
	Arrivals    int64    `json:"arrivals"` // due in the window, sent or dropped
	Requests    int64    `json:"requests"` // completed in the window
	Errors      int64    `json:"errors"`   // transport errors + status >= 500
	Late        int64    `json:"late"`     // sent more than 1 ms after their intended time
	Dropped     int64    `json:"dropped"`  // not sent: the in-flight bound was reached

	LatencyMS WindowLatency `json:"latency_ms"`
	ServiceMS WindowLatency `json:"service_time_ms"`

	InflightMean float64 `json:"inflight_mean"` // by Little's law over service times
	InflightMax  int64   `json:"inflight_max"`
	// LoadgenCPUSeconds is the generator process's CPU time (user+system)
	// in the window; when the generator and the target share a process
	// (tests), it includes the target's.
	LoadgenCPUSeconds float64 `json:"loadgen_cpu_s"`
	LagP99MS          float64 `json:"lag_p99_ms"` // schedule lag: actual minus intended send
	LagMaxMS          float64 `json:"lag_max_ms"`

	StatusCodes   map[string]int64 `json:"status_codes,omitempty"`
	ErrorsByClass map[string]int64 `json:"errors_by_class,omitempty"` // timeout, refused, reset, dns, tls, other, 4xx, 5xx
	Endpoints     []WindowEndpoint `json:"endpoints"`
}

// WindowLatency holds percentiles in milliseconds (0 without requests).
type WindowLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// WindowEndpoint is one endpoint's part of a window (endpoints without
// requests in the window are left out).
type WindowEndpoint struct {
	Name          string           `json:"name"`
	Requests      int64            `json:"requests"`
	Errors        int64            `json:"errors"`
	LatencyMS     WindowLatency    `json:"latency_ms"`
	ServiceMS     WindowLatency    `json:"service_time_ms"`
	StatusCodes   map[string]int64 `json:"status_codes,omitempty"`
	ErrorsByClass map[string]int64 `json:"errors_by_class,omitempty"`
	BytesIn       int64            `json:"bytes_in"`
	BytesOut      int64            `json:"bytes_out"`
}
