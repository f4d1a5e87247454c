package capacity

import (
	"math"
	"slices"
	"time"

	"github.com/chokepoint/chokepoint/internal/report"
)

// kneeFactor: the knee is where the p99 reaches twice its low-load value.
// For an M/M/1 queue that is utilisation 0.5, the point of Kleinrock's
// maximum power (throughput / response time), the classic "knee" of a
// response-time curve (Jain, The Art of Computer Systems Performance
// Analysis, 1991, §3.3); for many-server queues it falls later and more
// sharply, where queueing delay first equals the service time.
const kneeFactor = 2.0

// kneeBaselineSteps: the low-load p99 is the median of the p99s of the three
// lowest-rate measured steps, so one noisy step cannot set it.
const kneeBaselineSteps = 3

// LittleConcurrency is Little's law: requests in flight = throughput x
// latency (mean latency for the exact law).
func LittleConcurrency(throughputRPS float64, latency time.Duration) float64 {
	if throughputRPS <= 0 || latency <= 0 {
		return 0
	}
	return throughputRPS * latency.Seconds()
}

// Concurrency is the step's mean number of requests in flight: measured when
// the hunt measured it, else Little's law from the achieved rate and the mean
// latency (the median when the mean is unknown: an underestimate for skewed
// latencies).
func (r StepResult) Concurrency() float64 {
	if r.InflightMean > 0 {
		return r.InflightMean
	}
	lat := r.MeanLatency
	if lat <= 0 {
		lat = r.P50
	}
	return LittleConcurrency(r.AchievedRPS, lat)
}

// USLPoints returns the (concurrency, throughput) points of the measured
// steps that passed: past the breach the concurrency in flight is a queue
// outside the target's workers, not parallel work, so it is not a USL point.
func USLPoints(steps []StepRecord) []Point {
	var pts []Point
	for _, st := range steps {
		if !st.Plan.Phase.Measured() || st.Verdict != VerdictPass {
			continue
		}
		if n := st.Result.Concurrency(); n > 0 && st.Result.AchievedRPS > 0 {
			pts = append(pts, Point{N: n, X: st.Result.AchievedRPS})
		}
	}
	return pts
}

// Knee returns the offered rate where latency starts to bend: the rate,
// interpolated between two measured steps, from which on the p99 stays at or
// above kneeFactor times its low-load value. ok is false when latency never
// bent within the steps, or was already bent at the lowest rate.
func Knee(steps []StepRecord) (rps float64, ok bool) {
	type pt struct{ rate, p99 float64 }
	var pts []pt
	for _, st := range steps {
		if !st.Plan.Phase.Measured() || st.Verdict == VerdictLoadgen || st.Result.P99 <= 0 {
			continue
		}
		pts = append(pts, pt{offered(st), float64(st.Result.P99)})
	}
	if len(pts) < kneeBaselineSteps+1 {
		return 0, false
	}
	slices.SortStableFunc(pts, func(a, b pt) int { return cmpFloat(a.rate, b.rate) })
	low := []float64{pts[0].p99, pts[1].p99, pts[2].p99}
	slices.Sort(low)
	base := low[1]
	if base <= 0 {
		return 0, false
	}
	// the first index from which every step is bent
	j := len(pts)
	for i := len(pts) - 1; i >= 0 && pts[i].p99 >= kneeFactor*base; i-- {
		j = i
	}
	if j == len(pts) || j == 0 {
		return 0, false
	}
	a, b := pts[j-1], pts[j]
	ra, rb := a.p99/base, b.p99/base
	if rb == ra || b.rate == a.rate {
		return b.rate, true
	}
	t := (kneeFactor - ra) / (rb - ra)
	return a.rate + math.Min(math.Max(t, 0), 1)*(b.rate-a.rate), true
}

// ReportSteps converts the measured steps to report.json's steps table, in
// the order they ran.
func (r Result) ReportSteps() []report.Step {
	out := make([]report.Step, 0, len(r.Steps))
	for _, st := range r.Steps {
		if !st.Plan.Phase.Measured() {
			continue
		}
		x := st.Result
		out = append(out, report.Step{
			OfferedRPS:   offered(st),
			AchievedRPS:  x.AchievedRPS,
			ErrorRate:    x.ErrorRate(),
			InflightMean: x.Concurrency(),
			Latency:      report.Latency{P50: ms(x.P50), P90: ms(x.P90), P99: ms(x.P99), Max: ms(x.Max)},
			Requests:     x.Requests,
			Late:         x.Late,
			Dropped:      x.Dropped,
			MetSLO:       st.Verdict == VerdictPass,
			LoadgenCPU:   x.LoadgenCPU,
		})
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Report converts the fit to report.json's capacity.usl.
func (f USLFit) Report() *report.USL {
	return &report.USL{Sigma: f.Sigma, Kappa: f.Kappa, Lambda: f.Lambda, R2: f.R2, Reliable: f.Reliable, Note: f.Note}
}
