package capacity

import "time"

// Phase says why a step is run.
type Phase string

// Phases of a search.
const (
	// PhaseWarmup: a short step at StartRPS so that connection pools, caches
	// and lazy initialisation are warm before anything is measured. Not judged
	// against the objective (unless it breaches hard).
	PhaseWarmup Phase = "warmup"
	// PhaseProbe: the climb (geometric steps up) or, when even the first probe
	// fails, the descent (halving) looking for a rate that passes.
	PhaseProbe Phase = "probe"
	// PhaseRefine: bisection between the last good and the first failing rate.
	PhaseRefine Phase = "refine"
	// PhaseBackoff: after a failing step, a low rate held until the target
	// has drained its backlog, so that the next measurement starts clean.
	// Not judged against the objective.
	PhaseBackoff Phase = "backoff"
)

// Measured reports whether steps of this phase are judged against the SLO.
func (p Phase) Measured() bool { return p == PhaseProbe || p == PhaseRefine }

// StopReason says why the search ended.
type StopReason string

// Stop reasons.
const (
	StopBreach      StopReason = "breach"       // a step missed the p99 or error objective
	StopPlateau     StopReason = "plateau"      // achieved throughput fell clearly below offered
	StopMaxRate     StopReason = "max-rate"     // MaxRPS was met within the objective
	StopMaxDuration StopReason = "max-duration" // time ran out before the climb ended
	StopInterrupted StopReason = "interrupted"  // Interrupt was called before the climb ended
	StopLoadgen     StopReason = "loadgen"      // the generator, not the target, was the limit
)

// Verdict is how a step was judged.
type Verdict string

// Verdicts.
const (
	VerdictPass    Verdict = "pass"
	VerdictBreach  Verdict = "breach"  // p99 above the objective, errors above it, or aborted
	VerdictPlateau Verdict = "plateau" // within the objective but achieved < plateauRatio x offered
	VerdictLoadgen Verdict = "loadgen" // the generator could not produce or time the load
)

// Decision is the search's answer to one window of the current step.
type Decision int

// Decisions.
const (
	// Continue: keep the step running.
	Continue Decision = iota
	// StepDone: the step has enough stable windows; end it and call EndStep.
	StepDone
	// Abort: a hard breach; stop sending now and call EndStep.
	Abort
)

func (d Decision) String() string {
	switch d {
	case Continue:
		return "continue"
	case StepDone:
		return "step-done"
	case Abort:
		return "abort"
	}
	return "decision(?)"
}

// Plan is the next step to run.
type Plan struct {
	Index int // 0-based, in the order steps are run
	Phase Phase
	RPS   float64 // offered rate, requests per second
	// Duration is the longest the step may run: the hunt ends it when Window
	// says StepDone or Abort, and at the latest after Duration.
	Duration time.Duration
	// MinDuration is the shortest it will run unless aborted.
	MinDuration time.Duration
}

// WindowStat is one window (normally one second) of the current step.
type WindowStat struct {
	Duration     time.Duration // 0 means one second
	OfferedRPS   float64       // arrivals the schedule intended, per second
	AchievedRPS  float64       // responses completed, per second
	Requests     int64         // responses completed (errors included)
	Errors       int64         // CONTRACT.md §3 errors
	P50, P99     time.Duration // latency from the intended send time
	Max          time.Duration
	InflightMean float64 // mean requests in flight, 0 when not measured
}

// StepResult is a whole step, merged by the hunt from its windows.
type StepResult struct {
	OfferedRPS   float64 // 0 means the plan's rate
	AchievedRPS  float64
	Duration     time.Duration
	Requests     int64 // responses completed (errors included)
	Errors       int64
	P50, P90     time.Duration
	P99, Max     time.Duration
	MeanLatency  time.Duration // 0 when not measured (P50 stands in)
	InflightMean float64       // measured mean in flight, 0 when not measured
	Late         int64         // sent more than 1 ms after the intended time
	Dropped      int64         // never sent: the in-flight bound was reached

	// The generator's own health.
	LoadgenCPU      float64       // cores the generator used (mean over the step)
	LoadgenCPULimit float64       // cores it may use (GOMAXPROCS or cgroup quota); 0 unknown
	LagP99          time.Duration // 99th percentile of schedule lag (actual - intended send)
	// ServiceP99 is the 99th percentile of service time (actual send to
	// response): what the target took, without the generator's lag. 0 when
	// not measured.
	ServiceP99 time.Duration
}

// ErrorRate is Errors/Requests (0 without requests).
func (r StepResult) ErrorRate() float64 {
	if r.Requests <= 0 {
		return 0
	}
	return float64(r.Errors) / float64(r.Requests)
}

// StepRecord is one step as run and judged.
type StepRecord struct {
	Plan    Plan
	Result  StepResult
	Verdict Verdict
	Reason  string // why the verdict, with the deciding numbers
	Aborted bool   // ended early on a hard breach
	// LowSample: the step ended with fewer than MinRequests requests (its
	// latency was clearly within the objective, or MaxStep was reached).
	LowSample bool
}

// Result is what the search found so far.
type Result struct {
	// MaxRPS is the highest measured rate that met the objective; nil when
	// none did or when the generator was the limit.
	MaxRPS *float64
	// FirstFailingRPS is the lowest measured rate that missed it; nil when
	// none did.
	FirstFailingRPS *float64
	// Uncertainty is FirstFailingRPS/MaxRPS - 1 when both are known: the
	// relative resolution actually reached.
	Uncertainty float64
	// Stop says why the climb ended (breach, plateau, max-rate, loadgen), or
	// why the search ended before the climb did (max-duration, interrupted).
	Stop StopReason
	// Cut is max-duration or interrupted when the refinement was cut short
	// after the climb ended (Uncertainty then exceeds the resolution); empty
	// otherwise.
	Cut StopReason
	// Done is true once Next has returned false.
	Done  bool
	Steps []StepRecord
	Notes []string // caveats a reader should see
}
