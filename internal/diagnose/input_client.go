package diagnose

import (
	"math"
	"sort"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/google/pprof/profile"
)

// Helpers of the client-side rules (concurrency.limit, io.disk,
// net.connection-limit, errors.under-load, payload.large): step aggregates
// of the load windows, and the machine, process and profile evidence those
// rules read to tell their kind from its neighbours.

// Error classes as the load engine writes them in errors_by_class.
const (
	clClassTimeout = "timeout"
	clClassRefused = "refused"
	clClassReset   = "reset"
	clClass5xx     = "5xx"
)

// clLoad is a step's load windows added up.
type clLoad struct {
	Windows  int
	Seconds  float64
	Arrivals int64
	Requests int64
	Errors   int64
	Dropped  int64
	// ServiceSec is the sum of the requests' service times (actual send to
	// response), in seconds: Little's law's area under the in-flight curve.
	ServiceSec float64
	Classes    map[string]int64 // errors_by_class
	Status     map[string]int64
	// P50Med and P99Med are the medians over windows of the windows'
	// latency percentiles (ms); P99Max the highest window p99.
	P50Med, P99Med, P99Max float64
	Endpoints              map[string]*clEndpoint
}

// clEndpoint is one endpoint's part of a step.
type clEndpoint struct {
	Name     string
	Requests int64
	Errors   int64
	BytesIn  int64 // response bytes received by the generator
	BytesOut int64
	Classes  map[string]int64
	Status   map[string]int64
	// ServiceP50Sum is the sum over windows of p50 service time x requests
	// (for a request-weighted mean of the windows' medians).
	ServiceP50Sum float64
}

// clLoadAt adds up the windows of a step (an index into Steps).
func (in *Input) clLoadAt(step int) clLoad {
	l := clLoad{Classes: map[string]int64{}, Status: map[string]int64{}, Endpoints: map[string]*clEndpoint{}}
	var p50s, p99s []float64
	for _, w := range in.WindowsIn(step) {
		l.Windows++
		secs := float64(w.EndMS-w.StartMS) / 1000
		if secs <= 0 {
			secs = 1
		}
		l.Seconds += secs
		l.Arrivals += w.Arrivals
		l.Requests += w.Requests
		l.Errors += w.Errors
		l.Dropped += w.Dropped
		l.ServiceSec += w.InflightMean * secs
		clAddCounts(l.Classes, w.ErrorsByClass)
		clAddCounts(l.Status, w.StatusCodes)
		if w.Requests > 0 {
			p50s = append(p50s, w.LatencyMS.P50)
			p99s = append(p99s, w.LatencyMS.P99)
			l.P99Max = math.Max(l.P99Max, w.LatencyMS.P99)
		}
		for _, e := range w.Endpoints {
			el := l.Endpoints[e.Name]
			if el == nil {
				el = &clEndpoint{Name: e.Name, Classes: map[string]int64{}, Status: map[string]int64{}}
				l.Endpoints[e.Name] = el
			}
			el.Requests += e.Requests
			el.Errors += e.Errors
			el.BytesIn += e.BytesIn
			el.BytesOut += e.BytesOut
			el.ServiceP50Sum += e.ServiceMS.P50 * float64(e.Requests)
			clAddCounts(el.Classes, e.ErrorsByClass)
			clAddCounts(el.Status, e.StatusCodes)
		}
	}
	l.P50Med = clMedian(p50s)
	l.P99Med = clMedian(p99s)
	return l
}

func clAddCounts(into, from map[string]int64) {
	for k, v := range from {
		into[k] += v
	}
}

func clMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rps is the achieved rate (responses per second).
func (l clLoad) rps() float64 {
	if l.Seconds <= 0 {
		return 0
	}
	return float64(l.Requests) / l.Seconds
}

// arrivalRPS is the offered rate the windows saw (arrivals per second).
func (l clLoad) arrivalRPS() float64 {
	if l.Seconds <= 0 {
		return 0
	}
	return float64(l.Arrivals) / l.Seconds
}

// meanServiceSec is the mean service time in seconds (0 without requests).
func (l clLoad) meanServiceSec() float64 {
	if l.Requests <= 0 {
		return 0
	}
	return l.ServiceSec / float64(l.Requests)
}

// inflight is the mean number of requests in service (Little's law).
func (l clLoad) inflight() float64 {
	if l.Seconds <= 0 {
		return 0
	}
	return l.ServiceSec / l.Seconds
}

func (l clLoad) errorRate() float64 {
	if l.Requests <= 0 {
		return 0
	}
	return float64(l.Errors) / float64(l.Requests)
}

// connErrors counts the transport errors that say a connection was refused
// or reset. Timeouts are left out: a target that is merely slow (a long
// queue) times requests out too, and a connect timeout cannot be told from
// a response timeout in the generator's classes.
func (l clLoad) connErrors() int64 {
	return l.Classes[clClassRefused] + l.Classes[clClassReset]
}

// meanBytesIn is an endpoint's mean response size in bytes.
func (e *clEndpoint) meanBytesIn() float64 {
	if e.Requests <= 0 {
		return 0
	}
	return float64(e.BytesIn) / float64(e.Requests)
}

func (e *clEndpoint) errorRate() float64 {
	if e.Requests <= 0 {
		return 0
	}
	return float64(e.Errors) / float64(e.Requests)
}

// serviceP50 is the request-weighted mean of the windows' median service
// times (ms).
func (e *clEndpoint) serviceP50() float64 {
	if e.Requests <= 0 {
		return 0
	}
	return e.ServiceP50Sum / float64(e.Requests)
}

// sortedEndpoints returns a step's endpoints by name.
func (l clLoad) sortedEndpoints() []*clEndpoint {
	out := make([]*clEndpoint, 0, len(l.Endpoints))
	for _, e := range l.Endpoints {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// clMachine is the machine's samples over a step, averaged.
type clMachine struct {
	N               int
	IOWait          float64 // share of all cores' time
	PSIIOSome       float64 // share of time some task stalled on I/O
	PSIIOFull       float64
	PSI             bool // the kernel reported pressure
	ListenOverflows float64
	ListenDrops     float64
	Retrans         float64
}

func (in *Input) clMachineAt(step int) clMachine {
	start, end := in.StepSpan(step)
	var m clMachine
	psiN := 0
	for _, r := range in.ProcIn(evidence.RoleMachine, start, end) {
		s := r.Machine
		if s == nil {
			continue
		}
		m.N++
		m.IOWait += s.CPUIOWait
		m.ListenOverflows += s.TCPListenOverflowsPerSec
		m.ListenDrops += s.TCPListenDropsPerSec
		m.Retrans += s.TCPRetransSegsPerSec
		if s.PSI != nil {
			psiN++
			m.PSIIOSome += s.PSI.IO.Some
			m.PSIIOFull += s.PSI.IO.Full
		}
	}
	if m.N > 0 {
		n := float64(m.N)
		m.IOWait /= n
		m.ListenOverflows /= n
		m.ListenDrops /= n
		m.Retrans /= n
	}
	if psiN > 0 {
		m.PSI = true
		m.PSIIOSome /= float64(psiN)
		m.PSIIOFull /= float64(psiN)
	}
	return m
}

// listenLoss is the connections the kernel dropped or overflowed at the
// listen queue per second (the larger of the two counters: ListenDrops
// includes overflows on recent kernels, not on all).
func (m clMachine) listenLoss() float64 { return math.Max(m.ListenOverflows, m.ListenDrops) }

// clProcIO is the target's storage and syscall I/O over a step, per second.
type clProcIO struct {
	N                     int
	ReadBytes, WriteBytes float64 // storage (read_bytes, write_bytes)
	RChar, WChar          float64 // all read/write syscalls, sockets included
	Threads               float64
	Measured              bool // /proc/PID/io was readable
}

func (in *Input) clProcIOAt(role string, step int) clProcIO {
	start, end := in.StepSpan(step)
	var p clProcIO
	for _, r := range in.ProcIn(role, start, end) {
		s := r.Process
		if s == nil {
			continue
		}
		p.N++
		p.Threads += float64(s.Threads)
		if s.WriteBytesPerSec != nil {
			p.Measured = true
			p.WriteBytes += *s.WriteBytesPerSec
		}
		if s.ReadBytesPerSec != nil {
			p.ReadBytes += *s.ReadBytesPerSec
		}
		if s.RCharPerSec != nil {
			p.RChar += *s.RCharPerSec
		}
		if s.WCharPerSec != nil {
			p.WChar += *s.WCharPerSec
		}
	}
	if p.N > 0 {
		n := float64(p.N)
		p.ReadBytes /= n
		p.WriteBytes /= n
		p.RChar /= n
		p.WChar /= n
		p.Threads /= n
	}
	return p
}

// clPG is what PostgreSQL did over a step: the statements' execution time
// per second, the client sessions that were not idle, and the server's
// connections against its limit.
type clPG struct {
	Measured      bool
	ExecMSPerSec  float64 // sum of statements' execution time per second
	Calls         int64
	BusySessions  float64 // mean sessions not idle (active, idle in transaction...)
	Sessions      float64 // mean client sessions of the database
	Connections   int     // highest server connections seen
	MaxUsable     int     // max_connections - reserved; 0 unknown
	ActivityCount int
}

func (in *Input) clPGAt(step int) clPG {
	start, end := in.StepSpan(step)
	var p clPG
	var execMS float64
	var winMS int64
	for _, r := range in.PostgresIn(evidence.PGKindStatements, start, end) {
		p.Measured = true
		winMS += r.WindowMS
		for _, s := range r.Statements {
			execMS += s.TotalExecMS
			p.Calls += s.Calls
		}
	}
	if winMS > 0 {
		p.ExecMSPerSec = execMS / (float64(winMS) / 1000)
	}
	for _, r := range in.PostgresIn(evidence.PGKindActivity, start, end) {
		a := r.Activity
		if a == nil {
			continue
		}
		p.Measured = true
		p.ActivityCount++
		p.Sessions += float64(a.Sessions)
		busy := a.Sessions - a.States["idle"]
		if busy < 0 {
			busy = 0
		}
		p.BusySessions += float64(busy)
	}
	if p.ActivityCount > 0 {
		p.BusySessions /= float64(p.ActivityCount)
		p.Sessions /= float64(p.ActivityCount)
	}
	for _, r := range in.PostgresIn(evidence.PGKindDatabase, start, end) {
		d := r.Database
		if d == nil {
			continue
		}
		p.Measured = true
		p.Connections = max(p.Connections, d.Connections)
		if d.MaxConnections > 0 {
			p.MaxUsable = d.MaxConnections - d.ReservedConnections
		}
	}
	return p
}

// clProfile decodes the profile of a type for a step, preferring kind
// (delta for cumulative profiles) and falling back to any kind when
// fallback is set. ok is false when there is none or it cannot be read.
func (in *Input) clProfile(typ, kind string, step int, fallback bool) (*profile.Profile, evidence.ProfileRecord, bool) {
	rec, ok := in.ProfileFor(typ, kind, step)
	if !ok && fallback {
		rec, ok = in.ProfileFor(typ, "", step)
	}
	if !ok || in.OpenProfile == nil {
		return nil, evidence.ProfileRecord{}, false
	}
	p, err := in.OpenProfile(rec.File)
	if err != nil || p == nil {
		return nil, evidence.ProfileRecord{}, false
	}
	return p, rec, true
}

// clFrames returns a sample's function names, leaf first (inlined frames
// expanded, innermost first).
func clFrames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		if loc == nil {
			continue
		}
		for _, ln := range loc.Line {
			if ln.Function != nil && ln.Function.Name != "" {
				out = append(out, ln.Function.Name)
			}
		}
	}
	return out
}

// Where a request waits, by the frames between the leaf of its stack and
// its innermost application frame (names as Go's runtime and standard
// library print them).
const (
	clWaitNone       = iota // running, or parked somewhere else (network read, sleep...)
	clWaitQueue             // a channel operation, select or semaphore: a queue
	clWaitLock              // sync.Mutex / RWMutex: lock contention
	clWaitDBPool            // a database client's connection pool
	clWaitFile              // a file system call: waiting on the disk
	clWaitDownstream        // an outgoing call's response
	clWaitKinds
)

// clLockFrames mark a wait for a mutex (lock.contention's evidence).
var clLockFrames = []string{"sync.(*Mutex).", "sync.(*RWMutex).", "sync.runtime_SemacquireMutex", "sync.runtime_SemacquireRWMutex", "internal/sync.(*Mutex)."}

// clQueueFrames mark a wait in a channel, select or counting semaphore.
var clQueueFrames = []string{"runtime.chanrecv", "runtime.chansend", "runtime.selectgo", "runtime.block",
	"sync.runtime_Semacquire", "golang.org/x/sync/semaphore.", "sync.(*Cond).Wait"}

// clDBPoolFrames mark a wait for a connection from a database client's pool.
var clDBPoolFrames = []string{"database/sql.(*DB).conn", "github.com/jackc/puddle", "github.com/jackc/pgx/v5/pgxpool.(*Pool).Acquire",
	"github.com/jackc/pgx/v4/pgxpool", "github.com/go-redis/redis", "github.com/redis/go-redis"}

// clFileFrames mark a file system call (storage, not sockets).
var clFileFrames = []string{"os.(*File).Sync", "internal/poll.(*FD).Fsync", "syscall.Fsync", "syscall.Fdatasync",
	"golang.org/x/sys/unix.Fsync", "golang.org/x/sys/unix.Fdatasync", "os.(*File).Write", "os.(*File).WriteAt",
	"os.(*File).ReadAt", "os.(*File).Read", "os.Rename", "os.Remove", "os.OpenFile", "os.Create", "os.Open",
	"os.WriteFile", "os.ReadFile", "os.Mkdir", "os.(*File).Truncate", "os.(*File).Close"}

// clDownstreamFrames mark a wait for an outgoing call's answer.
var clDownstreamFrames = []string{"net/http.(*persistConn).", "net/http.(*Transport).", "net/http.(*Client).",
	"google.golang.org/grpc.", "net.(*Resolver)."}

// clWgFrames are waits for sub-tasks (not a queue in front of the work).
var clWgFrames = []string{"sync.(*WaitGroup).Wait", "golang.org/x/sync/errgroup."}

// clRequestFrames mark a goroutine that serves a request.
var clRequestFrames = []string{"net/http.(*conn).serve", "net/http.HandlerFunc.ServeHTTP", "net/http.serverHandler.ServeHTTP",
	"golang.org/x/net/http2.(*serverConn).runHandler", "net/http.(*http2serverConn).runHandler",
	"google.golang.org/grpc.(*Server).handleStream", "github.com/valyala/fasthttp.(*Server).serveConn"}

func clHasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// clWaitKind classifies a stack (leaf first): where it waits, the
// application function that made it wait ("" without one) and whether the
// goroutine serves a request. The frames between the leaf and the
// application frame decide, the most specific first: a pool's wait is a
// select inside the driver, a mutex wait a semaphore inside sync, a
// downstream call's wait a select inside net/http.
func clWaitKind(fs []string, o profilesum.Options) (kind int, fn string, request bool) {
	var dbPool, file, lock, wg, down, queue bool
	appAt := -1
	for i, f := range fs {
		if o.IsApplication(f) {
			appAt = i
			break
		}
		dbPool = dbPool || clHasPrefix(f, clDBPoolFrames)
		file = file || clHasPrefix(f, clFileFrames)
		lock = lock || clHasPrefix(f, clLockFrames)
		wg = wg || clHasPrefix(f, clWgFrames)
		down = down || clHasPrefix(f, clDownstreamFrames)
		queue = queue || clHasPrefix(f, clQueueFrames)
	}
	if appAt < 0 {
		return clWaitNone, "", false
	}
	for _, f := range fs[appAt:] {
		if clHasPrefix(f, clRequestFrames) {
			request = true
			break
		}
	}
	switch {
	case dbPool:
		kind = clWaitDBPool
	case file:
		kind = clWaitFile
	case lock:
		kind = clWaitLock
	case down:
		kind = clWaitDownstream
	case wg:
	case queue:
		kind = clWaitQueue
	}
	return kind, profilesum.TrimWrapper(fs[appAt]), request
}

// clWaiters is what a profile says about the goroutines serving requests,
// by where they wait: goroutines (goroutine profile), delay (block
// profile, nanoseconds) or CPU time (CPU profile).
type clWaiters struct {
	Total   int64                                        // over request goroutines
	By      [clWaitKinds]int64                           // by wait kind
	Funcs   [clWaitKinds]map[string]int64                // by wait kind, the application function
	Entries [clWaitKinds]map[profilesum.EntryPoint]int64 // by wait kind, the handler the request runs in
}

// entries lists kind's cost by the handler it was under, largest first.
func (w clWaiters) entries(kind int) []profilesum.EntryCost {
	return profilesum.EntryCosts(w.Entries[kind], w.By[kind])
}

// top returns the application function with the most in kind, and how
// much.
func (w clWaiters) top(kind int) (string, int64) {
	var best string
	var n int64
	for fn, c := range w.Funcs[kind] {
		if c > n || (c == n && fn < best) {
			best, n = fn, c
		}
	}
	return best, n
}

// share is kind's fraction of the total.
func (w clWaiters) share(kind int) float64 {
	if w.Total <= 0 {
		return 0
	}
	return float64(w.By[kind]) / float64(w.Total)
}

// clClassify adds up a profile's sample type over the stacks of request
// goroutines, by where they wait. ok is false without the sample type.
func clClassify(p *profile.Profile, sampleType string) (clWaiters, bool) {
	var w clWaiters
	for i := range w.Funcs {
		w.Funcs[i] = map[string]int64{}
		w.Entries[i] = map[profilesum.EntryPoint]int64{}
	}
	idx := 0
	if sampleType != "" {
		i, err := profilesum.SampleIndex(p, sampleType)
		if err != nil {
			return w, false
		}
		idx = i
	}
	o := profilesum.Options{}
	for _, s := range p.Sample {
		if idx >= len(s.Value) {
			continue
		}
		v := s.Value[idx]
		kind, fn, req := clWaitKind(clFrames(s), o)
		if !req {
			continue
		}
		w.Total += v
		w.By[kind] += v
		w.Funcs[kind][fn] += v
		if e := o.EntryOf(s); !e.IsZero() {
			w.Entries[kind][e] += v
		}
	}
	return w, true
}

// clGoroutineWaiters reads the goroutine profile taken while a step's load
// ran (mid-step; runs recorded before it existed have only the one taken as
// the step ended): request goroutines by where they wait.
func (in *Input) clGoroutineWaiters(step int) (clWaiters, bool) {
	p, _, ok := in.clProfile(evidence.ProfileGoroutine, evidence.ProfileMidStep, step, true)
	if !ok {
		return clWaiters{}, false
	}
	return clClassify(p, "")
}

// clBlockWaits reads the step's block profile delta: the time request
// goroutines spent blocked (nanoseconds), by where.
func (in *Input) clBlockWaits(step int) (clWaiters, bool) {
	p, _, ok := in.clProfile(evidence.ProfileBlock, evidence.ProfileDelta, step, false)
	if !ok {
		return clWaiters{}, false
	}
	return clClassify(p, "delay")
}

// clCPUWork reads the step's CPU profile: the request goroutines' CPU time
// by where it went (file system calls show as clWaitFile).
func (in *Input) clCPUWork(step int) (clWaiters, bool) {
	p, _, ok := in.clProfile(evidence.ProfileCPU, "", step, true)
	if !ok {
		return clWaiters{}, false
	}
	return clClassify(p, "cpu")
}

// clMutexDelay is the delay (seconds) requests spent waiting for mutexes in a
// step, from the step's mutex profile delta (else the block profile's
// mutex waits); ok is false without either.
func (in *Input) clMutexDelay(step int) (float64, bool) {
	if p, _, ok := in.clProfile(evidence.ProfileMutex, evidence.ProfileDelta, step, false); ok {
		if _, tot, err := profilesum.LockDelay(p, profilesum.Options{}); err == nil {
			return float64(tot) / 1e9, true
		}
	}
	if p, _, ok := in.clProfile(evidence.ProfileBlock, evidence.ProfileDelta, step, false); ok {
		sites, _, err := profilesum.LockDelay(p, profilesum.Options{})
		if err == nil {
			var d int64
			for _, s := range sites {
				if clHasPrefix(s.Via, clLockFrames) {
					d += s.Delay
				}
			}
			return float64(d) / 1e9, true
		}
	}
	return 0, false
}

// clProxies are the process names (comm) of reverse proxies and
// connection poolers commonly put in front of a service: when the process
// listening on the target's port is one of them, a connection limit sits
// in it rather than in the service behind it.
var clProxies = []string{"nginx", "haproxy", "envoy", "traefik", "caddy", "varnishd", "squid", "pgbouncer", "httpd", "apache2", "lighttpd", "openresty", "kong"}

func clIsProxy(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, p := range clProxies {
		if n == p || strings.HasPrefix(n, p+":") || strings.HasPrefix(n, p+" ") {
			return true
		}
	}
	return false
}
