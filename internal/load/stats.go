package load

import (
	"math"
	"sort"
	"strconv"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry (the spec): values in microseconds from 1 µs to
// 60 s at 3 significant digits (≈139 KB each). Longer values are recorded
// as 60 s.
const (
	histMinUS  = 1
	histMaxUS  = 60_000_000
	histDigits = 3
	// lagDigits: the schedule-lag histogram needs only its p99 and max
	// roughly, so 2 digits (≈16 KB) do.
	lagDigits = 2
)

func newHist() *hdr.Histogram { return hdr.New(histMinUS, histMaxUS, histDigits) }

// recordUS records d in microseconds, clamped to the histogram's range.
func recordUS(h *hdr.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 0 {
		us = 0
	} else if us > histMaxUS {
		us = histMaxUS
	}
	h.RecordValue(us) // in range by construction
}

// maxStatus bounds the status codes counted one by one; anything else
// (a status of 600 or more) is counted under code 0.
const maxStatus = 600

// EndpointStats is what was recorded for one endpoint (or all of them) over
// a window or a run. Latency is measured from each request's intended send
// time, Service from its actual send; both in microseconds.
type EndpointStats struct {
	Name     string
	Requests int64 // answered or failed (not dropped, not cancelled)
	Errors   int64 // transport errors + status >= 500
	// Classes counts requests by Class (ClassNone: answered 1xx–3xx).
	Classes  [NumClasses]int64
	Status   [maxStatus]int64 // by status code; [0] is "no status" and codes >= 600
	BytesIn  int64
	BytesOut int64
	// ServiceSum is the total service time, for Little's law.
	ServiceSum time.Duration
	Latency    *hdr.Histogram
	Service    *hdr.Histogram
}

func newEndpointStats(name string) *EndpointStats {
	return &EndpointStats{Name: name, Latency: newHist(), Service: newHist()}
}

// record adds one request's outcome.
func (s *EndpointStats) record(o *outcome) {
	s.Requests++
	c := o.class
	s.Classes[c]++
	if c.IsError() {
		s.Errors++
	}
	if o.status > 0 && o.status < maxStatus {
		s.Status[o.status]++
	} else if o.status != 0 {
		s.Status[0]++
	}
	s.BytesIn += o.in
	s.BytesOut += o.out
	svc := o.done - o.sent
	s.ServiceSum += svc
	recordUS(s.Latency, o.done-o.intended)
	recordUS(s.Service, svc)
}

// Merge adds o's counts and histograms into s.
func (s *EndpointStats) Merge(o *EndpointStats) {
	if o == nil || o.Requests == 0 {
		return
	}
	s.Requests += o.Requests
	s.Errors += o.Errors
	for i, n := range o.Classes {
		s.Classes[i] += n
	}
	for i, n := range o.Status {
		s.Status[i] += n
	}
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.ServiceSum += o.ServiceSum
	s.Latency.Merge(o.Latency)
	s.Service.Merge(o.Service)
}

// Clone returns an independent copy of s.
func (s *EndpointStats) Clone() *EndpointStats {
	c := *s
	c.Latency = s.Latency.Clone()
	c.Service = s.Service.Clone()
	return &c
}

func (s *EndpointStats) reset() {
	if s.Requests == 0 {
		return // nothing recorded: the histograms are empty
	}
	name, lat, svc := s.Name, s.Latency, s.Service
	*s = EndpointStats{Name: name, Latency: lat, Service: svc}
	lat.Reset()
	svc.Reset()
}

// ErrorRate is Errors/Requests (0 without requests).
func (s *EndpointStats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// StatusCodes returns the answered requests by status code, keyed as in
// JSON ("200"); codes of 600 and above are counted under "other".
func (s *EndpointStats) StatusCodes() map[string]int64 {
	m := map[string]int64{}
	for code, n := range s.Status {
		if n == 0 {
			continue
		}
		if code == 0 {
			m["other"] += n
			continue
		}
		m[strconv.Itoa(code)] = n
	}
	return m
}

// ErrorsByClass returns the requests by class name, for every class other
// than ClassNone with a non-zero count (4xx included: they are counted,
// though not as errors).
func (s *EndpointStats) ErrorsByClass() map[string]int64 {
	m := map[string]int64{}
	for c, n := range s.Classes {
		if n > 0 && Class(c) != ClassNone {
			m[Class(c).String()] = n
		}
	}
	return m
}

// Percentiles in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentilesMS reads a microsecond histogram's percentiles in milliseconds.
func percentilesMS(h *hdr.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: usToMS(h.ValueAtQuantile(50)),
		P90: usToMS(h.ValueAtQuantile(90)),
		P99: usToMS(h.ValueAtQuantile(99)),
		Max: usToMS(h.Max()),
	}
}

func usToMS(us int64) float64 { return roundTo(float64(us)/1000, 3) }

func roundTo(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// sortedKeys returns m's keys in order (for stable text output).
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
