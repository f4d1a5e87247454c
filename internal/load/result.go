package load

import (
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one Run (or several, merged) recorded, for the whole run:
// per-endpoint histograms and counts, late and dropped arrivals, and the
// generator's own cost. Results of steps of one hunt merge into the
// result of the hunt.
type Result struct {
	Start time.Time // when the first arrival was due
	End   time.Time // when the last request finished
	// Sending is how long arrivals were offered (the drain after is not
	// counted), summed over merged runs.
	Sending  time.Duration
	Schedule string // the schedule's description ("; "-joined when merged)
	Closed   bool   // a closed-model run
	Users    int    // users of a closed-model run (the largest, when merged)
	// Expected is how many arrivals the schedule expected while sending
	// (open model); Arrivals how many were due, sent or dropped.
	Expected    float64
	Arrivals    int64
	Late        int64 // sent more than 1 ms after their intended time
	Dropped     int64 // never sent: the in-flight bound was reached
	Canceled    int64 // cut short by an interruption (not counted as requests)
	CPUSeconds  float64
	Interrupted bool // ctx was cancelled: the result is partial
	Endpoints   []*EndpointStats
	lag         *hdr.Histogram
	looped      int64 // answers read by the closed model's event loops
}

func newResult(names []string) *Result {
	r := &Result{lag: hdr.New(histMinUS, histMaxUS, lagDigits)}
	for _, n := range names {
		r.Endpoints = append(r.Endpoints, newEndpointStats(n))
	}
	return r
}

// addWindow adds a window's recording.
func (r *Result) addWindow(w *Window) {
	for i, e := range w.Endpoints {
		r.Endpoints[i].Merge(e)
	}
	r.Late += w.Late
	r.Dropped += w.Dropped
	r.Arrivals += w.Arrivals
	r.lag.Merge(w.lag)
}

// Merge adds o into r: counts and histograms add up, endpoints are matched
// by name, times span both.
func (r *Result) Merge(o *Result) {
	if o == nil {
		return
	}
	if r.Start.IsZero() || (!o.Start.IsZero() && o.Start.Before(r.Start)) {
		r.Start = o.Start
	}
	if o.End.After(r.End) {
		r.End = o.End
	}
	r.Sending += o.Sending
	switch {
	case r.Schedule == "":
		r.Schedule = o.Schedule
	case o.Schedule != "" && o.Schedule != r.Schedule:
		r.Schedule += "; " + o.Schedule
	}
	r.Closed = r.Closed || o.Closed
	r.Users = max(r.Users, o.Users)
	r.Expected += o.Expected
	r.Arrivals += o.Arrivals
	r.Late += o.Late
	r.Dropped += o.Dropped
	r.Canceled += o.Canceled
	r.CPUSeconds += o.CPUSeconds
	r.Interrupted = r.Interrupted || o.Interrupted
	for _, oe := range o.Endpoints {
		found := false
		for _, e := range r.Endpoints {
			if e.Name == oe.Name {
				e.Merge(oe)
				found = true
				break
			}
		}
		if !found {
			r.Endpoints = append(r.Endpoints, oe.Clone())
		}
	}
	if r.lag == nil {
		r.lag = hdr.New(histMinUS, histMaxUS, lagDigits)
	}
	if o.lag != nil {
		r.lag.Merge(o.lag)
	}
}

// Total merges every endpoint into one EndpointStats named "all".
func (r *Result) Total() *EndpointStats {
	t := newEndpointStats("all")
	for _, e := range r.Endpoints {
		t.Merge(e)
	}
	return t
}

// Requests is the number of requests answered or failed.
func (r *Result) Requests() int64 {
	var n int64
	for _, e := range r.Endpoints {
		n += e.Requests
	}
	return n
}

// Errors is the number of transport errors and 5xx answers.
func (r *Result) Errors() int64 {
	var n int64
	for _, e := range r.Endpoints {
		n += e.Errors
	}
	return n
}

// OfferedRPS is the schedule's mean rate while sending; ok is false for a
// closed-model run, which offers no rate.
func (r *Result) OfferedRPS() (rps float64, ok bool) {
	if r.Closed || r.Sending <= 0 {
		return 0, !r.Closed
	}
	return r.Expected / r.Sending.Seconds(), true
}

// AchievedRPS is the requests completed per second of sending.
func (r *Result) AchievedRPS() float64 {
	if r.Sending <= 0 {
		return 0
	}
	return float64(r.Requests()) / r.Sending.Seconds()
}

// LagP99 and LagMax describe the schedule lag (actual minus intended send
// time) of every request.
func (r *Result) LagP99() time.Duration {
	if r.lag == nil {
		return 0
	}
	return time.Duration(r.lag.ValueAtQuantile(99)) * time.Microsecond
}

// LagMax is the largest schedule lag.
func (r *Result) LagMax() time.Duration {
	if r.lag == nil || r.lag.TotalCount() == 0 {
		return 0
	}
	return time.Duration(r.lag.Max()) * time.Microsecond
}

// Unreachable reports whether every request failed to connect at all
// (connection refused or the name did not resolve).
func (r *Result) Unreachable() bool {
	t := r.Total()
	return t.Requests > 0 && t.Classes[ClassRefused]+t.Classes[ClassDNS] == t.Requests
}
