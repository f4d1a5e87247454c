package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of io.disk.
const (
	// ioPressure: PSI io "some" at least this share of the time (tasks
	// stalled on I/O a fifth of the time) at the knee. The kernel's PSI
	// documentation treats sustained "some" pressure of 10-20% as the
	// point where latency-sensitive work is hurt; 20% keeps the noise of
	// other processes' occasional flushes out.
	ioPressure = 0.20
	// ioIOWait: the machine's CPUs idle waiting for I/O at least this
	// share of the time (the older signal, for kernels without PSI).
	ioIOWait = 0.10
	// ioRise: the pressure at the knee is at least this multiple of its
	// low-load value: it grew with the load.
	ioRise = 2.0
	// ioTargetBytes: the target itself moves at least this many storage
	// bytes per second at the knee (1 MiB/s: 256 pages, a few hundred
	// synchronous writes), so the pressure is its own and not a
	// neighbour's.
	ioTargetBytes = 1 << 20
	// ioWaitersShare: at least this share of the application's goroutines
	// in file system calls (sync, write, rename) at the knee means requests
	// wait on the disk.
	ioWaitersShare = 0.3
	// ioLimitingShare: requests spend at least this share of their time
	// waiting on the disk for it to be what broke the objective.
	ioLimitingShare = 0.3
	// ioPageBytes: at least one page (4 KiB) of storage I/O per request:
	// every request reaches the disk.
	ioPageBytes = 4096
	// ioThreadGrowth and ioThreadMin: the target's threads at the knee at
	// least this multiple of low load and this many more: blocking system
	// calls each hold a thread (Go starts one per blocked syscall).
	ioThreadGrowth = 2.0
	ioThreadMin    = 8
	// ioSpeedup is the improvement the gain estimate assumes for the disk
	// wait (halving it, as batching synchronous writes at least does; stated
	// in the method).
	ioSpeedup = 2.0
)

type ioDisk struct{}

var _ Rule = ioDisk{}

func (ioDisk) Kind() string { return "io.disk" }

// diskReading is the disk evidence at one step against low load.
type diskReading struct {
	m, bm      clMachine
	pio        clProcIO
	pressure   float64 // PSI io some, else iowait (share of time)
	basePress  float64
	pressWhat  string
	pressured  bool
	targetIO   bool
	waiters    clWaiters
	waitersOK  bool
	fileShare  float64 // share of request goroutines in file system calls
	fileFunc   string
	fileCount  int64
	cpu        clWaiters
	cpuOK      bool
	cpuFile    float64 // share of the requests' CPU in file system calls
	cpuFunc    string
	perReq     float64 // storage bytes per request
	measurable bool    // some disk evidence was recorded
}

func (in *Input) clDisk(step int) diskReading {
	var d diskReading
	d.m = in.clMachineAt(step)
	if b := in.BaselineStep(); b >= 0 && b != step {
		d.bm = in.clMachineAt(b)
	}
	switch {
	case d.m.PSI:
		d.pressure, d.basePress, d.pressWhat = d.m.PSIIOSome, d.bm.PSIIOSome, "PSI io some"
		d.pressured = d.pressure >= ioPressure && d.pressure >= ioRise*d.basePress
	case d.m.N > 0:
		d.pressure, d.basePress, d.pressWhat = d.m.IOWait, d.bm.IOWait, "CPU iowait"
		d.pressured = d.pressure >= ioIOWait && d.pressure >= ioRise*d.basePress
	}
	d.pio = in.clProcIOAt(evidence.RoleTarget, step)
	d.targetIO = d.pio.Measured && d.pio.ReadBytes+d.pio.WriteBytes >= ioTargetBytes
	d.waiters, d.waitersOK = in.clGoroutineWaiters(step)
	if d.waitersOK {
		d.fileShare = d.waiters.share(clWaitFile)
		d.fileFunc, d.fileCount = d.waiters.top(clWaitFile)
	}
	d.cpu, d.cpuOK = in.clCPUWork(step)
	if d.cpuOK {
		d.cpuFile = d.cpu.share(clWaitFile)
		d.cpuFunc, _ = d.cpu.top(clWaitFile)
	}
	if rps := in.clLoadAt(step).rps(); rps > 0 && d.pio.Measured {
		d.perReq = (d.pio.ReadBytes + d.pio.WriteBytes) / rps
	}
	d.measurable = d.m.N > 0 || d.pio.Measured || d.waitersOK || d.cpuOK
	return d
}

// diskVerdict scores the disk evidence of a step: conf is the confidence
// io.disk would report, impact the share of the requests' time it explains.
type diskVerdict struct {
	d        diskReading
	waiting  bool // something shows requests waiting on storage
	own      bool // the target itself does the storage I/O
	queue    bool // requests queued at the knee while the CPU was not the limit
	threads  bool
	conf     float64
	impact   float64
	fn       string
	entries  []profilesum.EntryCost // the file waits (or file-system CPU) by handler
	decisive string
}

func (in *Input) clDiskVerdict(step int) diskVerdict {
	v := diskVerdict{d: in.clDisk(step), conf: 0.1}
	d := v.d
	gor := d.waitersOK && d.fileShare >= ioWaitersShare
	cpuFile := d.cpuOK && d.cpuFile >= ioWaitersShare
	if gor {
		v.conf += 0.3
		v.impact, v.fn, v.entries = d.fileShare, d.fileFunc, d.waiters.entries(clWaitFile)
	}
	if cpuFile {
		v.conf += 0.3
		if v.fn == "" {
			v.impact, v.fn, v.entries = d.cpuFile, d.cpuFunc, d.cpu.entries(clWaitFile)
		}
	}
	if d.pressured {
		v.conf += 0.2
		if v.impact == 0 {
			v.impact = d.pressure
		}
	}
	v.waiting = gor || cpuFile || d.pressured
	v.own = d.targetIO || (d.pio.Measured && d.perReq >= ioPageBytes)
	if v.own {
		v.conf += 0.2
	}
	if e, _, ok := estimateConcurrency(in); ok && e.focus == step && e.queue >= concQueueFactor {
		// Requests queued. On a CPU-bound target that is the CPU's doing,
		// unless the profile shows the CPU the requests get going into
		// file system calls: then the disk paces them.
		bound := false
		if sat, _, ok := cpuSaturation(in, step); ok {
			bound, _ = cpuBound(in, step, sat)
		}
		if !bound || gor || cpuFile {
			v.queue = true
			v.conf += 0.15
		}
	}
	if b := in.BaselineStep(); b >= 0 && b != step {
		bt := in.clProcIOAt(evidence.RoleTarget, b).Threads
		if bt > 0 && d.pio.Threads >= ioThreadGrowth*bt && d.pio.Threads-bt >= ioThreadMin {
			v.threads = true
			v.conf += 0.05
		}
	}
	v.conf = math.Min(v.conf, 0.95)
	var why []string
	if d.pressWhat != "" {
		need := ioIOWait
		if d.m.PSI {
			need = ioPressure
		}
		why = append(why, fmt.Sprintf("%s %s (low load %s; needs %s)", d.pressWhat, pct(d.pressure), pct(d.basePress), pct(need)))
	}
	if d.pio.Measured {
		why = append(why, fmt.Sprintf("the target moved %.2f MiB/s to and from storage (%.1f KiB per request)", (d.pio.ReadBytes+d.pio.WriteBytes)/(1<<20), d.perReq/1024))
	}
	if d.cpuOK {
		why = append(why, fmt.Sprintf("%s of the requests' CPU in file system calls", pct(d.cpuFile)))
	}
	if d.waitersOK {
		why = append(why, fmt.Sprintf("%s of request goroutines in file system calls", pct(d.fileShare)))
	}
	v.decisive = strings.Join(why, "; ")
	return v
}

// fires reports whether the verdict names io.disk.
func (v diskVerdict) fires() bool {
	return v.waiting && (v.own || (v.d.waitersOK && v.d.fileShare >= ioWaitersShare)) && v.conf >= MinConfidence
}

// clDiskBusy reports whether requests wait on the disk at a step (what
// io.disk would report), with the numbers.
func (in *Input) clDiskBusy(step int) (bool, string) {
	v := in.clDiskVerdict(step)
	if !v.fires() {
		return false, ""
	}
	return true, v.decisive
}

func (r ioDisk) Check(in *Input) Result {
	focus := in.FocusStep()
	if focus < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	v := in.clDiskVerdict(focus)
	d := v.d
	if !d.measurable {
		return Result{RuledOut: "could not check: no machine, process I/O or profile evidence (run the target on this machine or give --pid; Go targets: expose /debug/pprof)"}
	}
	rate := in.Steps[focus].OfferedRPS
	if !v.fires() {
		if v.waiting && v.own {
			return Result{RuledOut: fmt.Sprintf("storage was busy at %.0f req/s (%s) but requests did not queue for it with the CPU idle: the disk is not what limits", rate, v.decisive)}
		}
		return Result{RuledOut: fmt.Sprintf("requests do not wait on the disk at %.0f req/s: %s", rate, v.decisive)}
	}
	ep := in.dominantEndpoint(focus)
	if e, entry := in.entryEndpoint(v.entries); entry != "" {
		ep = e // the handler waiting on the file system
	}
	f := report.Finding{Kind: r.Kind(), Locus: report.Locus{Resource: "disk", Endpoint: ep, Function: v.fn}}
	first := report.Evidence{Source: "proc", What: "share of time tasks stalled on I/O at the knee (" + d.pressWhat + ")", Value: round3(v.impact), Unit: "ratio"}
	switch {
	case d.waitersOK && d.fileShare >= ioWaitersShare:
		first = report.Evidence{Source: "pprof", What: "share of request goroutines in file system calls at the knee", Value: round3(v.impact), Unit: "ratio"}
	case d.cpuOK && d.cpuFile >= ioWaitersShare:
		first = report.Evidence{Source: "pprof", What: "share of the requests' CPU samples in file system calls (open, write, fsync, rename) at the knee", Value: round3(v.impact), Unit: "ratio"}
	}
	f.Evidence = []report.Evidence{first}
	if d.pressWhat != "" {
		f.Evidence = append(f.Evidence,
			report.Evidence{Source: "proc", What: d.pressWhat + " at the knee (share of time)", Value: round3(d.pressure), Unit: "ratio"},
			report.Evidence{Source: "proc", What: d.pressWhat + " at low load", Value: round3(d.basePress), Unit: "ratio"})
	}
	if d.pio.Measured {
		f.Evidence = append(f.Evidence,
			report.Evidence{Source: "proc", What: "target storage writes at the knee", Value: round1(d.pio.WriteBytes / 1024), Unit: "KiB/s"},
			report.Evidence{Source: "proc", What: "target storage reads at the knee", Value: round1(d.pio.ReadBytes / 1024), Unit: "KiB/s"},
			report.Evidence{Source: "proc", What: "target storage bytes per request at the knee", Value: round1(d.perReq), Unit: "bytes"})
	}
	if v.queue {
		if e, _, ok := estimateConcurrency(in); ok {
			f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "mean service time at the knee against low load (the CPU not the limit)", Value: round1(e.queue), Unit: "x"})
		}
	}
	if v.threads {
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "target threads at the knee (each blocking system call holds one)", Value: round1(d.pio.Threads), Unit: "threads"})
	}
	where := "the target"
	if f.Locus.Function != "" {
		where = f.Locus.Function
	}
	f.Title = fmt.Sprintf("Requests wait on the disk in %s at %.0f req/s", where, rate)
	f.Recommendation = fmt.Sprintf("%s waits on synchronous storage I/O. Batch the writes of concurrent requests into one write and one fsync (group commit), "+
		"append to one open file instead of creating, syncing and renaming a file per request, make the write asynchronous where per-request durability is not required, "+
		"or move the data to faster storage.", where)
	limiting := in.Breached() && v.queue && v.impact >= ioLimitingShare
	if limiting {
		f.ExpectedGain = amdahlGain(in, math.Min(v.impact, 0.99), ioSpeedup, "waiting on the disk")
	}
	f.Impact = round3(clamp01(v.impact))
	f.Confidence = round3(v.conf)
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}
