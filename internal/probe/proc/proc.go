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
	"path/filepath"
	"sort"
	"strconv"
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
	Role string // evidence.RoleTarget, evidence.RoleProxy or evidence.RoleLoadgen
	// Tree sums the process and its descendants (Tree, at most MaxTree),
	// listed again at every sample: a pre-fork server's master does no
	// work, its workers do. Off, only PID is read.
	Tree bool
	// Port is where discovery found the process listening, recorded in
	// its evidence (0: not known).
	Port int
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
		switch w.Role {
		case evidence.RoleTarget, evidence.RoleProxy, evidence.RoleLoadgen:
		default:
			return fmt.Errorf("proc: Processes[%d].Role %q: want %q, %q or %q", i, w.Role, evidence.RoleTarget, evidence.RoleProxy, evidence.RoleLoadgen)
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
	tree    bool // summed over the process tree
	members int  // most processes summed in one sample
	port    int
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
		pw := newProcWatch(fs, p.cfg.ProcRoot, w)
		procs = append(procs, pw)
		st := p.statusOf(pw.key())
		st.name, st.tree, st.port = pw.name, w.Tree, w.Port
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
			if pw.prev != nil {
				st := p.statusOf(pw.key())
				p.mu.Lock()
				st.members = max(st.members, len(pw.prev.pids))
				p.mu.Unlock()
			}
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
		if st.port > 0 {
			s += fmt.Sprintf(" on port %d", st.port)
		}
		s += fmt.Sprintf(": %d samples", st.records)
		if st.tree && st.members > 1 {
			s += fmt.Sprintf(", summed over its process tree (up to %d processes: it and its children)", st.members)
		}
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

// procWatch samples one process, or one process tree.
type procWatch struct {
	fs    procfs.FS
	root  string // procfs mount point
	w     Watch
	name  string
	cg    *cgroupCPU
	notes []string
	prev  *treeRaw
}

func (pw *procWatch) key() string { return fmt.Sprintf("%s %d", pw.w.Role, pw.w.PID) }

func newProcWatch(fs procfs.FS, root string, w Watch) *procWatch {
	pw := &procWatch{fs: fs, root: root, w: w}
	pr, err := fs.Proc(w.PID)
	if err != nil {
		return pw
	}
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

// procRaw is one reading of one process's cumulative counters and gauges.
type procRaw struct {
	utime, stime   uint
	threads        int
	rss            int64
	fds, sockets   int
	fdLimit        int64
	io             *procfs.ProcIO
	vol, invol     uint64
	waitNS, slices uint64
	schedOK        bool
}

// treeRaw is one reading of every member of a watch, the root first.
type treeRaw struct {
	t     time.Time
	pids  []int
	procs map[int]*procRaw
	cg    *cgroupRaw
}

func (pw *procWatch) read(now time.Time) (*treeRaw, error) {
	pids := []int{pw.w.PID}
	if pw.w.Tree {
		t, err := Tree(pw.root, pw.w.PID)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pw.w.PID, err)
		}
		pids = t
	}
	tr := &treeRaw{t: now, procs: make(map[int]*procRaw, len(pids))}
	for i, pid := range pids {
		r, err := pw.readOne(pid)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("pid %d: %w", pid, err)
			}
			continue // a member that exited since the tree was listed
		}
		tr.pids = append(tr.pids, pid)
		tr.procs[pid] = r
	}
	if pw.cg != nil {
		if c, err := pw.cg.read(); err == nil {
			tr.cg = &c
		}
	}
	return tr, nil
}

func (pw *procWatch) readOne(pid int) (*procRaw, error) {
	pr, err := pw.fs.Proc(pid)
	if err != nil {
		return nil, err
	}
	st, err := pr.Stat()
	if err != nil {
		return nil, err
	}
	r := &procRaw{utime: st.UTime, stime: st.STime, threads: st.NumThreads, rss: int64(st.ResidentMemory())}
	if pid == pw.w.PID && pw.name == "" {
		pw.name = st.Comm
	}
	if status, err := pr.NewStatus(); err == nil {
		r.vol, r.invol = status.VoluntaryCtxtSwitches, status.NonVoluntaryCtxtSwitches
	}
	r.fds, r.sockets = countFDs(filepath.Join(pw.root, strconv.Itoa(pid), "fd"))
	if lim, err := pr.Limits(); err == nil && lim.OpenFiles > 0 && lim.OpenFiles < 1<<62 {
		r.fdLimit = int64(lim.OpenFiles)
	}
	if io, err := pr.IO(); err == nil {
		r.io = &io
	}
	// /proc/PID/schedstat is the main thread's alone: sum the threads.
	if threads, err := pw.fs.AllThreads(pid); err == nil {
		for _, th := range threads {
			if ss, err := th.Schedstat(); err == nil {
				r.waitNS += ss.WaitingNanoseconds
				r.slices += ss.RunTimeslices
				r.schedOK = true
			}
		}
	}
	return r, nil
}

// maxFDLinks bounds the descriptors read per process and sample to tell
// sockets from files: a readlink each, so a server holding more than 65,536
// connections is counted exactly but its sockets only among the first.
const maxFDLinks = 1 << 16

// countFDs counts the open descriptors in dir (/proc/PID/fd) and how many
// of them are sockets.
func countFDs(dir string) (fds, sockets int) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, 0
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	for i, n := range names {
		if i >= maxFDLinks {
			break
		}
		if l, err := os.Readlink(filepath.Join(dir, n)); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	return len(names), sockets
}

// sample reads the process (tree) and returns the record of the interval
// since the previous reading (nil on the first).
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
	s := &evidence.ProcessSample{Name: pw.name}
	if pw.w.Tree {
		s.Processes, s.PIDs = len(cur.pids), cur.pids
	}
	// Gauges: every member now. Counters: the members read at both ends
	// (a worker started during the interval counts from its next one).
	var utime, stime uint
	var vol, invol, waitNS, slices uint64
	var rb, wb, rc, wc uint64
	ioOK, schedOK := false, false
	for _, pid := range cur.pids {
		c := cur.procs[pid]
		s.Threads += c.threads
		s.RSSBytes += c.rss
		s.FDs += c.fds
		s.Sockets += c.sockets
		s.FDLimit += c.fdLimit
		if c.fdLimit > 0 {
			s.FDMaxShare = max(s.FDMaxShare, float64(c.fds)/float64(c.fdLimit))
		}
		p := prev.procs[pid]
		if p == nil {
			continue
		}
		utime += sub(p.utime, c.utime)
		stime += sub(p.stime, c.stime)
		vol += sub64(p.vol, c.vol)
		invol += sub64(p.invol, c.invol)
		if p.io != nil && c.io != nil {
			ioOK = true
			rb += sub64(p.io.ReadBytes, c.io.ReadBytes)
			wb += sub64(p.io.WriteBytes, c.io.WriteBytes)
			rc += sub64(p.io.RChar, c.io.RChar)
			wc += sub64(p.io.WChar, c.io.WChar)
		}
		if p.schedOK && c.schedOK {
			schedOK = true
			waitNS += sub64(p.waitNS, c.waitNS)
			slices += sub64(p.slices, c.slices)
		}
	}
	s.UserCores = float64(utime) / userHZ / dt
	s.SystemCores = float64(stime) / userHZ / dt
	s.CPUCores = s.UserCores + s.SystemCores
	s.VoluntaryCtxSwitchesPerSec = per(0, vol)
	s.InvoluntaryCtxSwitchesPerSec = per(0, invol)
	if ioOK {
		r, w, c, x := per(0, rb), per(0, wb), per(0, rc), per(0, wc)
		s.ReadBytesPerSec, s.WriteBytesPerSec, s.RCharPerSec, s.WCharPerSec = &r, &w, &c, &x
	}
	if schedOK {
		wait := float64(waitNS) / 1e9
		w := wait / dt
		s.RunQueueWaitPerSec = &w
		if slices > 0 {
			ms := wait * 1000 / float64(slices)
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
		T: now.UnixMilli(), Role: pw.w.Role, PID: pw.w.PID, Port: pw.w.Port,
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
