package capacity

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// byteSource hands out numbers from fuzz input, zero when exhausted.
type byteSource struct{ b []byte }

func (s *byteSource) u16() uint16 {
	if len(s.b) < 2 {
		return 0
	}
	v := binary.LittleEndian.Uint16(s.b)
	s.b = s.b[2:]
	return v
}

func (s *byteSource) f64() float64 {
	if len(s.b) < 8 {
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(s.b))
	s.b = s.b[8:]
	return v
}

// FuzzSearch drives the search with arbitrary window stats and step results
// (what a broken target or generator could report): it must not panic, must
// end, and must keep its promises about rates and results.
func FuzzSearch(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, uint16(100), uint16(1000))
	f.Add([]byte{255, 255, 255, 255, 0, 0, 0, 0, 127, 127}, uint16(5), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, sloMS, maxRate uint16) {
		if len(data) > 1<<16 {
			return // bound the work per input
		}
		s, err := NewSearch(SearchConfig{SLOP99: time.Duration(sloMS) * time.Millisecond, MaxRPS: float64(maxRate)})
		if err != nil {
			return
		}
		src := &byteSource{b: data}
		var elapsed time.Duration
		for steps := 0; ; steps++ {
			if steps > 1000 {
				t.Fatal("search did not end in 1000 steps")
			}
			plan, ok := s.Next(elapsed)
			if !ok {
				break
			}
			if plan.RPS > s.Config().MaxRPS || plan.RPS <= 0 || math.IsNaN(plan.RPS) || plan.Duration <= 0 {
				t.Fatalf("bad plan %+v", plan)
			}
			n := 0
			for ; n < 30; n++ {
				w := WindowStat{
					OfferedRPS: plan.RPS, AchievedRPS: src.f64(), Requests: int64(src.u16()), Errors: int64(src.u16()),
					P99: time.Duration(src.u16()) * time.Millisecond, Max: time.Duration(src.u16()) * time.Millisecond,
					InflightMean: src.f64(),
				}
				if s.Window(w) != Continue {
					break
				}
			}
			elapsed += time.Duration(n+1) * time.Second
			s.EndStep(StepResult{
				AchievedRPS: src.f64(), Requests: int64(src.u16()), Errors: int64(src.u16()),
				P99: time.Duration(src.u16()) * time.Millisecond, Dropped: int64(src.u16()), Late: int64(src.u16()),
				LagP99: time.Duration(src.u16()) * time.Microsecond, LoadgenCPU: src.f64(), LoadgenCPULimit: src.f64(),
				Duration: time.Duration(n+1) * time.Second,
			})
		}
		res := s.Result()
		if res.MaxRPS != nil && res.FirstFailingRPS != nil && *res.MaxRPS >= *res.FirstFailingRPS {
			t.Fatalf("max %v not below first failing %v", *res.MaxRPS, *res.FirstFailingRPS)
		}
		if res.Stop == "" {
			t.Fatal("ended without a stop reason")
		}
		Knee(res.Steps)
		FitUSL(USLPoints(res.Steps))
		LoadgenSaturated(res.Steps)
	})
}

// FuzzFitUSL: arbitrary points never panic, and a fit called reliable has
// finite parameters within their bounds.
func FuzzFitUSL(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 240, 63, 0, 0, 0, 0, 0, 0, 89, 64})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16*64 {
			return // at most 64 points
		}
		src := &byteSource{b: data}
		var pts []Point
		for len(src.b) >= 16 {
			pts = append(pts, Point{N: src.f64(), X: src.f64()})
		}
		fit := FitUSL(pts)
		if fit.Reliable {
			for _, v := range []float64{fit.Sigma, fit.Kappa, fit.Lambda, fit.R2} {
				if !finite(v) {
					t.Fatalf("reliable fit with a non-finite value: %+v", fit)
				}
			}
			if fit.Sigma < 0 || fit.Sigma > 1 || fit.Kappa < 0 || fit.Kappa > uslMaxKappa {
				t.Fatalf("parameters out of bounds: %+v", fit)
			}
		}
	})
}
