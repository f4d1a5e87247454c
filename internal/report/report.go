// Package report holds report.json (CONTRACT.md §4, schema chokepoint.report/v1)
// and renders it for people.
package report

// Schema identifies report.json documents.
const Schema = "chokepoint.report/v1"

// Values of Capacity.LimitedBy that are not finding kinds.
const (
	LimitedNoneFound   = "none-found"
	LimitedNotReached  = "not-reached"
	LimitedUnexplained = "unexplained"
	LimitedLoadgen     = "loadgen.saturated"
)

// Severities of a finding.
const (
	SeverityCritical = "critical"
	SeverityMajor    = "major"
	SeverityMinor    = "minor"
	SeverityInfo     = "info"
)

// Report is report.json.
type Report struct {
	Schema    string       `json:"schema"`
	Status    string       `json:"status"` // complete | partial | failed
	Target    Target       `json:"target"`
	SLO       SLO          `json:"slo"`
	Capacity  Capacity     `json:"capacity"`
	Steps     []Step       `json:"steps"`
	Endpoints []Endpoint   `json:"endpoints"`
	Findings  []Finding    `json:"findings"`
	RuledOut  []RuledOut   `json:"ruled_out"`
	Coverage  []Coverage   `json:"coverage"`
	Loadgen   *LoadgenInfo `json:"loadgen,omitempty"`
	StartMS   int64        `json:"start_ms,omitempty"`
	EndMS     int64        `json:"end_ms,omitempty"`
	Notes     []string     `json:"notes,omitempty"`
}

// Target names what was hunted.
type Target struct {
	URLs     []string `json:"urls"`
	Scenario string   `json:"scenario,omitempty"`
	PID      int      `json:"pid,omitempty"`
}

// SLO is the objective the hunt held the target to.
type SLO struct {
	P99MS     float64 `json:"p99_ms"`
	ErrorRate float64 `json:"error_rate"`
}

// Capacity is the answer to "how much can it take".
type Capacity struct {
	MaxRPS          *float64 `json:"max_rps"`
	FirstFailingRPS *float64 `json:"first_failing_rps"`
	KneeRPS         *float64 `json:"knee_rps"`
	LimitedBy       string   `json:"limited_by"`
	USL             *USL     `json:"usl"`
}

// USL is a Universal Scalability Law fit over the steps.
type USL struct {
	Sigma    float64 `json:"sigma"`
	Kappa    float64 `json:"kappa"`
	Lambda   float64 `json:"lambda"`
	R2       float64 `json:"r2"`
	Reliable bool    `json:"reliable"`
	Note     string  `json:"note"`
}

// Latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90,omitempty"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max,omitempty"`
}

// Step is one offered rate held for a while.
type Step struct {
	// Index is the step's number in the run (profiles/<type>-<index>.pb.gz,
	// timeline.jsonl "step"); warm-up and back-off steps are numbered too but
	// are not listed.
	Index        int     `json:"index"`
	Phase        string  `json:"phase,omitempty"` // probe | refine
	OfferedRPS   float64 `json:"offered_rps"`
	AchievedRPS  float64 `json:"achieved_rps"`
	ErrorRate    float64 `json:"error_rate"`
	InflightMean float64 `json:"inflight_mean"`
	Latency      Latency `json:"latency_ms"`
	StartMS      int64   `json:"start_ms,omitempty"`
	EndMS        int64   `json:"end_ms,omitempty"`
	Requests     int64   `json:"requests,omitempty"`
	Late         int64   `json:"late,omitempty"`
	Dropped      int64   `json:"dropped,omitempty"`
	MetSLO       bool    `json:"met_slo"`
	LoadgenCPU   float64 `json:"loadgen_cpu,omitempty"` // generator CPU, cores
}

// Endpoint is one request name over the whole run.
type Endpoint struct {
	Name      string  `json:"name"`
	Requests  int64   `json:"requests"`
	ErrorRate float64 `json:"error_rate"`
	Latency   Latency `json:"latency_ms"`
}

// Finding is one diagnosed problem (CONTRACT.md §4, §5).
type Finding struct {
	Kind           string        `json:"kind"`
	Title          string        `json:"title"`
	Severity       string        `json:"severity"`
	Impact         float64       `json:"impact"`
	Confidence     float64       `json:"confidence"`
	Locus          Locus         `json:"locus"`
	Evidence       []Evidence    `json:"evidence"`
	Recommendation string        `json:"recommendation"`
	ExpectedGain   *ExpectedGain `json:"expected_gain,omitempty"`
}

// Locus says exactly where a finding sits; only the fields that apply are set.
type Locus struct {
	Endpoint   string   `json:"endpoint,omitempty"`
	Function   string   `json:"function,omitempty"`
	Query      string   `json:"query,omitempty"`
	Table      string   `json:"table,omitempty"`
	Columns    []string `json:"columns,omitempty"`
	Downstream string   `json:"downstream,omitempty"`
	Process    string   `json:"process,omitempty"`
	Limit      int      `json:"limit,omitempty"`
	Resource   string   `json:"resource,omitempty"`
}

// Evidence is one number behind a finding.
type Evidence struct {
	Source string  `json:"source"`
	What   string  `json:"what"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
}

// ExpectedGain estimates what the fix brings.
type ExpectedGain struct {
	Metric string  `json:"metric"` // max_rps, p99_ms, p50_ms, heap_bytes
	From   float64 `json:"from"`
	To     float64 `json:"to"`
	Method string  `json:"method"`
}

// RuledOut is a rule that ran and did not fire, with its decisive number.
type RuledOut struct {
	Kind string `json:"kind"`
	Why  string `json:"why"`
}

// Coverage says what a source saw (see probe.Coverage).
type Coverage struct {
	Source string `json:"source"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// LoadgenInfo describes the generator's own use of the machine.
type LoadgenInfo struct {
	CPUShareAtKnee float64 `json:"cpu_share_at_knee,omitempty"` // of the machine's CPU
	SharedMachine  bool    `json:"shared_machine"`
}
