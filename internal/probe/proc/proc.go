// Package proc samples /proc once a second: for each watched process (the
// target, and the load generator itself) its CPU, threads, memory, files,
// I/O, context switches, run-queue delay and cgroup CPU throttling; for the
// machine its CPU, load, pressure stall information and TCP health.
package proc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/probe"
)

// Source is the coverage source name.
const Source = "proc"

// DefaultInterval is one sample a second, the run's window length.
const DefaultInterval = time.Second

// userHZ is the unit of /proc/PID/stat's utime and stime: USER_HZ, 100 on
// every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// Watch names one process to sample.
type Watch struct {
	PID  int
	Role string // evidence.RoleTarget or evidence.RoleLoadgen
}

// Config configures a Probe.
type Config struct {
	// Processes to sample; may be empty (machine only).
	Processes []Watch
	// NoMachine turns off the machine-wide sample (on by default; a run
	// needs it once, however many proc probes it has).
	NoMachine bool
	// Interval between samples (DefaultInterval).
	Interval time.Duration
	// ProcRoot is where procfs is mounted ("/proc").
	ProcRoot string
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	for i, w := range c.Processes {
		if w.PID <= 0 {
			return fmt.Errorf("proc: Processes[%d].PID %d: must be positive", i, w.PID)
		}
		if w.Role != evidence.RoleTarget && w.Role != evidence.RoleLoadgen {
			return fmt.Errorf("proc: Processes[%d].Role %q: want %q or %q", i, w.Role, evidence.RoleTarget, evidence.RoleLoadgen)
		}
	}
	if c.Interval < 0 {
		return fmt.Errorf("proc: Interval %v: must not be negative", c.Interval)
	}
	if len(c.Processes) == 0 && c.NoMachine {
		return errors.New("proc: nothing to sample: no Processes and NoMachine")
	}
	return nil
}

// Probe samples processes and the machine. It implements probe.Probe.
type Probe struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	status  map[string]*watchStatus // by "role pid" or "machine"
	runErr  error
	samples int
}

type watchStatus struct {
	name    string
	records int
	lastErr string
	notes   map[string]bool
}

var _ probe.Probe = (*Probe)(nil)

// New returns a probe for cfg.
func New(cfg Config) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = procfs.DefaultMountPoint
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, log: log, status: map[string]*watchStatus{}}, nil
}

// Source implements probe.Probe.
func (p *Probe) Source() string { return Source }

// Run samples every Interval until ctx is done. It returns an error only
// when procfs cannot be read at all; a process that is gone or unreadable
// is reported in coverage while the rest carries on.
func (p *Probe) Run(ctx context.Context, sink probe.Sink) error {
	fs, err := procfs.NewFS(p.cfg.ProcRoot)
	if err == nil {
		_, err = fs.Stat()
	}
	if err != nil {
		err = fmt.Errorf("proc: %s: %w", p.cfg.ProcRoot, err)
		p.mu.Lock()
		p.runErr = err
		p.mu.Unlock()
		return err
	}
	var procs []*procWatch
	for _, w := range p.cfg.Processes {
		pw := newProcWatch(fs, w)
		procs = append(procs, pw)
		st := p.statusOf(pw.key())
		st.name = pw.name
		for _, n := range pw.notes {
			st.notes[n] = true
		}
	}
	var mw *machineWatch
	if !p.cfg.NoMachine {
		netPID := 0 // TCP counters of the target's network namespace
		for _, w := range p.cfg.Processes {
			if w.Role == evidence.RoleTarget {
				netPID = w.PID
				break
			}
		}
		mw = &machineWatch{fs: fs, netPID: netPID}
	}

	sample := func() {
		now := time.Now()
		for _, pw := range procs {
			rec, err := pw.sample(now)
			p.record(sink, pw.key(), rec, err)
		}
		if mw != nil {
			rec, notes, err := mw.sample(now)
			st := p.statusOf(evidence.RoleMachine)
			p.mu.Lock()
			for _, n := range notes {
				st.notes[n] = true
			}
			p.mu.Unlock()
			p.record(sink, evidence.RoleMachine, rec, err)
		}
	}
	sample() // the baseline for the first interval's rates
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			sample()
		}
	}
}

func (p *Probe) statusOf(key string) *watchStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status[key]
	if st == nil {
		st = &watchStatus{notes: map[string]bool{}}
		p.status[key] = st
	}
	return st
}

func (p *Probe) record(sink probe.Sink, key string, rec *evidence.ProcRecord, err error) {
	st := p.statusOf(key)
	if err == nil && rec != nil {
		err = sink.Append(evidence.ProcStream, rec)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		st.lastErr = err.Error()
		p.log.Debug("proc sample failed", "what", key, "err", err)
		return
	}
	if rec != nil {
		st.records++
		p.samples++
	}
}

// Coverage implements probe.Probe.
func (p *Probe) Coverage() probe.Coverage {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := probe.Coverage{Source: Source}
	if p.runErr != nil {
		c.Status = probe.StatusUnavailable
		c.Detail = p.runErr.Error() + "; /proc evidence needs Linux"
		return c
	}
	keys := make([]string, 0, len(p.status))
	for k := range p.status {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	targetOK, anyOK, anyErr := false, false, false
	for _, k := range keys {
		st := p.status[k]
		s := k
		if st.name != "" {
			s += " (" + st.name + ")"
		}
		s += fmt.Sprintf(": %d samples", st.records)
		if st.lastErr != "" {
			s += ", last error: " + st.lastErr
			anyErr = true
		}
		notes := make([]string, 0, len(st.notes))
		for n := range st.notes {
			notes = append(notes, n)
		}
		sort.Strings(notes)
		if len(notes) > 0 {
			s += "; " + strings.Join(notes, "; ")
		}
		parts = append(parts, s)
		if st.records > 0 {
			anyOK = true
			if strings.HasPrefix(k, evidence.RoleTarget+" ") {
				targetOK = true
			}
		}
	}
	c.Detail = strings.Join(parts, "; ")
	hasTarget := false
	for _, w := range p.cfg.Processes {
		hasTarget = hasTarget || w.Role == evidence.RoleTarget
	}
	switch {
	case hasTarget && !targetOK && anyErr:
		c.Status = probe.StatusError
		c.Detail += "; the target process could not be read: pass --pid, and run chokepoint as the target's user or root"
	case !hasTarget:
		c.Status = probe.StatusOK
		c.Detail += "; no target process: pass --pid for per-process evidence"
	case anyOK:
		c.Status = probe.StatusOK
	default:
		c.Status = probe.StatusOK
		c.Detail += "; no interval completed"
	}
	return c
}

// procWatch samples one process.
type procWatch struct {
	fs    procfs.FS
	w     Watch
	proc  procfs.Proc
	name  string
	cg    *cgroupCPU
	notes []string
	prev  *procRaw
}

func (pw *procWatch) key() string { return fmt.Sprintf("%s %d", pw.w.Role, pw.w.PID) }

func newProcWatch(fs procfs.FS, w Watch) *procWatch {
	pw := &procWatch{fs: fs, w: w}
	pr, err := fs.Proc(w.PID)
	if err != nil {
		return pw
	}
	pw.proc = pr
	pw.name, _ = pr.Comm()
	if cgs, err := pr.Cgroups(); err == nil {
		if mounts, err := fs.GetMounts(); err == nil {
			pw.cg, err = findCgroupCPU(cgs, mounts)
			if err != nil {
				pw.notes = append(pw.notes, "cgroup CPU limits unknown: "+err.Error())
			}
		}
	}
	return pw
}

// procRaw is one reading of cumulative counters.
type procRaw struct {
	t              time.Time
	utime, stime   uint
	threads        int
	rss            int64
	fds            int
	fdLimit        int64
	io             *procfs.ProcIO
	vol, invol     uint64
	waitNS, slices uint64
	schedOK        bool
	cg             *cgroupRaw
}

func (pw *procWatch) read(now time.Time) (*procRaw, error) {
	if pw.proc.PID == 0 {
		pr, err := pw.fs.Proc(pw.w.PID)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pw.w.PID, err)
		}
		pw.proc = pr
	}
	st, err := pw.proc.Stat()
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pw.w.PID, err)
	}
	r := &procRaw{t: now, utime: st.UTime, stime: st.STime, threads: st.NumThreads, rss: int64(st.ResidentMemory())}
	if pw.name == "" {
		pw.name = st.Comm
	}
	if status, err := pw.proc.NewStatus(); err == nil {
		r.vol, r.invol = status.VoluntaryCtxtSwitches, status.NonVoluntaryCtxtSwitches
	}
	if n, err := pw.proc.FileDescriptorsLen(); err == nil {
		r.fds = n
	}
	if lim, err := pw.proc.Limits(); err == nil && lim.OpenFiles > 0 && lim.OpenFiles < 1<<62 {
		r.fdLimit = int64(lim.OpenFiles)
	}
	if io, err := pw.proc.IO(); err == nil {
		r.io = &io
	}
	// /proc/PID/schedstat is the main thread's alone: sum the threads.
	if threads, err := pw.fs.AllThreads(pw.w.PID); err == nil {
		for _, th := range threads {
			if ss, err := th.Schedstat(); err == nil {
				r.waitNS += ss.WaitingNanoseconds
				r.slices += ss.RunTimeslices
				r.schedOK = true
			}
		}
	}
	if pw.cg != nil {
		if c, err := pw.cg.read(); err == nil {
			r.cg = &c
		}
	}
	return r, nil
}

// sample reads the process and returns the record of the interval since
// the previous reading (nil on the first).
func (pw *procWatch) sample(now time.Time) (*evidence.ProcRecord, error) {
	cur, err := pw.read(now)
	if err != nil {
		return nil, err
	}
	prev := pw.prev
	pw.prev = cur
	if prev == nil {
		return nil, nil
	}
	dt := cur.t.Sub(prev.t).Seconds()
	if dt <= 0 {
		return nil, nil
	}
	per := func(a, b uint64) float64 {
		if b < a {
			return 0
		}
		return float64(b-a) / dt
	}
	s := &evidence.ProcessSample{
		Name:                         pw.name,
		UserCores:                    float64(sub(prev.utime, cur.utime)) / userHZ / dt,
		SystemCores:                  float64(sub(prev.stime, cur.stime)) / userHZ / dt,
		Threads:                      cur.threads,
		RSSBytes:                     cur.rss,
		FDs:                          cur.fds,
		FDLimit:                      cur.fdLimit,
		VoluntaryCtxSwitchesPerSec:   per(prev.vol, cur.vol),
		InvoluntaryCtxSwitchesPerSec: per(prev.invol, cur.invol),
	}
	s.CPUCores = s.UserCores + s.SystemCores
	if prev.io != nil && cur.io != nil {
		rb, wb := per(prev.io.ReadBytes, cur.io.ReadBytes), per(prev.io.WriteBytes, cur.io.WriteBytes)
		rc, wc := per(prev.io.RChar, cur.io.RChar), per(prev.io.WChar, cur.io.WChar)
		s.ReadBytesPerSec, s.WriteBytesPerSec, s.RCharPerSec, s.WCharPerSec = &rb, &wb, &rc, &wc
	}
	if prev.schedOK && cur.schedOK && cur.waitNS >= prev.waitNS {
		wait := float64(cur.waitNS-prev.waitNS) / 1e9
		w := wait / dt
		s.RunQueueWaitPerSec = &w
		if n := sub64(prev.slices, cur.slices); n > 0 {
			ms := wait * 1000 / float64(n)
			s.RunQueueWaitMSPerSlice = &ms
		}
	}
	if pw.cg != nil && prev.cg != nil && cur.cg != nil {
		s.Cgroup = &evidence.CgroupCPU{
			Version:          pw.cg.version,
			Path:             pw.cg.path,
			QuotaCores:       cur.cg.quotaCores,
			Periods:          sub64(prev.cg.periods, cur.cg.periods),
			ThrottledPeriods: sub64(prev.cg.throttled, cur.cg.throttled),
			ThrottledSeconds: max(0, cur.cg.throttledS-prev.cg.throttledS),
		}
	}
	return &evidence.ProcRecord{
		T: now.UnixMilli(), Role: pw.w.Role, PID: pw.w.PID,
		IntervalMS: cur.t.Sub(prev.t).Milliseconds(), Process: s,
	}, nil
}

func sub(a, b uint) uint {
	if b < a {
		return 0
	}
	return b - a
}

func sub64(a, b uint64) uint64 {
	if b < a {
		return 0
	}
	return b - a
}

// Self is the Watch of this process as the load generator.
func Self() Watch { return Watch{PID: os.Getpid(), Role: evidence.RoleLoadgen} }
