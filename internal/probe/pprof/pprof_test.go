package pprof

import (
	"context"
	"fmt"
	"io"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	rtpprof "runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/testchild"
)

const thisPkg = "github.com/chokepoint/chokepoint/internal/probe/pprof."

// target is a real HTTP service in a child process (this test binary
// re-executed): /burn spends CPU in burn, /lock contends one mutex in
// (*store).update, /queue admits one request at a time through a channel
// in queued, and the pprof handlers are mounted under /debug/pprof/.
// The child counts requests to /debug/pprof/profile at /profiles.
type target struct {
	url string
}

// Environment of the child process.
const (
	envChild   = "CHOKEPOINT_PPROF_TEST_TARGET" // "1": serve instead of testing
	envMutex   = "CHOKEPOINT_PPROF_TEST_MUTEX"  // "1": sample every contention
	envHoldCPU = "CHOKEPOINT_PPROF_TEST_HOLD"   // "1": keep the CPU profiler busy
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		serveChild()
		return
	}
	os.Exit(m.Run())
}

// serveChild prints its address and serves until its stdin closes.
func serveChild() {
	if os.Getenv(envMutex) == "1" {
		runtime.SetMutexProfileFraction(1)
	}
	if os.Getenv(envHoldCPU) == "1" {
		if err := rtpprof.StartCPUProfile(io.Discard); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	var profiles atomic.Int64
	st := &store{}
	mux := http.NewServeMux()
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) { burn(2 * time.Millisecond) })
	mux.HandleFunc("/lock", func(w http.ResponseWriter, r *http.Request) { st.update() })
	gate := make(chan struct{}, 1)
	mux.HandleFunc("/queue", func(w http.ResponseWriter, r *http.Request) { queued(gate) })
	mux.HandleFunc("/profiles", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, profiles.Load()) })
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		profiles.Add(1)
		httppprof.Profile(w, r)
	})
	l, err := lowport.Listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin) // the test closed our stdin, or died
		os.Exit(0)
	}()
	fmt.Println("http://" + l.Addr().String())
	_ = http.Serve(l, mux)
}

type store struct {
	mu sync.Mutex
	n  int
}

//go:noinline
func (s *store) update() {
	s.mu.Lock()
	defer s.mu.Unlock()
	spin(100 * time.Microsecond)
	s.n++
}

//go:noinline
func burn(d time.Duration) { spin(d) }

// queued serves one request at a time: the others wait on the channel, a
// queue in front of a concurrency limit of 1.
//
//go:noinline
func queued(gate chan struct{}) {
	gate <- struct{}{}
	spin(2 * time.Millisecond)
	<-gate
}

// spun keeps spin's work observable, so the compiler cannot drop it.
var spun atomic.Uint64

//go:noinline
func spin(d time.Duration) {
	var x uint64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for i := range 1000 {
			x += uint64(i) * 2654435761
		}
	}
	spun.Add(x)
}

// newTarget starts the child with the given extra environment.
func newTarget(t *testing.T, env ...string) *target {
	t.Helper()
	_, url := testchild.Start(t, nil, append([]string{envChild + "=1"}, env...)...)
	return &target{url: url}
}

// profileRequests asks the child how many CPU profiles it was asked for.
func (tg *target) profileRequests(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(tg.url + "/profiles")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int
	if _, err := fmt.Fscan(resp.Body, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// drive sends requests to the paths from a few workers until ctx is done,
// at most maxRequests in all.
func drive(ctx context.Context, base string, paths []string, workers, maxRequests int) int64 {
	var sent atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && sent.Add(1) <= int64(maxRequests); i++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+paths[(w+i)%len(paths)], nil)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return sent.Load()
}

// startProbe runs the probe into a fresh run directory and returns a stop
// function that ends Run and returns its error.
func startProbe(t *testing.T, cfg Config) (*Probe, *run.Dir, func() error) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, dir) }()
	return p, dir, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return")
			return nil
		}
	}
}

func readIndex(t *testing.T, dir *run.Dir) []evidence.ProfileRecord {
	t.Helper()
	var recs []evidence.ProfileRecord
	if err := run.ReadLines(dir.Join(evidence.ProfilesStream), func(r evidence.ProfileRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

func find(recs []evidence.ProfileRecord, typ, kind string, step int) (evidence.ProfileRecord, bool) {
	for _, r := range recs {
		if r.Type == typ && r.Kind == kind && r.Step == step {
			return r, true
		}
	}
	return evidence.ProfileRecord{}, false
}

func decodeFile(t *testing.T, dir *run.Dir, rec evidence.ProfileRecord) *profile.Profile {
	t.Helper()
	f, err := os.Open(dir.Join(rec.File))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profilesum.Decode(f, 0)
	if err != nil {
		t.Fatalf("%s: %v", rec.File, err)
	}
	return p
}

// TestProbeSteps runs two steps of bounded load against the real target and
// checks every profile is kept and indexed, the CPU profile names the
// burning function and the mutex deltas name the function taking the lock.
func TestProbeSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two 1.9 s steps")
	}
	tg := newTarget(t, envMutex+"=1")
	p, dir, stop := startProbe(t, Config{BaseURL: tg.url + "/debug/pprof", Settle: 200 * time.Millisecond})

	const stepLen = 1900 * time.Millisecond
	for i := range 2 {
		s := probe.Step{Index: i, OfferedRPS: 100, Start: time.Now(), Planned: stepLen}
		ctx, cancel := context.WithTimeout(context.Background(), stepLen)
		p.StepStarted(context.Background(), s)
		n := drive(ctx, tg.url, []string{"/burn", "/lock", "/burn", "/lock"}, 4, 20000)
		cancel()
		p.StepEnded(context.Background(), s)
		if n == 0 {
			t.Fatal("no requests sent")
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	recs := readIndex(t, dir)
	for step := range 2 {
		for _, typ := range []string{"cpu", "heap", "allocs", "mutex", "block", "goroutine"} {
			r, ok := find(recs, typ, evidence.ProfileFetched, step)
			if !ok {
				t.Errorf("step %d: no %s profile; index %+v", step, typ, recs)
				continue
			}
			if want := "profiles/" + typ + "-" + string(rune('0'+step)) + ".pb.gz"; r.File != want {
				t.Errorf("file = %q, want %q", r.File, want)
			}
			if r.EndMS == 0 || r.Bytes == 0 || len(r.SampleTypes) == 0 || len(r.Totals) != len(r.SampleTypes) {
				t.Errorf("record %+v incomplete", r)
			}
		}
		for _, typ := range []string{"allocs", "mutex", "block"} {
			r, ok := find(recs, typ, evidence.ProfileDelta, step)
			if !ok {
				t.Errorf("step %d: no %s delta", step, typ)
				continue
			}
			if r.StartMS == 0 || r.StartMS >= r.EndMS {
				t.Errorf("delta window %d..%d", r.StartMS, r.EndMS)
			}
		}
	}

	cpuRec, _ := find(recs, "cpu", evidence.ProfileFetched, 1)
	if d := cpuRec.EndMS - cpuRec.StartMS; d < 900 || d > 3000 {
		t.Errorf("cpu window %d ms, want about 1 s", d)
	}
	cpu := decodeFile(t, dir, cpuRec)
	a, err := profilesum.Attribute(cpu, "cpu", profilesum.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// spin is called by both handlers; burn is the heavier caller.
	var burnShare float64
	for _, s := range a.Shares {
		if s.Function == thisPkg+"burn" || s.Function == thisPkg+"spin" {
			burnShare += s.Share
		}
	}
	if top, _ := a.TopApplication(); burnShare < 0.5 || !strings.HasPrefix(top.Function, thisPkg) {
		t.Errorf("burn+spin share %.2f; top %+v", burnShare, a.Top(5))
	}

	mrec, _ := find(recs, "mutex", evidence.ProfileDelta, 1)
	if tot, ok := mrec.Total("delay"); !ok || tot <= 0 {
		t.Fatalf("mutex delta has no delay: %+v", mrec)
	}
	sites, _, err := profilesum.LockDelay(decodeFile(t, dir, mrec), profilesum.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The runtime's own locks appear too (charged to their root frame, and
	// large when the machine is oversubscribed); among application sites the
	// function taking the contended lock must lead by far.
	var appDelay int64
	var top *profilesum.LockSite
	for i, s := range sites {
		if s.Application {
			appDelay += s.Delay
			if top == nil {
				top = &sites[i]
			}
		}
	}
	if top == nil || top.Function != thisPkg+"(*store).update" || float64(top.Delay) < 0.8*float64(appDelay) || !strings.HasPrefix(top.Via, "sync.(*Mutex).") {
		t.Errorf("lock sites = %+v, want (*store).update as the top application site", sites)
	}

	c := p.Coverage()
	if c.Source != "pprof" || c.Status != probe.StatusOK || !strings.Contains(c.Detail, "cpu 2") {
		t.Errorf("coverage = %+v", c)
	}
	if strings.Contains(c.Detail, "mutex profile empty") {
		t.Errorf("mutex profiling was on: %q", c.Detail)
	}
	if strings.Contains(c.Detail, "block profile empty") == false {
		t.Errorf("block profiling was off but not reported: %q", c.Detail)
	}
}

// TestCPUProfilerBusy: when the target is already being CPU-profiled the
// step's CPU profile is skipped after one request, reported in coverage, and
// the snapshots are still taken.
func TestCPUProfilerBusy(t *testing.T) {
	tg := newTarget(t, envHoldCPU+"=1")
	p, dir, stop := startProbe(t, Config{BaseURL: tg.url + "/debug/pprof", Settle: 50 * time.Millisecond})
	s := probe.Step{Index: 0, Start: time.Now(), Planned: 1600 * time.Millisecond}
	p.StepStarted(context.Background(), s)
	ctx, cancel := context.WithTimeout(context.Background(), 1600*time.Millisecond)
	drive(ctx, tg.url, []string{"/lock"}, 1, 2000)
	cancel()
	p.StepEnded(context.Background(), s)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := tg.profileRequests(t); n != 1 {
		t.Errorf("%d CPU profile requests, want exactly 1 (no retry loop)", n)
	}
	recs := readIndex(t, dir)
	if _, ok := find(recs, "cpu", evidence.ProfileFetched, 0); ok {
		t.Error("a CPU profile was kept while the profiler was busy")
	}
	if _, ok := find(recs, "heap", evidence.ProfileFetched, 0); !ok {
		t.Error("snapshots not taken after the busy CPU profile")
	}
	c := p.Coverage()
	if c.Status != probe.StatusOK || !strings.Contains(c.Detail, "busy") {
		t.Errorf("coverage = %+v, want ok with a busy note", c)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
		{"not pprof", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := lowport.NewServer(t, tt.handler)
			p, dir, stop := startProbe(t, Config{BaseURL: srv.URL + "/debug/pprof"})
			err := stop()
			if err == nil {
				t.Fatal("Run: no error for an endpoint that is not pprof")
			}
			// Steps after a failed Run are ignored, never block or panic.
			s := probe.Step{Index: 0, Planned: time.Second}
			p.StepStarted(context.Background(), s)
			p.StepEnded(context.Background(), s)
			if c := p.Coverage(); c.Status != probe.StatusUnavailable || !strings.Contains(c.Detail, "net/http/pprof") {
				t.Errorf("coverage = %+v", c)
			}
			if recs := readIndex(t, dir); len(recs) != 0 {
				t.Errorf("records written: %+v", recs)
			}
		})
	}
}

func TestConfigAndCPUSeconds(t *testing.T) {
	for _, bad := range []Config{{}, {BaseURL: "ftp://x/debug/pprof"}, {BaseURL: "http://127.0.0.1:1/debug/pprof", Settle: -1}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v): no error", bad)
		}
	}
}

// inQueue counts the goroutines of a goroutine profile waiting in queued.
func inQueue(p *profile.Profile) int64 {
	var n int64
	for _, s := range p.Sample {
		for _, loc := range s.Location {
			for _, ln := range loc.Line {
				if ln.Function != nil && ln.Function.Name == thisPkg+"queued" && len(s.Value) > 0 {
					n += s.Value[0]
				}
			}
		}
	}
	return n
}

// TestMidStepGoroutines: the goroutine profile taken while a step's load
// runs sees the queue in front of a limit, which has drained by the time
// the step's end snapshots are taken; both are indexed with their times,
// the mid-step one first. A step that ends before its halfway point (a
// hard breach) keeps the last snapshot taken while its load ran.
func TestMidStepGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 1 s steps")
	}
	cases := []struct {
		name          string
		planned, load time.Duration
	}{
		{"halfway", 1200 * time.Millisecond, 1200 * time.Millisecond},
		{"ended early", time.Hour, 900 * time.Millisecond},
	}
	tg := newTarget(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, dir, stop := startProbe(t, Config{BaseURL: tg.url + "/debug/pprof", Settle: 100 * time.Millisecond})
			s := probe.Step{Index: 0, OfferedRPS: 100, Start: time.Now(), Planned: c.planned}
			p.StepStarted(context.Background(), s)
			ctx, cancel := context.WithTimeout(context.Background(), c.load)
			const workers = 8
			drive(ctx, tg.url, []string{"/queue"}, workers, 100000)
			cancel()
			loadEnd := time.Now().UnixMilli()
			p.StepEnded(context.Background(), s)
			if err := stop(); err != nil {
				t.Fatal(err)
			}

			recs := readIndex(t, dir)
			mid, ok := find(recs, "goroutine", evidence.ProfileMidStep, 0)
			if !ok {
				t.Fatalf("no mid-step goroutine profile; index %+v", recs)
			}
			end, ok := find(recs, "goroutine", evidence.ProfileFetched, 0)
			if !ok {
				t.Fatalf("no goroutine profile as the step ended; index %+v", recs)
			}
			if mid.File != "profiles/goroutine-mid-0.pb.gz" {
				t.Errorf("mid-step file %q", mid.File)
			}
			from := s.Start.Add(min(c.planned/2, c.load-midStepPoll)).UnixMilli()
			if mid.EndMS < from || mid.EndMS > loadEnd || mid.EndMS >= end.EndMS {
				t.Errorf("mid-step snapshot at %d, want from %d to the load's end at %d, before the end snapshot at %d",
					mid.EndMS, from, loadEnd, end.EndMS)
			}
			for _, r := range recs {
				if r.Type == "goroutine" {
					if r.Kind != evidence.ProfileMidStep {
						t.Errorf("the first goroutine record is %q, want the mid-step one", r.Kind)
					}
					break
				}
			}
			qMid, qEnd := inQueue(decodeFile(t, dir, mid)), inQueue(decodeFile(t, dir, end))
			if qMid < workers/2 || qEnd > qMid/2 {
				t.Errorf("goroutines in queued: %d mid-step, %d as the step ended; want at least %d, then under half", qMid, qEnd, workers/2)
			}
			if c := p.Coverage(); !strings.Contains(c.Detail, "goroutine 1 (+1 mid-step)") {
				t.Errorf("coverage %q does not count the mid-step profile", c.Detail)
			}
		})
	}
}

// TestMidStepBeforeSettle: a step that ends before any mid-step snapshot
// was taken gets one as it ends, before the end snapshots.
func TestMidStepBeforeSettle(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(httppprof.Index))
	p, dir, stop := startProbe(t, Config{BaseURL: srv.URL + "/debug/pprof", Settle: time.Hour})
	<-p.ready // Run has checked the index
	s := probe.Step{Index: 3, Start: time.Now(), Planned: time.Hour}
	p.StepStarted(context.Background(), s)
	p.StepEnded(context.Background(), s)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := readIndex(t, dir)
	var kinds []string
	for _, r := range recs {
		if r.Type == "goroutine" && r.Step == 3 {
			kinds = append(kinds, r.Kind)
		}
	}
	if len(kinds) != 2 || kinds[0] != evidence.ProfileMidStep || kinds[1] != evidence.ProfileFetched {
		t.Errorf("goroutine records of the step: %q, want [mid-step fetched]; coverage %+v", kinds, p.Coverage())
	}
}
