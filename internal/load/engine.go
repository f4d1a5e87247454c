// Package load offers HTTP load on a schedule and records what came back:
// open-model arrivals at intended times (constant, ramp, steps, optionally
// Poisson) or a closed model, latency measured from the intended send time
// (so a stalled target cannot hide: no coordinated omission), per-endpoint
// HDR histograms per window and per run.
package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chokepoint/chokepoint/internal/scenario"
	"github.com/chokepoint/chokepoint/internal/version"
)

// Defaults for a zero Config.
const (
	// DefaultMaxInflight bounds requests in flight. Each is a connection
	// for HTTP/1.1; 10,000 stays well inside Linux's ~28k ephemeral ports
	// per target while covering 10 s of stall at 1,000 req/s.
	DefaultMaxInflight = 10_000
	// DefaultTimeout is the per-request timeout (vegeta's and hey's
	// default is 30 s and 20 s; k6's 60 s).
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBodyBytes bounds the response body read per request; a
	// longer one is cut and its connection closed.
	DefaultMaxBodyBytes = 64 << 20
	// DefaultWindow is a window's length (CONTRACT.md: a window is one
	// second of recording).
	DefaultWindow = time.Second
	// DefaultPacingResolution: see Config.PacingResolution and
	// docs/performance.md for the measurement behind it.
	DefaultPacingResolution = time.Millisecond
	// DefaultDrainGrace is how long an interrupted run waits for requests
	// in flight before cutting them off (the issue: "wait briefly").
	DefaultDrainGrace = 2 * time.Second
)

// minKeepWorkers is how many workers (and idle connections per origin) an
// open-model run keeps however quiet it gets; beyond it keeps twice the
// last window's peak of requests in flight, so that memory follows the load
// back down after a burst or a stall (each connection holds ~20 KB of
// buffers, each worker a goroutine) while a steady load never waits for a
// dial.
const minKeepWorkers = 16

// exitJob, sent to a worker instead of an arrival's time, makes it leave.
const exitJob = time.Duration(-1)

// foldWait is how long the window rotator waits, at the last window
// boundary, for the run to finish, so that the drain of requests in flight
// lands in the last window instead of a sliver of its own.
const foldWait = 250 * time.Millisecond

// Config configures an Engine. Zero values mean the defaults above.
type Config struct {
	Source      *scenario.Scenario // required: what to request
	MaxInflight int                // requests pending (queued or sent) at most; more arrivals are dropped
	// Connections bounds the requests sent at once (HTTP/1.1 connections);
	// arrivals beyond wait in the generator, up to MaxInflight, and leave
	// late. 0 means MaxInflight (no waiting). Open model only.
	Connections  int
	Timeout      time.Duration // per request, from dial to the last body byte
	HTTP2        bool          // HTTP/2: ALPN h2 for https, h2c (prior knowledge) for http
	NetHTTP      bool          // send HTTP/1.1 through net/http instead of the built-in client (slower; for comparison)
	Insecure     bool          // skip TLS certificate verification
	TLS          *tls.Config   // base TLS settings (e.g. RootCAs); nil means the system's
	MaxBodyBytes int64         // response body read per request at most
	Window       time.Duration // length of a window
	DrainGrace   time.Duration // wait for requests in flight when interrupted
	UserAgent    string        // "" means "chokepoint/<version>"
	// PacingResolution is the shortest interval between two wake-ups of the
	// pacer, which sleeps on a precise timer (Linux timerfd): arrivals due
	// closer together are sent together, up to this much late. Smaller is
	// more punctual and costs more CPU at high rates; 0 means
	// DefaultPacingResolution; negative means Go's timers only (which wake
	// an idle process up to ~1 ms late).
	PacingResolution time.Duration
	Seed             uint64 // seeds request generators and Poisson arrivals
}

// Validate reports the first field that cannot be used, by name.
func (c *Config) Validate() error {
	switch {
	case c.Source == nil:
		return errors.New("load config: Source: required")
	case len(c.Source.Endpoints()) == 0:
		return errors.New("load config: Source: no endpoints")
	case c.Connections < 0:
		return fmt.Errorf("load config: Connections %d: must not be negative", c.Connections)
	case c.MaxInflight < 0:
		return fmt.Errorf("load config: MaxInflight %d: must not be negative", c.MaxInflight)
	case c.Timeout < 0:
		return fmt.Errorf("load config: Timeout %s: must not be negative", c.Timeout)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("load config: MaxBodyBytes %d: must not be negative", c.MaxBodyBytes)
	case c.Window < 0 || (c.Window > 0 && c.Window < 10*time.Millisecond):
		return fmt.Errorf("load config: Window %s: want 0 (default) or at least 10ms", c.Window)
	case c.DrainGrace < 0:
		return fmt.Errorf("load config: DrainGrace %s: must not be negative", c.DrainGrace)
	case c.HTTP2 && c.NetHTTP:
		return errors.New("load config: NetHTTP: applies to HTTP/1.1 only, not with HTTP2")
	}
	for _, u := range c.Source.URLs() {
		if _, _, _, _, err := splitURL(u); err != nil {
			return fmt.Errorf("load config: Source: %w", err)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.Connections == 0 || c.Connections > c.MaxInflight {
		c.Connections = c.MaxInflight
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.DrainGrace == 0 {
		c.DrainGrace = DefaultDrainGrace
	}
	if c.PacingResolution == 0 {
		c.PacingResolution = DefaultPacingResolution
	}
	if c.UserAgent == "" {
		c.UserAgent = "chokepoint/" + version.String()
	}
	return c
}

// Bound ends a run: after Duration of sending, or once MaxRequests
// arrivals were due, whichever comes first.
type Bound struct {
	Duration    time.Duration // required
	MaxRequests int64         // 0 means no limit
}

// Validate reports a bound that cannot end a run.
func (b Bound) Validate() error {
	switch {
	case b.Duration <= 0:
		return fmt.Errorf("duration %s: want > 0", b.Duration)
	case b.MaxRequests < 0:
		return fmt.Errorf("max requests %d: must not be negative", b.MaxRequests)
	}
	return nil
}

// transport sends requests; client is one worker's handle on it.
type transport interface {
	newClient() client
	abort()     // fail every request in flight, and later ones, now
	reset()     // after abort: accept requests again
	closeIdle() // close idle connections
}

type client interface {
	do(r *scenario.Request) (status int, in, out int64, err error)
	// rxEnd is the kernel's receive timestamp (Unix nanoseconds) of the
	// last byte of the answer do read last, or 0 when unknown.
	rxEnd() int64
}

var (
	_ transport = (*h1Transport)(nil)
	_ transport = (*stdTransport)(nil)
)

// Engine sends load. Its connections outlive each Run, so a hunt that runs
// one step after another keeps them warm. Run calls must not overlap.
type Engine struct {
	cfg    Config
	tr     transport
	shards int

	running atomic.Bool // a Run is in progress

	mu     sync.Mutex
	runs   uint64
	closed bool
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("load engine closed")

// ErrBusy is returned by a Run that overlaps another.
var ErrBusy = errors.New("load engine busy: one Run at a time")

// NewEngine returns an engine for cfg.
func NewEngine(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
	}
	if cfg.Insecure {
		tc.InsecureSkipVerify = true
	}
	e := &Engine{cfg: cfg, shards: min(runtime.GOMAXPROCS(0), maxShards)}
	switch {
	case cfg.HTTP2 || cfg.NetHTTP:
		e.tr = newStdTransport(&cfg, tc, cfg.HTTP2)
	default:
		h1 := newH1Transport(&cfg, tc)
		e.tr = h1
		// An engine dropped without Close must not keep its poller's
		// goroutine and connections.
		runtime.AddCleanup(e, func(t *h1Transport) { t.closePoller() }, h1)
	}
	return e, nil
}

// Close closes the engine's connections.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.tr.abort()
	e.tr.closeIdle()
	if h1, ok := e.tr.(*h1Transport); ok {
		h1.closePoller()
	}
}

// Run offers load on schedule s until bound b, calling onWindow (when not
// nil) with each window as it closes, from one goroutine; a Window is valid
// only during the call. Run returns the whole run's Result.
//
// When ctx is cancelled, Run stops sending, waits up to DrainGrace for the
// requests in flight, cuts off the rest (counted as Canceled), delivers the
// last window and returns the partial Result with Interrupted set and a nil
// error. Errors are for a schedule or bound that cannot run.
func (e *Engine) Run(ctx context.Context, s Schedule, b Bound, onWindow func(*Window)) (*Result, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if !e.running.CompareAndSwap(false, true) {
		return nil, ErrBusy
	}
	defer e.running.Store(false)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.runs++
	seed := e.cfg.Seed ^ e.runs<<40
	e.mu.Unlock()
	e.tr.reset()

	rs := &runState{
		e:        e,
		sched:    s,
		bound:    b,
		seed:     seed,
		rec:      newRecorder(e.cfg.Source.Endpoints(), e.shards),
		onWindow: onWindow,
		finished: make(chan struct{}),
	}
	return rs.run(ctx), nil
}

// runState is one Run.
type runState struct {
	e        *Engine
	sched    Schedule
	bound    Bound
	seed     uint64
	rec      *recorder
	onWindow func(*Window)

	start    time.Time
	cpu0     time.Duration
	sendEnd  atomic.Int64 // offset when sending stopped; 0 while sending
	endOff   time.Duration
	finished chan struct{} // closed when every request is done
	aborted  atomic.Bool
	pacer    *pacer // open model only
	// trim, when set, lets surplus workers and idle connections go after
	// a window whose peak of requests in flight was peak (open model).
	trim    atomic.Pointer[func(peak int64)]
	closed  *closedState // closed model only
	workers sync.WaitGroup
	result  *Result
}

func (rs *runState) since() time.Duration { return time.Since(rs.start) }

func (rs *runState) run(ctx context.Context) *Result {
	e := rs.e
	names := e.cfg.Source.Endpoints()
	rs.result = newResult(names)
	rs.result.Schedule = rs.sched.String()
	rs.result.Closed = rs.sched.IsClosed()
	rs.result.Users = rs.sched.Users()
	rs.cpu0 = processCPU()
	rs.start = time.Now()

	rotated := make(chan struct{})
	go func() {
		defer close(rotated)
		rs.rotate()
	}()

	var sent time.Duration
	if rs.sched.IsClosed() {
		sent = rs.runClosed(ctx)
	} else {
		sent = rs.runOpen(ctx)
	}
	rs.sendEnd.Store(int64(max(sent, 1)))
	rs.drain(ctx)
	if h1, ok := e.tr.(*h1Transport); ok {
		h1.looped.Store(false) // the closed model's event loops are done
	}
	if rs.closed != nil {
		rs.result.looped = rs.closed.looped.Load()
	}
	rs.endOff = rs.since()
	close(rs.finished)
	<-rotated

	r := rs.result
	r.Start = rs.start
	r.End = rs.start.Add(rs.endOff)
	r.Sending = sent
	if !rs.sched.IsClosed() {
		r.Expected = rs.sched.Expected(0, sent)
	}
	r.Canceled = rs.rec.canceled.Load()
	r.CPUSeconds = (processCPU() - rs.cpu0).Seconds()
	r.Interrupted = ctx.Err() != nil
	return r
}

// runOpen paces arrivals and hands each to a worker: an idle one, else a
// new one while there are fewer than Connections, else the queue while
// fewer than MaxInflight are pending; beyond, the arrival is dropped. It
// returns how long it sent.
func (rs *runState) runOpen(ctx context.Context) time.Duration {
	clk := newRealClock(ctx, rs.start, rs.e.cfg.PacingResolution)
	defer clk.close()
	cfg := &rs.e.cfg
	maxPending := int64(cfg.MaxInflight)
	maxWorkers := min(cfg.Connections, cfg.MaxInflight)
	// Never full: at most maxPending arrivals are pending at once.
	jobs := make(chan time.Duration, maxPending)
	// idle counts workers waiting for a job that no dispatch has claimed
	// yet; only the dispatcher takes from it, so a claim is never lost.
	var idle atomic.Int64
	workers := 0 // running now
	nextID := 0  // ids (and generator seeds) are never reused, even after trim
	rec := rs.rec
	dispatch := func(intended time.Duration) {
		rec.arrivals.Add(1)
		if rec.inflight.Load() >= maxPending {
			rec.dropped.Add(1)
			return
		}
		rec.startRequest()
		if n := idle.Load(); n > 0 && idle.CompareAndSwap(n, n-1) {
			jobs <- intended
			return
		}
		if workers < maxWorkers {
			w := rs.newWorker(nextID)
			nextID++
			workers++
			rs.workers.Add(1)
			go func() {
				defer rs.workers.Done()
				w.one(intended)
				for {
					// Take a queued job first; only then wait, counted idle.
					select {
					case t, ok := <-jobs:
						if !ok || t == exitJob {
							return
						}
						w.one(t)
						continue
					default:
					}
					idle.Add(1)
					t, ok := <-jobs
					if !ok || t == exitJob {
						return
					}
					w.one(t)
				}
			}()
			return
		}
		jobs <- intended // queued: it will be late
	}
	rs.pacer = newPacer(rs.sched.arrivals(rs.seed), rs.bound.Duration, rs.bound.MaxRequests, dispatch)
	p := rs.pacer
	trim := func(peak int64) {
		keep := max(2*peak, minKeepWorkers)
		p.mu.Lock() // dispatch runs under it: workers is ours now
		if !p.done {
			for int64(workers) > keep {
				n := idle.Load()
				if n == 0 || !idle.CompareAndSwap(n, n-1) {
					break
				}
				jobs <- exitJob // to a worker counted idle: it leaves
				workers--
			}
		}
		p.mu.Unlock()
		if h1, ok := rs.e.tr.(*h1Transport); ok {
			h1.trimIdle(int(keep))
		}
	}
	rs.trim.Store(&trim)
	defer rs.trim.Store(nil)
	if h1, ok := rs.e.tr.(*h1Transport); ok && cfg.Connections == cfg.MaxInflight && cfg.PacingResolution > 0 {
		// Reads may wait for the pacer's wake-up only while connections
		// are not capped: a capped connection held longer would delay
		// later arrivals.
		rs.pacer.gate = newReadGate(rs.start, cfg.PacingResolution)
		h1.gate.Store(rs.pacer.gate)
		defer h1.gate.Store(nil)
	}
	rs.pacer.run(ctx, clk)
	close(jobs) // the pacer is done: no dispatch will send again
	return min(rs.since(), rs.bound.Duration)
}

// runClosed runs the closed model: each user sends its next request when
// the previous one is answered. It returns how long it sent.
func (rs *runState) runClosed(ctx context.Context) time.Duration {
	cs := &closedState{rs: rs, maxReq: rs.bound.MaxRequests}
	rs.closed = cs
	loops := rs.newClosedLoops(cs)
	all := make(chan struct{})
	for i := range rs.sched.Users() {
		w := rs.newWorker(i)
		cs.users.Add(1)
		rs.workers.Add(1)
		go func() {
			defer rs.workers.Done()
			if !cs.user(w, loops) {
				cs.users.Done()
			}
		}()
	}
	go func() {
		cs.users.Wait()
		close(all)
	}()
	timer := time.NewTimer(rs.bound.Duration - rs.since())
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	case <-all:
	}
	cs.stop.Store(true)
	for _, l := range loops {
		l.wake()
	}
	return min(rs.since(), rs.bound.Duration)
}

// closedState is what a closed-model run's users share.
type closedState struct {
	rs      *runState
	maxReq  int64
	stop    atomic.Bool
	started atomic.Int64
	users   sync.WaitGroup // one per user until it has ended
	looped  atomic.Int64   // answers read by event loops (tests)
}

// next reports whether a user may send another request, and counts it.
func (cs *closedState) next() bool {
	if cs.stop.Load() {
		return false
	}
	if cs.maxReq > 0 && cs.started.Add(1) > cs.maxReq {
		return false
	}
	cs.rs.rec.arrivals.Add(1)
	cs.rs.rec.startRequest()
	return true
}

// user runs one closed-model user on its own goroutine until the run stops
// or, when there are event loops, until it holds a connection a loop can
// drive (see closedLoop): then it hands itself over and reports true (the
// loop ends the user: cs.users), else false.
func (cs *closedState) user(w *worker, loops []*closedLoop) bool {
	for cs.next() {
		w.one(cs.rs.since())
		if len(loops) > 0 && loops[w.id%len(loops)].join(w) {
			return true
		}
	}
	return false
}

// drain waits for the requests in flight: for as long as they take (each
// is bounded by the timeout) unless ctx is done, then DrainGrace at most.
func (rs *runState) drain(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		rs.workers.Wait()
		close(done)
	}()
	safety := time.NewTimer(rs.e.cfg.Timeout + rs.e.cfg.DrainGrace)
	defer safety.Stop()
	select {
	case <-done:
		return
	case <-ctx.Done():
	case <-safety.C:
	}
	grace := time.NewTimer(rs.e.cfg.DrainGrace)
	defer grace.Stop()
	select {
	case <-done:
		return
	case <-grace.C:
	}
	rs.aborted.Store(true)
	rs.e.tr.abort()
	<-done
}

// worker sends one request at a time.
type worker struct {
	rs  *runState
	id  int
	gen *scenario.Generator
	cl  client
	req scenario.Request
}

func (rs *runState) newWorker(id int) *worker {
	seed := rs.seed ^ uint64(id+1)*0x9e3779b97f4a7c15
	return &worker{rs: rs, id: id, gen: rs.e.cfg.Source.NewGenerator(seed), cl: rs.e.tr.newClient()}
}

// one sends the next request for an arrival intended at offset intended.
func (w *worker) one(intended time.Duration) {
	w.gen.Next(&w.req)
	w.send(intended)
}

// send sends w.req, generated for an arrival intended at offset intended.
func (w *worker) send(intended time.Duration) {
	sent := w.rs.since()
	status, in, out, err := w.cl.do(&w.req)
	w.finish(intended, sent, status, in, out, err, w.cl.rxEnd())
}

// finish records the outcome of w.req, intended at offset intended and sent
// at offset sent; rx is the kernel's receive time of the answer's end
// (Unix nanoseconds), 0 when unknown.
func (w *worker) finish(intended, sent time.Duration, status int, in, out int64, err error, rx int64) {
	rs := w.rs
	rec := rs.rec
	now := time.Now()
	read := now.Sub(rs.start)
	done := read
	if rx > 0 {
		// The answer was complete this long before it was read; both
		// readings are of the wall clock, taken microseconds apart, so
		// no clock step or drift between the clocks enters.
		if age := time.Duration(now.UnixNano() - rx); age > 0 && age < done-sent {
			done -= age
		}
	}
	rec.endRequest()
	if err != nil {
		if rs.aborted.Load() || errors.Is(err, errAborted) {
			rec.canceled.Add(1)
			return
		}
		status = 0
	}
	o := outcome{
		endpoint: w.req.Endpoint,
		intended: intended, sent: sent, done: done,
		status: status, class: classOf(status, err),
		in: in, out: out,
	}
	rec.record(w.id, &o)
	if rs.pacer != nil {
		// Awake anyway: send what is due, sparing the pacer a wake-up.
		rs.pacer.tryPump(read) // what is due now, not when the answer arrived
	}
}

// rotate closes a window at every boundary and once more when the run is
// finished, calling onWindow and adding each into the result.
func (rs *runState) rotate() {
	win := rs.e.cfg.Window
	w := rs.rec.newWindow()
	cpuPrev := rs.cpu0
	var from time.Duration
	timer := time.NewTimer(win)
	defer timer.Stop()
	emit := func(to time.Duration) {
		rs.rec.collect(w)
		w.Index = int(from / win)
		w.Start = rs.start.Add(from)
		w.End = rs.start.Add(to)
		w.Closed = rs.sched.IsClosed()
		w.OfferedRPS = 0
		if !w.Closed {
			sendTo := to
			if se := time.Duration(rs.sendEnd.Load()); se > 0 && se < sendTo {
				sendTo = se
			}
			if sendTo > from {
				w.OfferedRPS = rs.sched.Expected(from, sendTo) / (sendTo - from).Seconds()
			}
		}
		secs := (to - from).Seconds()
		w.AchievedRPS, w.InflightMean = 0, 0
		if secs > 0 {
			w.AchievedRPS = float64(w.All.Requests) / secs
			w.InflightMean = w.All.ServiceSum.Seconds() / secs
		}
		cpu := processCPU()
		w.CPUSeconds = (cpu - cpuPrev).Seconds()
		cpuPrev = cpu
		if rs.onWindow != nil {
			rs.onWindow(w)
		}
		rs.result.addWindow(w)
		if trim := rs.trim.Load(); trim != nil {
			(*trim)(w.InflightMax)
		}
		from = to
	}
	next := win
	for {
		select {
		case <-rs.finished:
			emit(rs.endOff)
			return
		case <-timer.C:
		}
		if next >= rs.bound.Duration || rs.sendEnd.Load() > 0 {
			fold := time.NewTimer(foldWait)
			select {
			case <-rs.finished:
				fold.Stop()
				emit(rs.endOff)
				return
			case <-fold.C:
			}
		}
		emit(next)
		next += win
		timer.Reset(next - rs.since())
	}
}
