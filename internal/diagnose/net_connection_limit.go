package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of net.connection-limit.
const (
	// netDropShare: the kernel dropping or overflowing at least this share
	// of the arrivals at the listen queue is a connection limit (1% is the
	// default error objective: that many lost connections break it, or
	// cost a SYN retransmission each).
	netDropShare = 0.01
	// netErrShare: refused or reset connections on at least this share of
	// requests (the default error objective).
	netErrShare = 0.01
	// netRise: the signal at the knee is at least this multiple of its
	// low-load value: it rises with load.
	netRise = 3.0
	// netFDShare: descriptors at least this share of the soft limit
	// (RLIMIT_NOFILE) at the knee: the next accept fails with EMFILE.
	netFDShare = 0.9
	// synRetryMS is Linux's initial SYN retransmission timeout
	// (TCP_TIMEOUT_INIT, 1 s, RFC 6298 §2.1): a connection whose SYN was
	// dropped completes about this much later, so a p99 at or above it
	// with a median far below is the signature of dropped SYNs.
	synRetryMS = 1000.0
	// synTailMedian: the median at most this share of synRetryMS for the
	// tail to be retransmissions rather than a uniformly slow target (a
	// queue long enough to put the p99 past a second has its median in the
	// hundreds of milliseconds too).
	synTailMedian = 0.25
	// netMinLimit: a connection cap estimated below 1.5 connections in
	// service is a starved target, not a measured cap; it is left out.
	netMinLimit = 1.5
	// netFrontIdleCores: the process that loses the connections uses less
	// CPU than this at the knee. A process that refuses connections
	// because it is overloaded is CPU-bound, at least one core busy (a
	// single-threaded event loop, such as one nginx worker, saturates at
	// one core); below half a core it is refusing them by a cap or a
	// limit, which is what this finding names.
	netFrontIdleCores = 0.5
)

type netConnectionLimit struct{}

var _ Rule = netConnectionLimit{}

func (netConnectionLimit) Kind() string { return "net.connection-limit" }

// connLoss is the evidence of lost connections at one step.
type connLoss struct {
	arrivals  float64 // per second
	drops     float64 // listen-queue drops and overflows per second
	dropShare float64 // of arrivals
	// dropSig: the drops rose with load and the generator's requests
	// show it (the SYN-retransmission tail). The counters are the whole
	// network namespace's; without the tail they may be a neighbour's.
	dropSig  bool
	synTail  bool
	errShare float64 // refused + reset per request
	errSig   bool
	fds      float64
	fdLimit  float64
	fdSig    bool
	p50, p99 float64
	decisive []string
}

func (c connLoss) any() bool { return c.dropSig || c.errSig || c.fdSig }

// clConnLoss reads the step's evidence of refused, reset or dropped
// connections against low load.
func (in *Input) clConnLoss(step int) connLoss {
	var c connLoss
	fl := in.clLoadAt(step)
	var bl clLoad
	var bm clMachine
	if b := in.BaselineStep(); b >= 0 && b != step {
		bl = in.clLoadAt(b)
		bm = in.clMachineAt(b)
	}
	c.arrivals = fl.arrivalRPS()
	if c.arrivals <= 0 && step >= 0 && step < len(in.Steps) {
		c.arrivals = in.Steps[step].OfferedRPS
	}
	// The step's own percentiles (over all its requests): retransmitted
	// SYNs come in bursts, so a few windows hold the tail.
	c.p50, c.p99 = fl.P50Med, fl.P99Med
	if step >= 0 && step < len(in.Steps) && in.Steps[step].Latency.P99 > 0 {
		c.p50, c.p99 = in.Steps[step].Latency.P50, in.Steps[step].Latency.P99
	}
	c.synTail = c.p99 >= synRetryMS && c.p50 <= synTailMedian*synRetryMS

	fm := in.clMachineAt(step)
	if fm.N > 0 && c.arrivals > 0 {
		c.drops = fm.listenLoss()
		c.dropShare = c.drops / c.arrivals
		baseShare := 0.0
		if bm.N > 0 && bl.arrivalRPS() > 0 {
			baseShare = bm.listenLoss() / bl.arrivalRPS()
		}
		rose := c.dropShare >= netDropShare && c.dropShare >= netRise*baseShare
		c.dropSig = rose && c.synTail
		switch {
		case c.dropSig:
		case rose:
			c.decisive = append(c.decisive, fmt.Sprintf("listen-queue drops %.1f/s (%s of arrivals) but no request waited for a SYN retransmission (p99 %.0f ms, median %.0f ms): not this target's connections", c.drops, pct(c.dropShare), c.p99, c.p50))
		default:
			c.decisive = append(c.decisive, fmt.Sprintf("listen-queue drops %.1f/s (%s of arrivals)", c.drops, pct(c.dropShare)))
		}
	} else {
		c.decisive = append(c.decisive, "no TCP counters of the machine")
	}

	if fl.Requests > 0 {
		c.errShare = float64(fl.connErrors()) / float64(fl.Requests)
	}
	baseErr := 0.0
	if bl.Requests > 0 {
		baseErr = float64(bl.connErrors()) / float64(bl.Requests)
	}
	c.errSig = c.errShare >= netErrShare && c.errShare >= netRise*baseErr
	if !c.errSig {
		c.decisive = append(c.decisive, fmt.Sprintf("refused or reset connections %s of requests", pct(c.errShare)))
	}

	if tgt := netFront(in, step); tgt.N > 0 && tgt.FDLimit > 0 {
		c.fds, c.fdLimit = tgt.FDs, tgt.FDLimit
		c.fdSig = tgt.FDs/tgt.FDLimit >= netFDShare
		if !c.fdSig {
			c.decisive = append(c.decisive, fmt.Sprintf("descriptors %.0f of %.0f", tgt.FDs, tgt.FDLimit))
		}
	}
	return c
}

// why is one line saying what was lost.
func (c connLoss) why() string {
	var parts []string
	if c.dropSig {
		parts = append(parts, fmt.Sprintf("the kernel dropped %.0f connections/s at the listen queue (%s of arrivals) and requests waited for SYN retransmissions (p99 %.0f ms, median %.0f ms)", c.drops, pct(c.dropShare), c.p99, c.p50))
	}
	if c.errSig {
		parts = append(parts, fmt.Sprintf("%s of requests were refused or reset", pct(c.errShare)))
	}
	if c.fdSig {
		parts = append(parts, fmt.Sprintf("the target held %.0f of its %.0f descriptors", c.fds, c.fdLimit))
	}
	return strings.Join(parts, "; ")
}

func (r netConnectionLimit) Check(in *Input) Result {
	focus := in.FocusStep()
	if focus < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	fl := in.clLoadAt(focus)
	if fl.Requests == 0 && fl.Arrivals == 0 {
		return Result{RuledOut: "could not check: no requests at the knee"}
	}
	rate := in.Steps[focus].OfferedRPS
	c := in.clConnLoss(focus)
	if !c.any() {
		return Result{RuledOut: fmt.Sprintf("no connection was lost at %.0f req/s: %s", rate, strings.Join(c.decisive, "; "))}
	}
	resource := "network"
	if c.fdSig {
		resource = "fd"
	}
	f := report.Finding{Kind: r.Kind(), Locus: report.Locus{Resource: resource}}
	if px := in.procStats(evidence.RoleProxy, focus); px.N > 0 {
		// The clients connect to the proxy, not to the target behind it:
		// connections they lose are the proxy's.
		f.Locus.Process = px.Name
	} else if tgt := in.procStats(evidence.RoleTarget, focus); tgt.N > 0 && clIsProxy(tgt.Name) {
		f.Locus.Process = tgt.Name
	}
	// Impact: the share of requests the lost connections hit: failed, or
	// delayed by a retransmission (dropped SYNs are retried, so drops per
	// arrival can exceed one; the share is capped at all requests).
	impact := 0.0
	if c.errSig {
		impact = c.errShare
	}
	if c.dropSig {
		impact = math.Max(impact, c.dropShare)
	}
	if c.fdSig && impact == 0 {
		impact = c.errShare
	}
	impact = clamp01(impact)
	f.Evidence = []report.Evidence{{Source: "loadgen", What: "share of requests hit by lost connections at the knee (refused, reset, or SYNs dropped per arrival)", Value: round3(impact), Unit: "ratio"}}
	conf := 0.4
	if c.dropSig {
		// Two agreeing signals: the kernel's counters and the requests'
		// retransmission tail.
		conf += 0.4
		f.Evidence = append(f.Evidence,
			report.Evidence{Source: "proc", What: "connections dropped or overflowed at the listen queue at the knee", Value: round1(c.drops), Unit: "conn/s"},
			report.Evidence{Source: "loadgen", What: fmt.Sprintf("p99 latency at the knee (median %.0f ms): the %.0f ms SYN retransmission", c.p50, synRetryMS), Value: round1(c.p99), Unit: "ms"})
	}
	if c.errSig {
		conf += 0.2
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: fmt.Sprintf("requests refused or reset at the knee (refused %d, reset %d)", fl.Classes[clClassRefused], fl.Classes[clClassReset]), Value: round3(c.errShare), Unit: "ratio"})
	}
	if c.fdSig {
		conf += 0.2
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: "target's open descriptors against its limit at the knee", Value: round3(c.fds / c.fdLimit), Unit: "ratio"})
	}
	if front := netFront(in, focus); front.N > 0 && front.CPUCores < netFrontIdleCores {
		// Connections lost while the process taking them idles: a cap,
		// not an overload.
		conf += 0.1
		f.Evidence = append(f.Evidence, report.Evidence{Source: "proc", What: fmt.Sprintf("CPU of %s, which takes the connections, at the knee (below %.1f: not overloaded, refusing by a limit)", front.Name, netFrontIdleCores), Value: round3(front.CPUCores), Unit: "cores"})
	}
	// The limit: a descriptor limit is known; a connection cap is the
	// target's in-service concurrency by Little's law.
	if c.fdSig {
		f.Locus.Limit = int(c.fdLimit)
	} else if e, _, ok := estimateConcurrency(in); ok && e.n >= netMinLimit {
		// Reported only when the estimate says the target was busy: when
		// dropped connections wait a second to retry, the target starves
		// and the product measures that, not the cap.
		f.Locus.Limit = int(math.Round(e.n))
		f.Evidence = append(f.Evidence, report.Evidence{Source: "loadgen", What: "connections in service by Little's law (saturated throughput x low-load service time)", Value: round3(e.n), Unit: "connections"})
	}
	where := "the target"
	if f.Locus.Process != "" {
		where = f.Locus.Process + " in front of the target"
	}
	if c.fdSig {
		f.Title = fmt.Sprintf("%s runs out of file descriptors (%.0f of %.0f) at %.0f req/s", where, c.fds, c.fdLimit, rate)
		f.Recommendation = fmt.Sprintf("Raise the descriptor limit of %s (ulimit -n / LimitNOFILE=, now %.0f) and look for connections or files left open; reuse connections (keep-alive) so each request does not take a descriptor.", where, c.fdLimit)
	} else {
		lim := ""
		if f.Locus.Limit > 0 {
			lim = fmt.Sprintf(" (about %d connections served at once)", f.Locus.Limit)
		}
		f.Title = fmt.Sprintf("Connections refused or dropped by %s at %.0f req/s%s", where, rate, lim)
		f.Recommendation = fmt.Sprintf("%s loses connections under load%s: %s. Raise its connection cap (max connections, worker_connections, MaxClients) and its listen backlog (the listen() backlog, net.core.somaxconn, net.ipv4.tcp_max_syn_backlog), and let clients reuse connections (HTTP keep-alive) so each request does not need a new one.", where, lim, c.why())
	}
	// Lost connections broke the objective when they failed requests
	// beyond it or put SYN retransmissions into the p99.
	broke := c.dropSig || fl.errorRate() > in.SLO.ErrorRate
	f.Impact = round3(impact)
	f.Confidence = round3(math.Min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: broke && in.Breached()}}}
}

// netFront is the process the clients connect to over a step: the proxy on
// the target's port when discovery found one in front of the target, else
// the target.
func netFront(in *Input, step int) procStats {
	if px := in.procStats(evidence.RoleProxy, step); px.N > 0 {
		return px
	}
	return in.procStats(evidence.RoleTarget, step)
}
