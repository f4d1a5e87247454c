package capacity

import (
	"fmt"
	"math"
	"time"
)

// Numbers that steer the search. docs/capacity.md explains each.
const (
	// warmupDuration: two windows warm connection pools and caches; longer
	// warm-ups belong to the target's own readiness, not to the search.
	warmupDuration = 2 * time.Second
	// fastFactor multiplies the rate while the last step used less than
	// headroomFraction of the latency objective: doubling finds the order of
	// magnitude in log2(capacity/start) steps (issue 5 brief: "2x early").
	fastFactor = 2.0
	// slowFactor multiplies it once latency has used headroomFraction of the
	// objective: the target is near its bend, and a smaller step overshoots
	// (hammers) less past the breach (issue 5 brief: "then 1.5x").
	slowFactor = 1.5
	// headroomFraction of the SLO p99 separates "far from" and "near" it.
	headroomFraction = 0.5
	// plateauRatio: achieved below 90% of offered is a plateau (issue 5
	// brief), judged on the windows after the first (whose responses to
	// requests sent late in the window are still in flight) ...
	plateauRatio = 0.9
	// plateauSigmas: ... and only when the shortfall exceeds 3 standard
	// deviations of a Poisson count of the offered requests, so that random
	// arrival schedules and window-boundary jitter at low rates do not read
	// as a plateau (3σ: a false plateau in about 1 step of 700).
	plateauSigmas = 3.0
	// hardLatencyFactor, hardErrorFactor, hardWindows: a window whose p99 is
	// above 4x the SLO, or whose error rate is above 5x the objective, is a
	// hard breach; two in a row end the step early (issue 5 brief). Two, so
	// one GC pause or one reconnect does not abort a step.
	hardLatencyFactor = 4.0
	hardErrorFactor   = 5.0
	hardWindows       = 2
	// hardErrorFloor is the lowest error rate that counts as a hard breach
	// (with SLOErrorRate 0, 5x0 would make a single error abort): 1%, the
	// contract's default error objective (CONTRACT.md §1).
	hardErrorFloor = 0.01
	// hardStallRatio: a window completing fewer than half of what it offered
	// is stalled (a stuck target completes nothing, so its p99 cannot show
	// the breach); it counts as a hard window.
	hardStallRatio = 0.5
	// hardMinRequests: a window judged hard must have offered this many
	// requests, so that a p99 or an error rate means something.
	hardMinRequests = 10
	// stabilityWindows, driftTolerance: a step is stable when neither the
	// p99 nor the in-flight mean of its last three windows moved
	// monotonically by more than 20% (queue growth or a draining backlog
	// does; noise seldom moves three windows one way by that much).
	stabilityWindows = 3
	driftTolerance   = 0.2
	// clearPassZ: a step with fewer than MinRequests requests may end when
	// even its largest latency, inflated by clearPassZ relative standard
	// errors of a p99 estimate from that many samples (p99RelErr), is within
	// the SLO and there were no errors: no sampling error of a p99 could make
	// that step fail. 2: about 98% one-sided confidence.
	clearPassZ = 2.0
	// flatFactor: a p99 within 1.5x of the first passing step's is flat
	// (latency has not started to bend), so the climb keeps the fast factor
	// even when that flat latency is above headroomFraction of the SLO.
	flatFactor = 1.5
	// backoffShare of the failing rate is offered while the target drains;
	// the failing rate is at most fastFactor x the last good one, so this is
	// at most half a rate the target is known to sustain.
	backoffShare = 0.25
	// recoveredFraction: the backoff ends at the first window whose p99 is
	// below half the SLO (or twice the low-load p99, when that is higher)
	// without errors above the objective.
	recoveredFraction = 0.5
	// descendFactor divides the rate when even the first probe fails.
	descendFactor = 2.0
	// minRPS is the lowest rate worth measuring: below 1 req/s a step would
	// need minutes to gather a p99.
	minRPS = 1.0
)

type stage int

const (
	stageWarmup stage = iota
	stageClimb
	stageDescend
	stageRefine
	stageDone
)

// Search is the capacity search as a state machine. The hunt drives it:
//
//	for {
//		plan, ok := s.Next(elapsed)
//		if !ok { break }
//		// offer plan.RPS; after each one-second window:
//		if d := s.Window(w); d != Continue { stop the step }
//		// (or stop at plan.Duration)
//		s.EndStep(merged)
//	}
//	res := s.Result()
//
// A Search is not safe for concurrent use.
type Search struct {
	cfg   SearchConfig
	stage stage
	steps []StepRecord
	notes []string

	cur     *Plan // planned and not yet ended
	win     windowState
	backoff bool // the next step is a backoff

	climbRate float64 // the next climb rate
	lo, hi    float64 // highest passing and lowest failing measured rates (0: none)
	baseline  time.Duration
	stop, cut StopReason
	done      bool
}

// windowState accumulates the windows of the current step.
type windowState struct {
	n        int
	elapsed  time.Duration
	requests int64
	errors   int64
	max      time.Duration   // largest latency seen
	maxP99   time.Duration   // largest window p99
	p99      []time.Duration // last stabilityWindows
	inflight []float64
	hard     int // consecutive hard windows
	// offered and achieved request counts of the windows after the first
	tailOffered, tailAchieved float64
	aborted                   bool
	done                      bool // the last decision was StepDone or Abort
	recov                     bool // backoff: recovered
}

// NewSearch validates cfg and returns a search ready for its first Next.
func NewSearch(cfg SearchConfig) (*Search, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Search{cfg: cfg, climbRate: cfg.StartRPS}, nil
}

// Config returns the configuration in use, defaults filled in.
func (s *Search) Config() SearchConfig { return s.cfg }

// Next returns the next step to run, or false when the search is over.
// elapsed is the time the hunt has used so far (probes included); the plan
// never runs past MaxDuration. Calling Next again before EndStep returns the
// same plan.
func (s *Search) Next(elapsed time.Duration) (Plan, bool) {
	if s.done {
		return Plan{}, false
	}
	if s.cur != nil {
		return *s.cur, true
	}
	remaining := s.cfg.MaxDuration - elapsed
	p := Plan{Index: len(s.steps)}
	switch {
	case s.backoff:
		// a backoff is worth its time only if a measured step still fits
		if remaining < minStepFloor+s.cfg.MinStep {
			s.finish(StopMaxDuration)
			return Plan{}, false
		}
		p.Phase, p.RPS = PhaseBackoff, math.Max(minRPS/2, backoffShare*s.hi)
		p.MinDuration, p.Duration = minStepFloor, min(s.cfg.MaxStep, remaining-s.cfg.MinStep)
	case s.stage == stageWarmup:
		if remaining < warmupDuration+s.cfg.MinStep {
			s.finish(StopMaxDuration)
			return Plan{}, false
		}
		p.Phase, p.RPS = PhaseWarmup, s.cfg.StartRPS
		p.MinDuration, p.Duration = warmupDuration, warmupDuration
	default:
		if remaining < s.cfg.MinStep {
			s.finish(StopMaxDuration)
			return Plan{}, false
		}
		switch s.stage {
		case stageClimb:
			p.Phase, p.RPS = PhaseProbe, s.climbRate
		case stageDescend:
			p.Phase, p.RPS = PhaseProbe, s.hi/descendFactor
		case stageRefine:
			p.Phase, p.RPS = PhaseRefine, math.Sqrt(s.lo*s.hi)
		}
		p.MinDuration, p.Duration = s.cfg.MinStep, min(s.cfg.MaxStep, remaining)
	}
	s.cur = &p
	s.win = windowState{}
	return p, true
}

// Window feeds one window of the current step and says whether to go on.
// Windows fed without a current plan (or after the step was decided) are
// ignored and answered with the last decision.
func (s *Search) Window(w WindowStat) Decision {
	if s.cur == nil {
		return StepDone
	}
	if s.win.done {
		if s.win.aborted {
			return Abort
		}
		return StepDone
	}
	d := w.Duration
	if d <= 0 {
		d = time.Second
	}
	ws := &s.win
	ws.n++
	ws.elapsed += d
	ws.requests += max(w.Requests, 0)
	ws.errors += max(w.Errors, 0)
	ws.max = max(ws.max, w.Max, w.P99)
	ws.maxP99 = max(ws.maxP99, w.P99)
	ws.p99 = pushLast(ws.p99, w.P99)
	ws.inflight = pushLast(ws.inflight, w.InflightMean)
	if ws.n > 1 {
		ws.tailOffered += math.Max(w.OfferedRPS, 0) * d.Seconds()
		ws.tailAchieved += math.Max(achievedRPS(w, d), 0) * d.Seconds()
	}

	dec := s.decide(w, d)
	if dec != Continue {
		ws.done = true
		ws.aborted = dec == Abort
	}
	return dec
}

func pushLast[T any](xs []T, v T) []T {
	xs = append(xs, v)
	if len(xs) > stabilityWindows {
		xs = xs[len(xs)-stabilityWindows:]
	}
	return xs
}

func (s *Search) decide(w WindowStat, d time.Duration) Decision {
	ws, plan := &s.win, s.cur
	if s.hardWindow(w, d) {
		ws.hard++
	} else {
		ws.hard = 0
	}
	if plan.Phase != PhaseBackoff && ws.hard >= hardWindows {
		return Abort
	}
	if ws.elapsed >= plan.Duration {
		return StepDone
	}
	switch plan.Phase {
	case PhaseWarmup:
		return Continue
	case PhaseBackoff:
		if ws.elapsed >= plan.MinDuration && s.recovered(w) {
			ws.recov = true
			return StepDone
		}
		return Continue
	}
	if ws.elapsed < plan.MinDuration {
		return Continue
	}
	enough := ws.requests >= int64(s.cfg.MinRequests) || s.clearPass()
	if enough && s.stable() {
		return StepDone
	}
	return Continue
}

// clearPass: a climbing step whose latency is still flat and whose largest
// latency, with sampling error, is within the SLO may end with fewer than
// MinRequests. Refinement steps sit at the boundary and never take this
// shortcut.
func (s *Search) clearPass() bool {
	ws := &s.win
	if s.cur.Phase != PhaseProbe || ws.errors > 0 || ws.requests == 0 {
		return false
	}
	if s.baseline > 0 && float64(ws.maxP99) > flatFactor*float64(s.baseline) {
		return false
	}
	return float64(ws.max)*(1+clearPassZ*p99RelErr(ws.requests)) <= float64(s.cfg.SLOP99)
}

// p99RelErr is the relative standard error of an empirical p99 from n
// samples of an exponential-like tail: the count beyond the p99 is about
// Poisson(0.01·n), and t99 = ln(100)/θ, so δt/t ≈ 1/(√(0.01·n)·ln 100).
func p99RelErr(n int64) float64 {
	return 1 / (math.Sqrt(0.01*float64(n)) * math.Log(100))
}

// hardWindow: p99 far above the SLO, errors far above the objective, or a
// stall, in a window that offered enough requests to tell.
func (s *Search) hardWindow(w WindowStat, d time.Duration) bool {
	offered := w.OfferedRPS * d.Seconds()
	if offered < hardMinRequests && w.Requests < hardMinRequests {
		return false
	}
	if w.Requests >= hardMinRequests && float64(w.P99) > hardLatencyFactor*float64(s.cfg.SLOP99) {
		return true
	}
	if w.Requests >= hardMinRequests {
		rate := float64(w.Errors) / float64(w.Requests)
		if rate > math.Max(hardErrorFactor*s.cfg.SLOErrorRate, hardErrorFloor) {
			return true
		}
	}
	short := offered - achievedRPS(w, d)*d.Seconds()
	return offered >= hardMinRequests && achievedRPS(w, d) < hardStallRatio*w.OfferedRPS &&
		short > plateauSigmas*math.Sqrt(offered)
}

// achievedRPS is the window's completion rate (from its count when the rate
// was not filled in).
func achievedRPS(w WindowStat, d time.Duration) float64 {
	return math.Max(w.AchievedRPS, float64(w.Requests)/d.Seconds())
}

// plateau: achieved clearly below offered. The windows after the first
// decide when there were any; else the merged step.
func (s *Search) plateau(r StepResult) bool {
	offered, achieved := s.win.tailOffered, s.win.tailAchieved
	if offered <= 0 {
		secs := r.Duration.Seconds()
		if secs <= 0 {
			secs = 1
		}
		offered, achieved = r.OfferedRPS*secs, r.AchievedRPS*secs
	}
	short := offered - achieved
	return achieved < plateauRatio*offered && short > plateauSigmas*math.Sqrt(offered)
}

// recovered: the backoff may end.
func (s *Search) recovered(w WindowStat) bool {
	limit := recoveredFraction * float64(s.cfg.SLOP99)
	if s.baseline > 0 {
		limit = math.Max(limit, 2*float64(s.baseline))
	}
	limit = math.Min(limit, float64(s.cfg.SLOP99))
	errOK := w.Requests == 0 || float64(w.Errors)/float64(w.Requests) <= s.cfg.SLOErrorRate
	return float64(w.P99) <= limit && errOK
}

// stable: neither the p99 nor the in-flight mean of the last windows drifts.
func (s *Search) stable() bool {
	ws := &s.win
	if len(ws.p99) < stabilityWindows {
		return false
	}
	p := make([]float64, len(ws.p99))
	for i, v := range ws.p99 {
		p[i] = float64(v)
	}
	return !drifting(p) && !drifting(ws.inflight)
}

// drifting: the values move monotonically by more than driftTolerance from
// first to last. Series with a zero (no data) are not judged.
func drifting(xs []float64) bool {
	if len(xs) < 2 {
		return false
	}
	for _, x := range xs {
		if x <= 0 || !finite(x) {
			return false
		}
	}
	up, down := true, true
	for i := 1; i < len(xs); i++ {
		up = up && xs[i] > xs[i-1]
		down = down && xs[i] < xs[i-1]
	}
	first, last := xs[0], xs[len(xs)-1]
	return (up && last > first*(1+driftTolerance)) || (down && last < first*(1-driftTolerance))
}

// EndStep records the merged result of the current step and decides what
// comes next. A call without a current plan is ignored.
func (s *Search) EndStep(r StepResult) {
	if s.cur == nil {
		return
	}
	plan := *s.cur
	s.cur = nil
	if r.OfferedRPS <= 0 {
		r.OfferedRPS = plan.RPS
	}
	rec := StepRecord{Plan: plan, Result: r, Aborted: s.win.aborted}
	rec.Verdict, rec.Reason = s.judge(r, rec.Aborted)
	rec.LowSample = plan.Phase.Measured() && r.Requests < int64(s.cfg.MinRequests)
	s.steps = append(s.steps, rec)

	switch plan.Phase {
	case PhaseWarmup:
		s.stage = stageClimb
		if rec.Aborted {
			// even the warm-up rate breaches hard: look below it
			s.fail(plan.RPS, StopBreach)
			s.stage = stageDescend
			s.checkFloor()
		}
		return
	case PhaseBackoff:
		s.backoff = false
		if !s.win.recov {
			s.note(fmt.Sprintf("step %d: the target had not recovered (p99 %v) after %v of backoff at %.4g req/s", plan.Index, r.P99, r.Duration, plan.RPS))
		}
		return
	}

	if rec.LowSample {
		s.note(fmt.Sprintf("step %d (%.4g req/s): p99 from %d requests (fewer than %d)", plan.Index, plan.RPS, r.Requests, s.cfg.MinRequests))
	}
	if rec.Verdict == VerdictPass && s.baseline == 0 {
		s.baseline = r.P99
		if float64(r.P99)*flatFactor > float64(s.cfg.SLOP99) {
			s.note(fmt.Sprintf("the low-load p99 %v is within %gx of the objective %v: verdicts near it rest on noise", r.P99, flatFactor, s.cfg.SLOP99))
		}
	}
	switch rec.Verdict {
	case VerdictLoadgen:
		s.note(fmt.Sprintf("step %d (%.4g req/s): %s", plan.Index, plan.RPS, rec.Reason))
		s.stop = StopLoadgen
		s.done, s.stage = true, stageDone
		return
	case VerdictPass:
		s.lo = math.Max(s.lo, plan.RPS)
		switch s.stage {
		case stageClimb:
			if plan.RPS >= s.cfg.MaxRPS {
				s.finish(StopMaxRate)
				return
			}
			f := fastFactor
			flat := float64(r.P99) <= flatFactor*float64(s.baseline)
			if float64(r.P99) >= headroomFraction*float64(s.cfg.SLOP99) && !flat {
				f = slowFactor
			}
			s.climbRate = math.Min(plan.RPS*f, s.cfg.MaxRPS)
		case stageDescend:
			s.stage = stageRefine
		}
	default:
		reason := StopBreach
		if rec.Verdict == VerdictPlateau {
			reason = StopPlateau
		}
		s.fail(plan.RPS, reason)
		switch s.stage {
		case stageClimb:
			if s.lo > 0 {
				s.stage = stageRefine
			} else {
				s.stage = stageDescend
			}
		case stageDescend:
			s.checkFloor()
		}
	}
	if s.stage == stageRefine && s.hi/s.lo-1 <= s.cfg.Resolution {
		s.finish("")
	}
}

// fail records a failing rate; the first failure sets the stop reason.
func (s *Search) fail(rate float64, reason StopReason) {
	if s.hi == 0 || rate < s.hi {
		s.hi = rate
	}
	if s.stop == "" {
		s.stop = reason
	}
	s.backoff = true
}

// checkFloor ends a descent that would go below minRPS.
func (s *Search) checkFloor() {
	if s.hi/descendFactor < minRPS {
		s.note(fmt.Sprintf("the objective was missed even at %.4g req/s", s.hi))
		s.finish("")
	}
}

// finish ends the search. why is the reason time ran out (max-duration,
// interrupted), or "" / a climb reason when it ended by itself.
func (s *Search) finish(why StopReason) {
	if s.done {
		return
	}
	s.done, s.stage, s.cur = true, stageDone, nil
	switch {
	case s.stop == "":
		s.stop = why
	case why == StopMaxDuration || why == StopInterrupted:
		s.cut = why
	}
}

// Interrupt ends the search now (Ctrl-C). A step in progress is dropped
// unless EndStep was called for it first.
func (s *Search) Interrupt() { s.finish(StopInterrupted) }

func (s *Search) note(n string) { s.notes = append(s.notes, n) }

// judge decides a step's verdict, with the deciding numbers.
func (s *Search) judge(r StepResult, aborted bool) (Verdict, string) {
	breach := ""
	switch {
	case aborted:
		breach = fmt.Sprintf("aborted: %d windows in a row beyond %gx the p99 objective, %gx the error objective, or stalled", hardWindows, hardLatencyFactor, hardErrorFactor)
	case r.P99 > s.cfg.SLOP99:
		breach = fmt.Sprintf("p99 %v above the objective %v", r.P99, s.cfg.SLOP99)
	case r.ErrorRate() > s.cfg.SLOErrorRate:
		breach = fmt.Sprintf("error rate %.3g%% above the objective %.3g%%", 100*r.ErrorRate(), 100*s.cfg.SLOErrorRate)
	}
	if why := loadgenSignal(r, breach != ""); why != "" {
		return VerdictLoadgen, why
	}
	if breach != "" {
		return VerdictBreach, breach
	}
	if s.plateau(r) {
		return VerdictPlateau, fmt.Sprintf("achieved %.4g req/s is below %g%% of the offered %.4g req/s", r.AchievedRPS, 100*plateauRatio, r.OfferedRPS)
	}
	return VerdictPass, fmt.Sprintf("p99 %v within %v, error rate %.3g%%", r.P99, s.cfg.SLOP99, 100*r.ErrorRate())
}

// Result returns what the search found so far; it may be called at any time.
func (s *Search) Result() Result {
	res := Result{
		Stop:  s.stop,
		Cut:   s.cut,
		Done:  s.done,
		Steps: append([]StepRecord(nil), s.steps...),
		Notes: append([]string(nil), s.notes...),
	}
	if s.lo > 0 && s.stop != StopLoadgen {
		v := s.lo
		res.MaxRPS = &v
	}
	if s.hi > 0 {
		v := s.hi
		res.FirstFailingRPS = &v
	}
	if res.MaxRPS != nil && res.FirstFailingRPS != nil {
		res.Uncertainty = *res.FirstFailingRPS / *res.MaxRPS - 1
	}
	return res
}
