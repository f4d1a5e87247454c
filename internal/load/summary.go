package load

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// SummaryFile is the run directory's copy of the Summary.
const SummaryFile = "load.json"

// SummarySchema identifies `load --format json` documents and load.json.
const SummarySchema = "chokepoint.load/v1"

// Summary is the document `chokepoint load --format json` prints and writes
// as load.json (CONTRACT.md §3, schemas/load.v1.json). Latency is measured
// from the intended send time, service time from the actual send; both in
// milliseconds.
type Summary struct {
	Schema      string   `json:"schema"`
	Status      string   `json:"status"` // complete | partial
	Model       string   `json:"model"`  // open | closed
	Schedule    string   `json:"schedule"`
	Concurrency int      `json:"concurrency,omitempty"` // closed model: users
	StartMS     int64    `json:"start_ms"`
	EndMS       int64    `json:"end_ms"`
	Requests    int64    `json:"requests"`
	DurationS   float64  `json:"duration_s"`
	OfferedRPS  *float64 `json:"offered_rps"` // null for the closed model
	AchievedRPS float64  `json:"achieved_rps"`
	Late        int64    `json:"late"`
	Dropped     int64    `json:"dropped"`
	Errors      int64    `json:"errors"`
	ErrorRate   float64  `json:"error_rate"`
	// StatusCodes counts answers by status code; ErrorsByClass counts
	// requests by class (timeout, refused, reset, dns, tls, other, 4xx, 5xx).
	StatusCodes   map[string]int64  `json:"status_codes"`
	ErrorsByClass map[string]int64  `json:"errors_by_class"`
	LatencyMS     Percentiles       `json:"latency_ms"`
	ServiceTimeMS Percentiles       `json:"service_time_ms"`
	BytesIn       int64             `json:"bytes_in"`
	BytesOut      int64             `json:"bytes_out"`
	Endpoints     []SummaryEndpoint `json:"endpoints"`
	Loadgen       SummaryLoadgen    `json:"loadgen"`
	Thresholds    []Threshold       `json:"thresholds,omitempty"`
	RunDir        string            `json:"run_dir,omitempty"`
}

// SummaryEndpoint is one endpoint's part of a Summary.
type SummaryEndpoint struct {
	Name          string           `json:"name"`
	Requests      int64            `json:"requests"`
	Errors        int64            `json:"errors"`
	LatencyMS     Percentiles      `json:"latency_ms"`
	ServiceTimeMS Percentiles      `json:"service_time_ms"`
	StatusCodes   map[string]int64 `json:"status_codes"`
	ErrorsByClass map[string]int64 `json:"errors_by_class"`
}

// SummaryLoadgen is what the generator itself cost and how well it kept
// to the schedule.
type SummaryLoadgen struct {
	CPUSeconds       float64 `json:"cpu_s"`
	CPUUSPerRequest  float64 `json:"cpu_us_per_request"`
	LagP99MS         float64 `json:"lag_p99_ms"`
	LagMaxMS         float64 `json:"lag_max_ms"`
	Canceled         int64   `json:"canceled"` // cut off by an interruption, not counted as requests
	MaxInflight      int     `json:"max_inflight"`
	InflightBoundHit bool    `json:"inflight_bound_hit"`
}

// Threshold is one objective checked at the end of a run.
type Threshold struct {
	Name  string  `json:"name"` // "p99" (limit and value in ms) or "errors" (rates, 0..1)
	Limit float64 `json:"limit"`
	Value float64 `json:"value"`
	OK    bool    `json:"ok"`
}

// Summary summarises the result; status is "complete" or "partial".
func (r *Result) Summary(maxInflight int) Summary {
	t := r.Total()
	s := Summary{
		Schema:        SummarySchema,
		Status:        "complete",
		Model:         "open",
		Schedule:      r.Schedule,
		StartMS:       r.Start.UnixMilli(),
		EndMS:         r.End.UnixMilli(),
		Requests:      t.Requests,
		DurationS:     roundTo(r.Sending.Seconds(), 3),
		AchievedRPS:   roundTo(r.AchievedRPS(), 3),
		Late:          r.Late,
		Dropped:       r.Dropped,
		Errors:        t.Errors,
		ErrorRate:     roundTo(t.ErrorRate(), 6),
		StatusCodes:   t.StatusCodes(),
		ErrorsByClass: t.ErrorsByClass(),
		LatencyMS:     percentilesMS(t.Latency),
		ServiceTimeMS: percentilesMS(t.Service),
		BytesIn:       t.BytesIn,
		BytesOut:      t.BytesOut,
		Endpoints:     []SummaryEndpoint{},
		Loadgen: SummaryLoadgen{
			CPUSeconds:       roundTo(r.CPUSeconds, 4),
			LagP99MS:         roundTo(r.LagP99().Seconds()*1000, 3),
			LagMaxMS:         roundTo(r.LagMax().Seconds()*1000, 3),
			Canceled:         r.Canceled,
			MaxInflight:      maxInflight,
			InflightBoundHit: r.Dropped > 0,
		},
	}
	if r.Interrupted {
		s.Status = "partial"
	}
	if t.Requests > 0 {
		s.Loadgen.CPUUSPerRequest = roundTo(r.CPUSeconds*1e6/float64(t.Requests), 2)
	}
	if off, ok := r.OfferedRPS(); ok {
		off = roundTo(off, 3)
		s.OfferedRPS = &off
	} else {
		s.Model = "closed"
		s.Concurrency = r.Users
	}
	for _, e := range r.Endpoints {
		if e.Requests == 0 {
			continue
		}
		s.Endpoints = append(s.Endpoints, SummaryEndpoint{
			Name:          e.Name,
			Requests:      e.Requests,
			Errors:        e.Errors,
			LatencyMS:     percentilesMS(e.Latency),
			ServiceTimeMS: percentilesMS(e.Service),
			StatusCodes:   e.StatusCodes(),
			ErrorsByClass: e.ErrorsByClass(),
		})
	}
	return s
}

// CheckThresholds adds the objectives to s: p99 latency at most p99 (when
// > 0) and an error rate at most errorRate (when >= 0). It reports whether
// all were met.
func (s *Summary) CheckThresholds(p99 time.Duration, errorRate float64) bool {
	ok := true
	if p99 > 0 {
		limit := float64(p99) / float64(time.Millisecond)
		t := Threshold{Name: "p99", Limit: limit, Value: s.LatencyMS.P99, OK: s.LatencyMS.P99 <= limit}
		s.Thresholds = append(s.Thresholds, t)
		ok = ok && t.OK
	}
	if errorRate >= 0 {
		t := Threshold{Name: "errors", Limit: errorRate, Value: s.ErrorRate, OK: s.ErrorRate <= errorRate}
		s.Thresholds = append(s.Thresholds, t)
		ok = ok && t.OK
	}
	return ok
}

// WriteText writes s for people: the totals, then a table of endpoints.
func WriteText(w io.Writer, s *Summary) error {
	var b strings.Builder
	model := s.Schedule
	fmt.Fprintf(&b, "chokepoint load: %s for %.1fs", model, s.DurationS)
	if s.Status != "complete" {
		fmt.Fprintf(&b, " (%s: interrupted)", s.Status)
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	offered := "-"
	if s.OfferedRPS != nil {
		offered = fmt.Sprintf("%.1f/s", *s.OfferedRPS)
	}
	fmt.Fprintf(tw, "  requests\t%d\toffered %s, achieved %.1f/s\n", s.Requests, offered, s.AchievedRPS)
	fmt.Fprintf(tw, "  errors\t%d (%.2f%%)\t%s\n", s.Errors, s.ErrorRate*100, fmtCounts(s.ErrorsByClass))
	fmt.Fprintf(tw, "  late / dropped\t%d / %d\tsent >1ms after intended / not sent (in-flight bound %d)\n", s.Late, s.Dropped, s.Loadgen.MaxInflight)
	fmt.Fprintf(tw, "  status codes\t%s\t\n", fmtCounts(s.StatusCodes))
	fmt.Fprintf(tw, "  latency\t%s\tfrom the intended send time\n", fmtPct(s.LatencyMS))
	fmt.Fprintf(tw, "  service time\t%s\tfrom the actual send\n", fmtPct(s.ServiceTimeMS))
	fmt.Fprintf(tw, "  generator\tcpu %.2fs (%.1f µs/request)\tschedule lag p99 %.2fms, max %.2fms\n",
		s.Loadgen.CPUSeconds, s.Loadgen.CPUUSPerRequest, s.Loadgen.LagP99MS, s.Loadgen.LagMaxMS)
	tw.Flush()
	if len(s.Endpoints) > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "  endpoint\trequests\terrors\tp50 ms\tp90 ms\tp99 ms\tmax ms\t\n")
		for _, e := range s.Endpoints {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t\n", e.Name, e.Requests, e.Errors,
				e.LatencyMS.P50, e.LatencyMS.P90, e.LatencyMS.P99, e.LatencyMS.Max)
		}
		tw.Flush()
	}
	if len(s.Thresholds) > 0 {
		b.WriteString("\n")
		for _, t := range s.Thresholds {
			verdict := "ok"
			if !t.OK {
				verdict = "MISSED"
			}
			switch t.Name {
			case "p99":
				fmt.Fprintf(&b, "  threshold p99 <= %gms: %.2fms %s\n", t.Limit, t.Value, verdict)
			default:
				fmt.Fprintf(&b, "  threshold errors <= %g%%: %.2f%% %s\n", t.Limit*100, t.Value*100, verdict)
			}
		}
	}
	if s.RunDir != "" {
		fmt.Fprintf(&b, "\n  run directory: %s\n", s.RunDir)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtPct(p Percentiles) string {
	return fmt.Sprintf("p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms", p.P50, p.P90, p.P99, p.Max)
}

func fmtCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
