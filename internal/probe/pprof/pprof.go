// Package pprof collects a Go target's profiles through its net/http/pprof
// handlers: a CPU profile over each load step, a goroutine snapshot halfway
// through it, and heap, allocs, mutex, block and goroutine snapshots as each
// step ends, with per-step deltas of the cumulative ones, kept as fetched
// under profiles/ and indexed in profiles.jsonl.
package pprof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/profilesum"
)

// Source is the coverage source name.
const Source = "pprof"

// Defaults; each is what a zero Config field means.
const (
	// DefaultSettle is the wait after a step starts before the CPU profile
	// begins, so the profile sees the step's steady state rather than the
	// ramp from the previous rate (one second covers connection set-up and
	// the generator's first schedule corrections).
	DefaultSettle = time.Second
	// DefaultMaxCPUSeconds bounds a step's CPU profile (all its chunks,
	// see cpuChunk). Go samples at 100 Hz, so 10 s of a busy core gives
	// ~1,000 samples: enough to rank functions, and short enough to leave
	// the rest of a long step unprofiled time.
	DefaultMaxCPUSeconds = 10
	// DefaultFetchTimeout bounds each snapshot fetch (heap, allocs, ...).
	DefaultFetchTimeout = 10 * time.Second
)

// cpuSlack is added to a CPU profile's request timeout beyond its seconds:
// the target writes the profile only after sampling ends.
const cpuSlack = 10 * time.Second

// midStepTypes are the snapshots also taken while the step's load runs
// (evidence.ProfileMidStep): the goroutine profile is an instant's picture,
// and the queues it should show in front of a limit are gone by StepEnded,
// once the load engine has drained the requests in flight (the end-of-step
// snapshot, fetched after four others, sees the next step's load, if any).
// The other types
// are cumulative or, for the heap, change slowly enough for the end of the
// step.
var midStepTypes = []string{evidence.ProfileGoroutine}

// Snapshot types taken as each step ends, in this order.
var snapshotTypes = []string{
	evidence.ProfileHeap, evidence.ProfileAllocs, evidence.ProfileMutex,
	evidence.ProfileBlock, evidence.ProfileGoroutine,
}

// cumulative reports profile types whose counts grow for the process's
// life, so that a step's share is a delta between snapshots.
func cumulative(typ string) bool {
	switch typ {
	case evidence.ProfileAllocs, evidence.ProfileMutex, evidence.ProfileBlock:
		return true
	}
	return false
}

// Config configures a Probe. The zero value of each field but BaseURL means
// its default.
type Config struct {
	// BaseURL is the target's pprof root, e.g. http://127.0.0.1:8080/debug/pprof.
	BaseURL string
	// Client makes the requests; nil means a client without proxies.
	Client *http.Client
	// Settle is the wait before each step's CPU profile (DefaultSettle).
	Settle time.Duration
	// MaxCPUSeconds bounds each step's CPU profile (DefaultMaxCPUSeconds).
	MaxCPUSeconds int
	// FetchTimeout bounds each snapshot fetch (DefaultFetchTimeout).
	FetchTimeout time.Duration
	// MaxBytes bounds one profile, compressed and decompressed
	// (profilesum.DefaultMaxBytes).
	MaxBytes int64
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("pprof: BaseURL %q: want http(s)://host:port/debug/pprof", c.BaseURL)
	}
	if c.Settle < 0 {
		return fmt.Errorf("pprof: Settle %v: must not be negative", c.Settle)
	}
	if c.MaxCPUSeconds < 0 {
		return fmt.Errorf("pprof: MaxCPUSeconds %d: must not be negative", c.MaxCPUSeconds)
	}
	if c.FetchTimeout < 0 || c.MaxBytes < 0 {
		return errors.New("pprof: FetchTimeout and MaxBytes must not be negative")
	}
	return nil
}

// Probe collects profiles per step. It implements probe.Probe and
// probe.StepObserver; the hunt must start Run before (or as) it calls
// StepStarted.
type Probe struct {
	cfg    Config
	base   string
	client *http.Client
	log    *slog.Logger

	ready    chan struct{} // closed when Run has the sink
	stopping chan struct{} // closed when Run's ctx is done
	wg       sync.WaitGroup

	mu       sync.Mutex
	sink     probe.Sink
	started  bool // Run was called
	stopped  bool
	runErr   error
	steps    map[int]*stepState
	cpuSem   chan struct{}        // held while our own CPU profile is in flight
	prev     map[string]*snapshot // last cumulative snapshot per type
	counts   map[string]int       // profiles written per type
	failures map[string]int       // failed fetches per type
	notes    map[string]bool      // coverage notes, deduplicated
	lastErr  string
}

type stepState struct {
	ended   chan struct{}
	once    sync.Once
	midDone chan struct{} // closed when the mid-step snapshots are done
}

type snapshot struct {
	p *profile.Profile
	t time.Time
}

var (
	_ probe.Probe        = (*Probe)(nil)
	_ probe.StepObserver = (*Probe)(nil)
)

// New returns a probe for the pprof root in cfg.
func New(cfg Config) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.MaxCPUSeconds == 0 {
		cfg.MaxCPUSeconds = DefaultMaxCPUSeconds
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = profilesum.DefaultMaxBytes
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{
		cfg:      cfg,
		base:     strings.TrimRight(cfg.BaseURL, "/"),
		client:   client,
		log:      log,
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		steps:    map[int]*stepState{},
		cpuSem:   make(chan struct{}, 1),
		prev:     map[string]*snapshot{},
		counts:   map[string]int{},
		failures: map[string]int{},
		notes:    map[string]bool{},
	}, nil
}

// Source implements probe.Probe.
func (p *Probe) Source() string { return Source }

// Run checks that the pprof root answers, then serves the steps until ctx is
// done, and returns once every step's collection has finished. It returns an
// error only when the endpoint cannot be used at all.
func (p *Probe) Run(ctx context.Context, sink probe.Sink) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("pprof: Run called twice")
	}
	p.started = true
	p.mu.Unlock()

	err := p.check(ctx)
	p.mu.Lock()
	if err != nil {
		p.runErr = err
		p.stopped = true
		p.mu.Unlock()
		close(p.stopping)
		return err
	}
	p.sink = sink
	close(p.ready)
	p.mu.Unlock()

	<-ctx.Done()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	close(p.stopping)
	p.wg.Wait()
	return nil
}

// check fetches the pprof index and makes sure it looks like Go's.
func (p *Probe) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.FetchTimeout)
	defer cancel()
	body, err := p.get(ctx, p.base+"/", 1<<20)
	if err != nil {
		return fmt.Errorf("pprof: %s: %w", p.base, err)
	}
	if !bytes.Contains(body, []byte("goroutine")) || !bytes.Contains(body, []byte("profile")) {
		return fmt.Errorf("pprof: %s/ does not look like net/http/pprof's index", p.base)
	}
	return nil
}

// StepStarted implements probe.StepObserver: it schedules the step's
// collection and returns at once.
func (p *Probe) StepStarted(ctx context.Context, s probe.Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	if _, dup := p.steps[s.Index]; dup {
		return
	}
	st := &stepState{ended: make(chan struct{}), midDone: make(chan struct{})}
	p.steps[s.Index] = st
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer close(st.midDone)
		p.midStep(ctx, s, st)
	}()
	go func() {
		defer p.wg.Done()
		p.collect(ctx, s, st)
	}()
}

// midStepPoll is how often the mid-step snapshots are taken, and held
// unwritten, until the one due halfway through the step. The hunt judges a
// step by one-second windows and ends it early, at a window's end, when the
// objective breaks hard; by the time StepEnded arrives the load engine has
// drained the requests in flight and the queues are gone. Polling at half
// a window keeps, for a step that ended early, a snapshot taken while its
// load still ran, at most half a window before the end.
const midStepPoll = 500 * time.Millisecond

// midStepAt is when a step's mid-step snapshots are due: halfway through
// its planned length, and not before the load has settled (Settle), for a
// step of unknown length as soon as it has.
func (p *Probe) midStepAt(s probe.Step) time.Time {
	return stepStart(s).Add(max(s.Planned/2, p.cfg.Settle))
}

func stepStart(s probe.Step) time.Time {
	if s.Start.IsZero() {
		return time.Now()
	}
	return s.Start
}

// midStep takes the mid-step snapshots (midStepTypes) while the step's load
// runs: the one due halfway through the step is written. Until then one is
// taken every midStepPoll after Settle and held, so that a step that ends
// sooner (a hard breach: the moment to see) or a run that stops writes the
// last one taken while the load ran, or, without one, one taken at once.
func (p *Probe) midStep(ctx context.Context, s probe.Step, st *stepState) {
	if !p.waitReady(ctx) {
		return
	}
	due := time.NewTimer(time.Until(p.midStepAt(s)))
	defer due.Stop()
	poll := time.NewTimer(time.Until(stepStart(s).Add(p.cfg.Settle)))
	defer poll.Stop()
	held := map[string]*fetched{}
	for {
		select {
		case <-poll.C:
			for _, typ := range midStepTypes {
				// A failed poll is not counted: the snapshot written is.
				if f, err := p.fetch(ctx, typ); err == nil {
					held[typ] = f
				}
			}
			poll.Reset(midStepPoll)
			continue
		case <-due.C:
			clear(held) // a fresh one, halfway
		case <-st.ended:
		case <-p.stopping:
		case <-ctx.Done():
			return
		}
		break
	}
	for _, typ := range midStepTypes {
		f := held[typ]
		if f == nil {
			var err error
			if f, err = p.fetch(ctx, typ); err != nil {
				p.fail(typ, err.Error())
				continue
			}
		}
		p.write(typ, evidence.ProfileMidStep, s.Index, f.data, f.prof, time.Time{}, f.at)
	}
}

// StepEnded implements probe.StepObserver: the step's snapshots are taken
// now (asynchronously).
func (p *Probe) StepEnded(_ context.Context, s probe.Step) {
	p.mu.Lock()
	st := p.steps[s.Index]
	p.mu.Unlock()
	if st != nil {
		st.once.Do(func() { close(st.ended) })
	}
}

// waitReady waits until Run has its sink, and reports whether it has: false
// when Run failed or ctx ended first. A run that stops just after it became
// ready still serves the steps already started.
func (p *Probe) waitReady(ctx context.Context) bool {
	select {
	case <-p.ready:
	case <-p.stopping:
	case <-ctx.Done():
		return false
	}
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

func (p *Probe) collect(ctx context.Context, s probe.Step, st *stepState) {
	if !p.waitReady(ctx) {
		return
	}
	// The first profiled step needs a base for its deltas.
	for _, typ := range snapshotTypes {
		if cumulative(typ) && p.previous(typ) == nil {
			p.snapshot(ctx, s, typ, evidence.ProfileBaseline)
		}
	}

	settle := time.NewTimer(p.cfg.Settle)
	defer settle.Stop()
	select {
	case <-settle.C:
		p.cpu(ctx, s, st)
	case <-st.ended:
		p.note(fmt.Sprintf("step %d ended before its CPU profile began", s.Index))
	case <-p.stopping:
	case <-ctx.Done():
		return
	}

	select {
	case <-st.ended:
	case <-p.stopping:
	case <-ctx.Done():
		return
	}
	// The mid-step snapshots come first in profiles.jsonl, and are not
	// delayed by the stop-the-world collection of heap?gc=1.
	select {
	case <-st.midDone:
	case <-ctx.Done():
		return
	}
	for _, typ := range snapshotTypes {
		p.snapshot(ctx, s, typ, evidence.ProfileFetched)
	}
}

// cpuChunk is the length of one CPU profile request. A step's CPU profile
// is taken as back-to-back chunks merged into one, so it covers the step
// however long the step turns out to be (the hunt ends steps early on a
// breach and extends them while they drift), and a chunk running past the
// step's end holds the target's profiler for at most this long into the
// next step.
const cpuChunk = 2 * time.Second

// cpu profiles the step in chunks from now until the step ends, at most
// MaxCPUSeconds in all, and writes the merged profile.
func (p *Probe) cpu(ctx context.Context, s probe.Step, st *stepState) {
	// One CPU profile at a time: the previous step's last chunk may still
	// be running (at most cpuChunk); wait for it rather than skip the step.
	select {
	case p.cpuSem <- struct{}{}:
	case <-time.After(cpuChunk + cpuSlack):
		p.note(fmt.Sprintf("step %d: previous CPU profile still running, step not profiled", s.Index))
		return
	case <-st.ended:
		return
	case <-p.stopping:
		return
	case <-ctx.Done():
		return
	}
	defer func() { <-p.cpuSem }()

	var chunks []*profile.Profile
	start := time.Now()
	budget := time.Duration(p.cfg.MaxCPUSeconds) * time.Second
	for time.Since(start) < budget {
		// Once the step has some profile, a chunk still running when it
		// ends is abandoned so that the next step finds the profiler free.
		// The first chunk always completes (at most cpuChunk), even when the
		// run stops: a short last step keeps its profile.
		var ended, stopping <-chan struct{}
		if len(chunks) > 0 {
			ended, stopping = st.ended, p.stopping
		}
		prof, ok := p.cpuChunk(ctx, s, ended, stopping)
		if !ok {
			break
		}
		chunks = append(chunks, prof)
		select {
		case <-st.ended:
		case <-p.stopping:
		case <-ctx.Done():
		default:
			continue
		}
		break
	}
	end := time.Now()
	if len(chunks) == 0 {
		return
	}
	merged, err := profile.Merge(chunks)
	if err != nil {
		p.fail(evidence.ProfileCPU, "merge: "+err.Error())
		return
	}
	merged.DurationNanos = end.Sub(start).Nanoseconds()
	var buf bytes.Buffer
	if err := merged.Write(&buf); err != nil {
		p.fail(evidence.ProfileCPU, err.Error())
		return
	}
	p.write(evidence.ProfileCPU, evidence.ProfileFetched, s.Index, buf.Bytes(), merged, start, end)
}

// cpuChunk takes one CPU profile of cpuChunk; ok is false when none could
// be taken (the error is noted once in coverage).
func (p *Probe) cpuChunk(ctx context.Context, s probe.Step, ended, stopping <-chan struct{}) (*profile.Profile, bool) {
	n := int(cpuChunk / time.Second)
	cctx, cancel := context.WithTimeout(ctx, cpuChunk+cpuSlack)
	defer cancel()
	// A run that ends mid-profile does not wait for it.
	go func() {
		select {
		case <-stopping:
			cancel()
		case <-ended:
			cancel()
		case <-cctx.Done():
		}
	}()
	data, err := p.get(cctx, fmt.Sprintf("%s/profile?seconds=%d", p.base, n), p.cfg.MaxBytes)
	if err != nil {
		var he *httpError
		switch {
		case errors.As(err, &he) && strings.Contains(he.body, "already in use"):
			// Someone else is profiling the target; never retried in a loop.
			p.note(fmt.Sprintf("step %d: target's CPU profiler busy (another profile in progress), step skipped", s.Index))
			p.fail(evidence.ProfileCPU, "")
		case errors.As(err, &he) && strings.Contains(he.body, "WriteTimeout"):
			p.note("target's http.Server WriteTimeout is shorter than the CPU profile; raise it or lower the profile length")
			p.fail(evidence.ProfileCPU, err.Error())
		case cctx.Err() != nil && ctx.Err() == nil:
			// The run ended mid-chunk: not a failure of the source.
		default:
			p.fail(evidence.ProfileCPU, err.Error())
		}
		return nil, false
	}
	prof, err := profilesum.DecodeBytes(data, p.cfg.MaxBytes)
	if err != nil {
		p.fail(evidence.ProfileCPU, err.Error())
		return nil, false
	}
	return prof, true
}

// snapshot fetches one profile type and, for cumulative types, writes the
// delta since the previous snapshot.
func (p *Probe) snapshot(ctx context.Context, s probe.Step, typ, kind string) {
	f, err := p.fetch(ctx, typ)
	if err != nil {
		p.fail(typ, err.Error())
		return
	}
	prof, now := f.prof, f.at
	p.write(typ, kind, s.Index, f.data, prof, time.Time{}, now)
	if !cumulative(typ) {
		return
	}
	prev := p.previous(typ)
	p.mu.Lock()
	p.prev[typ] = &snapshot{p: prof, t: now}
	p.mu.Unlock()
	if kind == evidence.ProfileBaseline || prev == nil {
		return
	}
	d, err := profilesum.Delta(prev.p, prof)
	if err != nil {
		p.fail(typ, "delta: "+err.Error())
		return
	}
	var buf bytes.Buffer
	if err := d.Write(&buf); err != nil {
		p.fail(typ, "delta: "+err.Error())
		return
	}
	p.write(typ, evidence.ProfileDelta, s.Index, buf.Bytes(), d, prev.t, now)
}

// fetched is one snapshot as the target served it.
type fetched struct {
	data []byte
	prof *profile.Profile
	at   time.Time // when it was taken
}

// fetch takes one snapshot of a profile type.
func (p *Probe) fetch(ctx context.Context, typ string) (*fetched, error) {
	fctx, cancel := context.WithTimeout(ctx, p.cfg.FetchTimeout)
	defer cancel()
	u := p.base + "/" + typ
	if typ == evidence.ProfileHeap {
		u += "?gc=1" // heap in use after a collection: what is really retained
	}
	data, err := p.get(fctx, u, p.cfg.MaxBytes)
	now := time.Now()
	if err != nil {
		return nil, err
	}
	prof, err := profilesum.DecodeBytes(data, p.cfg.MaxBytes)
	if err != nil {
		return nil, err
	}
	return &fetched{data: data, prof: prof, at: now}, nil
}

// emptyNotes explains all-zero mutex and block profiles (the latest
// snapshots, covering the process's life): the target has not turned that
// profiler on. Called with p.mu held.
func (p *Probe) emptyNotes() []string {
	var notes []string
	empty := func(typ string) bool {
		s := p.prev[typ]
		if s == nil || len(s.p.SampleType) == 0 {
			return false
		}
		tot, err := profilesum.Total(s.p, "")
		return err == nil && tot == 0
	}
	if empty(evidence.ProfileMutex) {
		notes = append(notes, "mutex profile empty: the target does not sample contention; call runtime.SetMutexProfileFraction(5) at start-up")
	}
	if empty(evidence.ProfileBlock) {
		notes = append(notes, "block profile empty: the target does not sample blocking; call runtime.SetBlockProfileRate(10000) at start-up")
	}
	return notes
}

func (p *Probe) previous(typ string) *snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prev[typ]
}

// write keeps a profile file and its index record.
func (p *Probe) write(typ, kind string, step int, data []byte, prof *profile.Profile, start, end time.Time) {
	name := fmt.Sprintf("profiles/%s-%d.pb.gz", typ, step)
	switch kind {
	case evidence.ProfileBaseline:
		name = fmt.Sprintf("profiles/%s-base-%d.pb.gz", typ, step)
	case evidence.ProfileDelta:
		name = fmt.Sprintf("profiles/%s-delta-%d.pb.gz", typ, step)
	case evidence.ProfileMidStep:
		name = fmt.Sprintf("profiles/%s-mid-%d.pb.gz", typ, step)
	}
	p.mu.Lock()
	sink := p.sink
	p.mu.Unlock()
	if err := sink.WriteFile(name, data); err != nil {
		p.fail(typ, err.Error())
		return
	}
	rec := evidence.ProfileRecord{
		T: time.Now().UnixMilli(), Type: typ, Kind: kind, Step: step, File: name,
		EndMS: end.UnixMilli(), Samples: len(prof.Sample), Bytes: len(data),
	}
	if !start.IsZero() {
		rec.StartMS = start.UnixMilli()
	}
	for i, st := range prof.SampleType {
		rec.SampleTypes = append(rec.SampleTypes, st.Type+"/"+st.Unit)
		var t int64
		for _, s := range prof.Sample {
			if i < len(s.Value) {
				t += s.Value[i]
			}
		}
		rec.Totals = append(rec.Totals, t)
	}
	if err := sink.Append(evidence.ProfilesStream, rec); err != nil {
		p.fail(typ, err.Error())
		return
	}
	p.mu.Lock()
	p.counts[typ+" "+kind]++
	p.mu.Unlock()
	p.log.Debug("profile kept", "file", name, "samples", len(prof.Sample))
}

func (p *Probe) fail(typ, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures[typ]++
	if msg != "" {
		p.lastErr = typ + ": " + msg
	}
	p.log.Debug("profile failed", "type", typ, "err", msg)
}

func (p *Probe) note(n string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes[n] = true
}

// Coverage implements probe.Probe.
func (p *Probe) Coverage() probe.Coverage {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := probe.Coverage{Source: Source}
	if p.runErr != nil {
		c.Status = probe.StatusUnavailable
		c.Detail = p.runErr.Error() + "; import _ \"net/http/pprof\" in the target, or pass --pprof URL"
		return c
	}
	var parts []string
	kept := 0
	for _, typ := range append([]string{evidence.ProfileCPU}, snapshotTypes...) {
		n := p.counts[typ+" "+evidence.ProfileFetched]
		kept += n
		s := fmt.Sprintf("%s %d", typ, n)
		if d := p.counts[typ+" "+evidence.ProfileDelta]; d > 0 {
			s += fmt.Sprintf(" (+%d deltas)", d)
		}
		if m := p.counts[typ+" "+evidence.ProfileMidStep]; m > 0 {
			s += fmt.Sprintf(" (+%d mid-step)", m)
		}
		if f := p.failures[typ]; f > 0 {
			s += fmt.Sprintf(" (%d failed)", f)
		}
		parts = append(parts, s)
	}
	c.Detail = p.base + ": " + strings.Join(parts, ", ")
	notes := p.emptyNotes()
	for n := range p.notes {
		notes = append(notes, n)
	}
	sort.Strings(notes)
	if len(notes) > 0 {
		c.Detail += "; " + strings.Join(notes, "; ")
	}
	switch {
	case kept > 0:
		c.Status = probe.StatusOK
	case len(p.failures) > 0:
		c.Status = probe.StatusError
		if p.lastErr != "" {
			c.Detail += "; last error: " + p.lastErr
		}
	default:
		c.Status = probe.StatusOK
		c.Detail += "; no step was profiled"
	}
	return c
}

// httpError is a non-200 answer.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// maxErrorBody bounds the part of an error answer kept for messages.
const maxErrorBody = 512

// get fetches a URL, reading at most max bytes of a 200 answer.
func (p *Probe) get(ctx context.Context, u string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &httpError{status: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: over %d bytes", profilesum.ErrTooLarge, max)
	}
	return b, nil
}
