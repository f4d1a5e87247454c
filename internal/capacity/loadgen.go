package capacity

import (
	"fmt"
	"math"
	"time"
)

// Thresholds of the generator's honesty check. docs/capacity.md explains them.
const (
	// loadgenCPUShare: a generator using 90% of the CPU it may use has no
	// headroom left to keep its schedule; Go's scheduler latency rises
	// steeply past that point.
	loadgenCPUShare = 0.9
	// loadgenLagP99: a p99 schedule lag above 10 ms (issue 5 brief) means
	// sends leave visibly later than intended: the offered rate is not the
	// one asked for.
	loadgenLagP99 = 10 * time.Millisecond
	// loadgenDroppedShare: dropping more than 1% of arrivals (the in-flight
	// bound reached) changes the offered rate by more than the p99 objective's
	// own tail: the step did not offer what it says.
	loadgenDroppedShare = 0.01
	// loadgenLateShare: a few late sends are GC or scheduler noise; more than
	// one in ten (CONTRACT.md §3: late = > 1 ms after intended) means the
	// generator is not keeping its schedule.
	loadgenLateShare = 0.1
	// loadgenLagOfP99: in a step that breached the objective the breach is
	// still the target's unless the generator's lag explains a large part of
	// the measured p99 (latency is measured from the intended send time, so
	// lag adds to it): half.
	loadgenLagOfP99 = 0.5
	// loadgenLagMinRequests: below this many requests a step's lag p99 is
	// its one or two worst sends — a scheduler hiccup on a busy machine, not
	// a generator out of breath. The late share still applies.
	loadgenLagMinRequests = 200
	// loadgenSentShare: a passing step whose achieved rate is below 95% of
	// the offered one did not offer what it says (the plateau test uses
	// 90% for the target; the generator's own shortfall is held tighter).
	loadgenSentShare = 0.95
	// loadgenBusyShare: a generator using at least half of the CPU it may
	// use is busy enough for its schedule lag to be its own doing.
	loadgenBusyShare = 0.5
)

// loadgenSignal says why the generator, not the target, limited step r, or
// "" when it did not.
//
// Schedule lag alone does not make the generator the limit: latency is
// measured from the intended send time, so lag only inflates it, and on a
// machine shared with a CPU-bound target the generator is starved by the
// target. Lag counts when it changed what was measured: in a passing step,
// when the generator could not send the offered rate; in a failing step,
// when the lag explains the breach while the target itself answered fast
// (its service time is a small part of the latency).
func loadgenSignal(r StepResult, breached bool) string {
	enough := r.Requests >= loadgenLagMinRequests
	if breached {
		serviceFast := r.ServiceP99 > 0 && float64(r.ServiceP99) < loadgenLagOfP99*float64(r.P99)
		if enough && serviceFast && r.LagP99 > loadgenLagP99 && float64(r.LagP99) >= loadgenLagOfP99*float64(r.P99) {
			return fmt.Sprintf("generator schedule lag p99 %v is %.0f%% of the measured p99 %v while the target's service time p99 was %v", r.LagP99, 100*float64(r.LagP99)/float64(r.P99), r.P99, r.ServiceP99)
		}
		return ""
	}
	if r.LoadgenCPULimit > 0 && r.LoadgenCPU >= loadgenCPUShare*r.LoadgenCPULimit {
		return fmt.Sprintf("generator CPU %.2f of %.2f cores (at least %g%%)", r.LoadgenCPU, r.LoadgenCPULimit, 100*loadgenCPUShare)
	}
	intended := float64(r.Requests + r.Dropped)
	if intended > 0 && float64(r.Dropped) > loadgenDroppedShare*intended {
		return fmt.Sprintf("generator dropped %d of %.0f arrivals (%.2g%%, limit %g%%): its in-flight bound was reached", r.Dropped, intended, 100*float64(r.Dropped)/intended, 100*loadgenDroppedShare)
	}
	// Lag in a passing step is the generator's own only when it is busy:
	// an idle generator that sends late was kept waiting by the machine or
	// by the target (connections it could not open), not by its own work.
	busy := r.LoadgenCPULimit > 0 && r.LoadgenCPU >= loadgenBusyShare*r.LoadgenCPULimit
	offeredShort := r.OfferedRPS > 0 && r.AchievedRPS < loadgenSentShare*r.OfferedRPS
	if enough && busy && offeredShort && r.LagP99 > loadgenLagP99 {
		return fmt.Sprintf("generator schedule lag p99 %v above %v while only %.0f%% of the offered rate was sent", r.LagP99, loadgenLagP99, 100*r.AchievedRPS/r.OfferedRPS)
	}
	if enough && busy && offeredShort && r.LagP99 > loadgenLagP99/2 && float64(r.Late) > loadgenLateShare*float64(r.Requests) {
		return fmt.Sprintf("generator sent %d of %d requests late (%.2g%%, limit %g%%) and fell short of the offered rate", r.Late, r.Requests, 100*float64(r.Late)/float64(r.Requests), 100*loadgenLateShare)
	}
	return ""
}

// LoadgenSaturated reports whether the generator itself limited any
// measured step (probe or refine), and why, naming the first such step. The
// hunt then reports loadgen.saturated and max_rps null (CONTRACT.md §4).
// Steps are re-examined from their results, so a hunt may call it on steps
// it recorded itself.
func LoadgenSaturated(steps []StepRecord) (bool, string) {
	for _, st := range steps {
		if !st.Plan.Phase.Measured() {
			continue
		}
		// A plateau fails too: the target did not keep up.
		breached := st.Verdict == VerdictBreach || st.Verdict == VerdictPlateau
		if why := loadgenSignal(st.Result, breached); why != "" {
			return true, fmt.Sprintf("step %d at %.4g req/s: %s", st.Plan.Index, offered(st), why)
		}
	}
	return false, ""
}

// LoadgenCPUAt returns the generator's CPU (cores) in the measured step whose
// offered rate is closest to rps, e.g. the knee, for "what share of the
// machine the generator used"; false when no step measured it.
func LoadgenCPUAt(steps []StepRecord, rps float64) (float64, bool) {
	best, found, dist := 0.0, false, math.Inf(1)
	for _, st := range steps {
		if !st.Plan.Phase.Measured() || st.Result.LoadgenCPU <= 0 {
			continue
		}
		if d := math.Abs(offered(st) - rps); d < dist {
			best, found, dist = st.Result.LoadgenCPU, true, d
		}
	}
	return best, found
}

func offered(st StepRecord) float64 {
	if st.Result.OfferedRPS > 0 {
		return st.Result.OfferedRPS
	}
	return st.Plan.RPS
}
