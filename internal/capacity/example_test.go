package capacity_test

import (
	"fmt"
	"time"

	"github.com/chokepoint/chokepoint/internal/capacity"
)

// The hunt drives the search: run each plan, feed one-second windows, end
// the step with the merged result. Here a stand-in target answers in 5 ms
// up to 300 req/s and falls over above it.
func ExampleSearch() {
	s, err := capacity.NewSearch(capacity.SearchConfig{SLOP99: 100 * time.Millisecond, MaxDuration: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	latency := func(rps float64) time.Duration {
		if rps > 300 {
			return time.Second
		}
		return 5 * time.Millisecond
	}
	var elapsed time.Duration
	for {
		plan, ok := s.Next(elapsed)
		if !ok {
			break
		}
		var secs int64
		for d := time.Duration(0); d < plan.Duration; d += time.Second {
			secs++
			w := capacity.WindowStat{OfferedRPS: plan.RPS, AchievedRPS: plan.RPS, Requests: int64(plan.RPS),
				P99: latency(plan.RPS), Max: latency(plan.RPS)}
			if s.Window(w) != capacity.Continue {
				break
			}
		}
		elapsed += time.Duration(secs) * time.Second
		s.EndStep(capacity.StepResult{AchievedRPS: plan.RPS, Requests: secs * int64(plan.RPS),
			P99: latency(plan.RPS), Duration: time.Duration(secs) * time.Second})
	}
	res := s.Result()
	fmt.Printf("stop %s, max %.0f req/s, first failing %.0f req/s\n", res.Stop, *res.MaxRPS, *res.FirstFailingRPS)
	// Output: stop breach, max 293 req/s, first failing 306 req/s
}

func ExampleFitUSL() {
	var pts []capacity.Point
	for _, n := range []float64{1, 2, 4, 8, 16, 24, 32} {
		x := 100 * n / (1 + 0.05*(n-1) + 0.002*n*(n-1))
		pts = append(pts, capacity.Point{N: n, X: x})
	}
	fit := capacity.FitUSL(pts)
	peak, _ := fit.PeakThroughput()
	fmt.Printf("σ=%.3f κ=%.4f λ=%.0f reliable=%v peak %.0f req/s at N=%.0f\n", fit.Sigma, fit.Kappa, fit.Lambda, fit.Reliable, peak, fit.PeakN())
	// Output: σ=0.050 κ=0.0020 λ=100 reliable=true peak 740 req/s at N=22
}
