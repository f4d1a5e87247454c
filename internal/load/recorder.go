package load

import (
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// lateThreshold: an arrival sent more than this after its intended time is
// late (CONTRACT.md §3).
const lateThreshold = time.Millisecond

// outcome is one request's record.
type outcome struct {
	endpoint             int
	intended, sent, done time.Duration // offsets from the run's start
	status               int
	class                Class
	in, out              int64
}

// shardData is one shard's recording for the current window.
type shardData struct {
	eps  []*EndpointStats // by endpoint; allocated on first use
	late int64
	lag  *hdr.Histogram // schedule lag, µs
}

func (d *shardData) reset() {
	for _, e := range d.eps {
		if e != nil {
			e.reset()
		}
	}
	d.late = 0
	if d.lag.TotalCount() > 0 {
		d.lag.Reset()
	}
}

// shard is a lock and the data it guards. Workers spread over shards so that
// recording does not serialise on one lock on many-core machines.
type shard struct {
	mu    sync.Mutex
	cur   *shardData
	spare *shardData
	_     [64]byte // keep shards on separate cache lines
}

// recorder collects outcomes into per-window shards.
type recorder struct {
	names  []string // endpoint names; the last is for out-of-range indexes
	shards []*shard

	inflight    atomic.Int64
	inflightMax atomic.Int64
	arrivals    atomic.Int64 // intended in the current window (sent or dropped)
	dropped     atomic.Int64
	canceled    atomic.Int64
}

// maxShards bounds recording shards: each holds two sets of histograms per
// endpoint, so memory grows with it; contention is negligible beyond a few.
const maxShards = 8

func newRecorder(names []string, shards int) *recorder {
	if shards < 1 {
		shards = 1
	}
	if shards > maxShards {
		shards = maxShards
	}
	r := &recorder{names: append(append([]string(nil), names...), "(unknown endpoint)")}
	for range shards {
		r.shards = append(r.shards, &shard{cur: r.newShardData(), spare: r.newShardData()})
	}
	return r
}

func (r *recorder) newShardData() *shardData {
	return &shardData{eps: make([]*EndpointStats, len(r.names)), lag: hdr.New(histMinUS, histMaxUS, lagDigits)}
}

func (r *recorder) endpoint(i int) int {
	if i < 0 || i >= len(r.names)-1 {
		return len(r.names) - 1
	}
	return i
}

// record adds o to shard i.
func (r *recorder) record(i int, o *outcome) {
	sh := r.shards[i%len(r.shards)]
	ep := r.endpoint(o.endpoint)
	sh.mu.Lock()
	d := sh.cur
	e := d.eps[ep]
	if e == nil {
		e = newEndpointStats(r.names[ep])
		d.eps[ep] = e
	}
	e.record(o)
	lag := o.sent - o.intended
	recordUS(d.lag, lag)
	if lag > lateThreshold {
		d.late++
	}
	sh.mu.Unlock()
}

// startRequest and endRequest track requests in flight.
func (r *recorder) startRequest() {
	n := r.inflight.Add(1)
	for {
		m := r.inflightMax.Load()
		if n <= m || r.inflightMax.CompareAndSwap(m, n) {
			return
		}
	}
}

func (r *recorder) endRequest() { r.inflight.Add(-1) }

// Window is one window of recording (a second, by default). It is valid only
// during the callback it is passed to; use Clone on its stats to keep them.
type Window struct {
	Index      int
	Start, End time.Time // wall clock; End-Start is the window's length
	Closed     bool      // a closed-model run (OfferedRPS is meaningless)
	// OfferedRPS is the schedule's mean rate over the window.
	OfferedRPS float64
	// Arrivals is the number of arrivals intended in the window, whether
	// sent or dropped.
	Arrivals     int64
	AchievedRPS  float64 // requests completed per second
	Late         int64   // sent more than 1 ms after their intended time
	Dropped      int64   // not sent: the in-flight bound was reached
	InflightMean float64 // by Little's law over service times
	InflightMax  int64
	CPUSeconds   float64       // the generator process's CPU time (user+system)
	LagP99       time.Duration // schedule lag: actual minus intended send time
	LagMax       time.Duration
	// Endpoints are indexed like the source's endpoints (entries without
	// requests have Requests == 0); All merges them.
	Endpoints []*EndpointStats
	All       *EndpointStats
	lag       *hdr.Histogram
}

func (r *recorder) newWindow() *Window {
	w := &Window{All: newEndpointStats("all"), lag: hdr.New(histMinUS, histMaxUS, lagDigits)}
	for _, n := range r.names[:len(r.names)-1] {
		w.Endpoints = append(w.Endpoints, newEndpointStats(n))
	}
	return w
}

// collect moves everything recorded since the last collect into w (its
// counts and histograms replaced), and resets the shards for the next
// window. Only one goroutine collects.
func (r *recorder) collect(w *Window) {
	for _, e := range w.Endpoints {
		e.reset()
	}
	w.All.reset()
	if w.lag.TotalCount() > 0 {
		w.lag.Reset()
	}
	w.Late = 0
	for _, sh := range r.shards {
		sh.mu.Lock()
		sh.cur, sh.spare = sh.spare, sh.cur
		sh.mu.Unlock()
		d := sh.spare
		for i, e := range d.eps {
			if e == nil || e.Requests == 0 {
				continue
			}
			if i < len(w.Endpoints) {
				w.Endpoints[i].Merge(e)
			} else {
				// Out-of-range endpoint indexes: a broken source. Count
				// them in the total rather than lose them.
				w.All.Merge(e)
			}
		}
		w.Late += d.late
		w.lag.Merge(d.lag)
		d.reset()
	}
	for _, e := range w.Endpoints {
		w.All.Merge(e)
	}
	w.Arrivals = r.arrivals.Swap(0)
	w.Dropped = r.dropped.Swap(0)
	w.InflightMax = r.inflightMax.Swap(r.inflight.Load())
	w.LagP99 = time.Duration(w.lag.ValueAtQuantile(99)) * time.Microsecond
	w.LagMax = time.Duration(w.lag.Max()) * time.Microsecond
	if w.lag.TotalCount() == 0 {
		w.LagMax = 0
	}
}
