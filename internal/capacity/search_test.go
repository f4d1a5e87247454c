package capacity

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustSearch(t *testing.T, cfg SearchConfig) *Search {
	t.Helper()
	s, err := NewSearch(cfg)
	if err != nil {
		t.Fatalf("NewSearch(%+v): %v", cfg, err)
	}
	return s
}

// checkInvariants holds for every search: never above MaxRPS, never past
// MaxDuration, and after every failing measured step the next step is lower.
func checkInvariants(t *testing.T, s *Search, res Result, elapsed time.Duration) {
	t.Helper()
	cfg := s.Config()
	if elapsed > cfg.MaxDuration {
		t.Errorf("ran %v, past MaxDuration %v", elapsed, cfg.MaxDuration)
	}
	for i, st := range res.Steps {
		if st.Plan.RPS > cfg.MaxRPS {
			t.Errorf("step %d offered %v req/s above MaxRPS %v", i, st.Plan.RPS, cfg.MaxRPS)
		}
		if st.Plan.Phase.Measured() && st.Verdict != VerdictPass && i+1 < len(res.Steps) {
			if next := res.Steps[i+1]; next.Plan.RPS >= st.Plan.RPS {
				t.Errorf("step %d failed at %v req/s but step %d offered %v req/s", i, st.Plan.RPS, i+1, next.Plan.RPS)
			}
		}
	}
	if !res.Done {
		t.Error("Result.Done is false after Next returned false")
	}
}

func TestSearchFindsCapacity(t *testing.T) {
	// truth is the rate at which the model's steady-state p99 equals the
	// SLO. tol is how far beyond the bracket it may lie: a few-second step
	// that starts from a drained queue sees less of the tail than the steady
	// state (docs/capacity.md, "How precise"). Over 20 seeds the worst
	// overestimate was 26% for the single server at 50 req/s, 11% at
	// 800 req/s and 2% at 12,000 req/s; tol leaves a little above that.
	tests := []struct {
		name     string
		servers  int
		capacity float64
		slo      time.Duration
		tol      float64
	}{
		{"50 req/s, slo 500ms", 1, 50, 500 * time.Millisecond, 0.3},
		{"50 req/s, slo 1s", 1, 50, time.Second, 0.3},
		{"800 req/s, slo 100ms", 8, 800, 100 * time.Millisecond, 0.12},
		{"800 req/s, slo 200ms", 8, 800, 200 * time.Millisecond, 0.12},
		{"12000 req/s, slo 50ms", 48, 12000, 50 * time.Millisecond, 0.03},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSearch(t, SearchConfig{SLOP99: tc.slo, SLOErrorRate: 0.01})
			res, elapsed := drive(t, s, newSim(tc.servers, tc.capacity, 42))
			checkInvariants(t, s, res, elapsed)
			truth := mmcRateAtP99(tc.servers, tc.capacity/float64(tc.servers), tc.slo.Seconds())
			if res.MaxRPS == nil || res.FirstFailingRPS == nil {
				t.Fatalf("max %v first failing %v, want both (stop %s, notes %q)", res.MaxRPS, res.FirstFailingRPS, res.Stop, res.Notes)
			}
			lo, hi := *res.MaxRPS, *res.FirstFailingRPS
			t.Logf("truth %.1f req/s, found [%.1f, %.1f] in %d steps, %v; stop %s", truth, lo, hi, len(res.Steps), elapsed, res.Stop)
			if res.Stop != StopBreach && res.Stop != StopPlateau {
				t.Errorf("stop %q, want breach or plateau", res.Stop)
			}
			if res.Cut != "" || res.Uncertainty > s.Config().Resolution {
				t.Errorf("refinement cut %q, uncertainty %.3f above resolution %.3f", res.Cut, res.Uncertainty, s.Config().Resolution)
			}
			if lo > truth*(1+tc.tol) || hi < truth*(1-tc.tol) {
				t.Errorf("bracket [%.1f, %.1f] misses the model's SLO capacity %.1f (tolerance %.0f%%)", lo, hi, truth, 100*tc.tol)
			}
			if elapsed > 2*time.Minute {
				t.Errorf("took %v of simulated time", elapsed)
			}
		})
	}
}

func TestSearchStopsAtMaxRate(t *testing.T) {
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond, MaxRPS: 3000})
	res, elapsed := drive(t, s, newSim(48, 12000, 1))
	checkInvariants(t, s, res, elapsed)
	if res.Stop != StopMaxRate || res.MaxRPS == nil || *res.MaxRPS != 3000 || res.FirstFailingRPS != nil {
		t.Fatalf("stop %q max %v first failing %v; want max-rate at 3000 and no failure", res.Stop, res.MaxRPS, res.FirstFailingRPS)
	}
	for _, st := range res.Steps {
		if st.Plan.Phase == PhaseRefine || st.Plan.Phase == PhaseBackoff {
			t.Errorf("step %d is a %s step, but nothing failed", st.Plan.Index, st.Plan.Phase)
		}
	}
}

func TestSearchMaxDurationGivesPartialResult(t *testing.T) {
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond, MaxDuration: 20 * time.Second})
	res, elapsed := drive(t, s, newSim(48, 12000, 1))
	checkInvariants(t, s, res, elapsed)
	if res.Stop != StopMaxDuration || res.MaxRPS == nil || res.FirstFailingRPS != nil {
		t.Fatalf("stop %q max %v first failing %v; want max-duration with a partial max", res.Stop, res.MaxRPS, res.FirstFailingRPS)
	}
	if *res.MaxRPS >= 12000 {
		t.Errorf("partial max %v should be below the capacity it never reached", *res.MaxRPS)
	}
}

func TestSearchMaxDurationCutsRefinement(t *testing.T) {
	// 50 req/s: the climb (warm-up, 10, 20, 40, 60) ends near 25 s; the
	// refinement then runs out of time.
	s := mustSearch(t, SearchConfig{SLOP99: 500 * time.Millisecond, MaxDuration: 40 * time.Second})
	res, elapsed := drive(t, s, newSim(1, 50, 3))
	checkInvariants(t, s, res, elapsed)
	if res.Stop != StopBreach && res.Stop != StopPlateau {
		t.Fatalf("stop %q, want the breach found before time ran out", res.Stop)
	}
	if res.Cut != StopMaxDuration || res.Uncertainty <= s.Config().Resolution {
		t.Errorf("cut %q uncertainty %.3f; want max-duration with a coarse bracket", res.Cut, res.Uncertainty)
	}
}

func TestSearchBacksOffAfterBreach(t *testing.T) {
	s := mustSearch(t, SearchConfig{SLOP99: 50 * time.Millisecond})
	res, elapsed := drive(t, s, newSim(8, 800, 5))
	checkInvariants(t, s, res, elapsed)
	first := -1
	for i, st := range res.Steps {
		if st.Plan.Phase.Measured() && st.Verdict != VerdictPass {
			first = i
			break
		}
	}
	if first < 0 || first+1 >= len(res.Steps) {
		t.Fatalf("no failing step followed by another (steps %d)", len(res.Steps))
	}
	failed, next := res.Steps[first], res.Steps[first+1]
	if next.Plan.Phase != PhaseBackoff || next.Plan.RPS >= failed.Plan.RPS {
		t.Errorf("after failing at %v req/s came a %s step at %v req/s; want a lower backoff", failed.Plan.RPS, next.Plan.Phase, next.Plan.RPS)
	}
	// the climb overshot 800 req/s by far: that step must have ended early
	for _, st := range res.Steps {
		if st.Plan.RPS > 1.3*800 && !st.Aborted {
			t.Errorf("step %d at %v req/s (%.0f%% over capacity) ran %v without an abort", st.Plan.Index, st.Plan.RPS, 100*(st.Plan.RPS/800-1), st.Result.Duration)
		}
	}
}

func TestSearchDescendsWhenFirstProbeFails(t *testing.T) {
	// capacity 9 req/s with a 1 s objective: 10 req/s already fails
	s := mustSearch(t, SearchConfig{SLOP99: time.Second})
	res, elapsed := drive(t, s, newSim(1, 9, 11))
	checkInvariants(t, s, res, elapsed)
	if st := res.Steps[1]; st.Plan.RPS != 10 || st.Verdict == VerdictPass {
		t.Fatalf("first probe %+v passed", st)
	}
	truth := mmcRateAtP99(1, 9, 1)
	if res.MaxRPS == nil || res.FirstFailingRPS == nil {
		t.Fatalf("max %v first failing %v (stop %s, notes %q)", res.MaxRPS, res.FirstFailingRPS, res.Stop, res.Notes)
	}
	if *res.MaxRPS > truth*1.3 || *res.FirstFailingRPS < truth*0.9 {
		t.Errorf("bracket [%.2f, %.2f] misses %.2f", *res.MaxRPS, *res.FirstFailingRPS, truth)
	}
}

// scripted feeds the same window stats for every step, chosen by rate.
type scripted func(rate float64, window int) WindowStat

func driveScripted(t *testing.T, s *Search, f scripted) (Result, time.Duration) {
	t.Helper()
	var elapsed time.Duration
	for range 200 {
		plan, ok := s.Next(elapsed)
		if !ok {
			return s.Result(), elapsed
		}
		var n int
		var last WindowStat
		for w := time.Duration(0); w < plan.Duration; w += time.Second {
			last = f(plan.RPS, n)
			n++
			if s.Window(last) != Continue {
				break
			}
		}
		elapsed += time.Duration(n) * time.Second
		s.EndStep(StepResult{
			OfferedRPS: plan.RPS, AchievedRPS: last.AchievedRPS, Requests: last.Requests * int64(n),
			Errors: last.Errors * int64(n), P50: last.P50, P99: last.P99, Max: last.Max,
			Duration: time.Duration(n) * time.Second,
		})
	}
	t.Fatal("search did not end")
	return Result{}, 0
}

func TestSearchNeverFailingTargetAtLowMaxRate(t *testing.T) {
	// a flat 5 ms target: the search doubles up to MaxRPS and stops there
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond, MaxRPS: 1000})
	res, _ := driveScripted(t, s, func(rate float64, _ int) WindowStat {
		return WindowStat{OfferedRPS: rate, AchievedRPS: rate, Requests: int64(rate), P50: 3 * time.Millisecond, P99: 5 * time.Millisecond, Max: 6 * time.Millisecond}
	})
	var rates []float64
	for _, st := range res.Steps {
		if st.Plan.Phase == PhaseProbe {
			rates = append(rates, st.Plan.RPS)
		}
	}
	want := []float64{10, 20, 40, 80, 160, 320, 640, 1000}
	if len(rates) != len(want) {
		t.Fatalf("probe rates %v, want %v", rates, want)
	}
	for i := range want {
		if rates[i] != want[i] {
			t.Fatalf("probe rates %v, want %v", rates, want)
		}
	}
	if res.Stop != StopMaxRate {
		t.Errorf("stop %q, want max-rate", res.Stop)
	}
	if got := s.Config().Ladder(); len(got) != len(want) {
		t.Errorf("Ladder %v, want %v", got, want)
	}
}

func TestSearchSlowsNearObjective(t *testing.T) {
	// p99 at 60% of the objective from 40 req/s: the factor drops to 1.5
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond, MaxRPS: 200})
	res, _ := driveScripted(t, s, func(rate float64, _ int) WindowStat {
		p99 := 10 * time.Millisecond
		if rate >= 40 {
			p99 = 60 * time.Millisecond
		}
		return WindowStat{OfferedRPS: rate, AchievedRPS: rate, Requests: int64(rate), P50: p99 / 2, P99: p99, Max: p99}
	})
	var rates []float64
	for _, st := range res.Steps {
		if st.Plan.Phase == PhaseProbe {
			rates = append(rates, st.Plan.RPS)
		}
	}
	want := []float64{10, 20, 40, 60, 90, 135, 200}
	if len(rates) != len(want) {
		t.Fatalf("probe rates %v, want %v", rates, want)
	}
	for i := range want {
		if math.Abs(rates[i]-want[i]) > 1e-9 {
			t.Fatalf("probe rates %v, want %v", rates, want)
		}
	}
}

func TestSearchPlateauDistinguishedFromBreach(t *testing.T) {
	// fast responses, but never more than 500 req/s completed
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond})
	res, _ := driveScripted(t, s, func(rate float64, _ int) WindowStat {
		got := math.Min(rate, 500)
		return WindowStat{OfferedRPS: rate, AchievedRPS: got, Requests: int64(got), P50: time.Millisecond, P99: 2 * time.Millisecond, Max: 3 * time.Millisecond}
	})
	if res.Stop != StopPlateau {
		t.Fatalf("stop %q, want plateau", res.Stop)
	}
	if res.MaxRPS == nil || *res.MaxRPS > 500/plateauRatio || *res.MaxRPS < 500 {
		t.Errorf("max %v; want between 500 and 500/%v", fmtPtr(res.MaxRPS), plateauRatio)
	}
	for _, st := range res.Steps {
		if st.Verdict == VerdictBreach {
			t.Errorf("step %d judged a breach (%s); only plateau expected", st.Plan.Index, st.Reason)
		}
	}
}

func TestSearchErrorBreach(t *testing.T) {
	// errors rise to 3% from 300 req/s; latency stays low
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond, SLOErrorRate: 0.01})
	res, _ := driveScripted(t, s, func(rate float64, _ int) WindowStat {
		n := int64(rate)
		var errs int64
		if rate >= 300 {
			errs = n * 3 / 100
		}
		return WindowStat{OfferedRPS: rate, AchievedRPS: rate, Requests: n, Errors: errs, P50: time.Millisecond, P99: 2 * time.Millisecond, Max: 3 * time.Millisecond}
	})
	if res.Stop != StopBreach || res.MaxRPS == nil || *res.MaxRPS >= 300 || *res.FirstFailingRPS < 300 || res.Uncertainty > 0.05 {
		t.Fatalf("stop %q max %v first %v; want a breach bracketing 300 req/s", res.Stop, res.MaxRPS, res.FirstFailingRPS)
	}
	var found bool
	for _, st := range res.Steps {
		found = found || strings.Contains(st.Reason, "error rate")
	}
	if !found {
		t.Error("no step reason names the error rate")
	}
}

func TestSearchLoadgenSaturationStops(t *testing.T) {
	// the generator drops 20% of arrivals from 160 req/s on
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond})
	var elapsed time.Duration
	for range 100 {
		plan, ok := s.Next(elapsed)
		if !ok {
			break
		}
		for s.Window(WindowStat{OfferedRPS: plan.RPS, AchievedRPS: plan.RPS, Requests: int64(plan.RPS), P99: 2 * time.Millisecond, Max: 2 * time.Millisecond}) == Continue {
			elapsed += time.Second
		}
		elapsed += time.Second
		r := StepResult{OfferedRPS: plan.RPS, AchievedRPS: plan.RPS, Requests: int64(3 * plan.RPS), P99: 2 * time.Millisecond}
		if plan.RPS >= 160 {
			r.Dropped = r.Requests / 4
			r.AchievedRPS = plan.RPS * 0.8
		}
		s.EndStep(r)
	}
	res := s.Result()
	if res.Stop != StopLoadgen || res.MaxRPS != nil {
		t.Fatalf("stop %q max %v; want loadgen and no max", res.Stop, res.MaxRPS)
	}
	if ok, why := LoadgenSaturated(res.Steps); !ok || !strings.Contains(why, "dropped") {
		t.Errorf("LoadgenSaturated = %v, %q", ok, why)
	}
}

func TestSearchWindowDecisions(t *testing.T) {
	slo := 100 * time.Millisecond
	steady := WindowStat{OfferedRPS: 1000, AchievedRPS: 1000, Requests: 1000, P50: 5 * time.Millisecond, P99: 20 * time.Millisecond, Max: 30 * time.Millisecond, InflightMean: 6}
	rising := func(i int) WindowStat { // +15% a window, below the SLO
		w := steady
		w.P99 = time.Duration(float64(10*time.Millisecond) * math.Pow(1.15, float64(i)))
		w.Max = w.P99
		w.InflightMean = 6 * math.Pow(1.15, float64(i))
		return w
	}
	hard := steady
	hard.P99 = 5 * slo
	slowFew := WindowStat{OfferedRPS: 10, AchievedRPS: 10, Requests: 10, P99: 80 * time.Millisecond, Max: 90 * time.Millisecond}
	fastFew := WindowStat{OfferedRPS: 10, AchievedRPS: 10, Requests: 10, P99: 10 * time.Millisecond, Max: 12 * time.Millisecond}
	stalled := WindowStat{OfferedRPS: 1000, AchievedRPS: 100, Requests: 100, P99: 50 * time.Millisecond, Max: 60 * time.Millisecond}
	errs := steady
	errs.Errors = 60 // 6% > 5x 1%

	tests := []struct {
		name    string
		windows func(i int) WindowStat
		want    Decision
		at      int // the window (1-based) at which the decision comes
	}{
		{"steady ends at MinStep", func(int) WindowStat { return steady }, StepDone, 3},
		{"rising p99 runs to MaxStep", rising, StepDone, 15},
		{"hard latency breach aborts on the second window", func(int) WindowStat { return hard }, Abort, 2},
		{"stall aborts", func(int) WindowStat { return stalled }, Abort, 2},
		{"errors 5x the objective abort", func(int) WindowStat { return errs }, Abort, 2},
		{"few requests near the objective wait for MinRequests", func(int) WindowStat { return slowFew }, StepDone, 15},
		{"few requests far within the objective end at MinStep", func(int) WindowStat { return fastFew }, StepDone, 3},
		{"one hard window does not abort", func(i int) WindowStat {
			if i == 0 {
				return hard
			}
			return steady
		}, StepDone, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSearch(t, SearchConfig{SLOP99: slo, SLOErrorRate: 0.01})
			s.EndStep(StepResult{}) // ignored: no plan yet
			if p, _ := s.Next(0); p.Phase != PhaseWarmup {
				t.Fatalf("first plan %+v, want warm-up", p)
			}
			s.EndStep(StepResult{AchievedRPS: 10, Requests: 20, P99: time.Millisecond})
			p, ok := s.Next(2 * time.Second)
			if !ok || p.Phase != PhaseProbe {
				t.Fatalf("second plan %+v, want a probe", p)
			}
			for i := range 20 {
				d := s.Window(tc.windows(i))
				if d == Continue {
					continue
				}
				if d != tc.want || i+1 != tc.at {
					t.Fatalf("decision %v at window %d, want %v at %d", d, i+1, tc.want, tc.at)
				}
				if again := s.Window(tc.windows(i + 1)); again != d {
					t.Errorf("window after the decision answered %v, want %v again", again, d)
				}
				return
			}
			t.Fatalf("no decision in 20 windows, want %v at %d", tc.want, tc.at)
		})
	}
}

func TestSearchBackoffEndsWhenRecovered(t *testing.T) {
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond})
	s.Next(0)
	s.EndStep(StepResult{AchievedRPS: 10, Requests: 20, P99: 5 * time.Millisecond})
	s.Next(2 * time.Second)
	s.EndStep(StepResult{AchievedRPS: 10, Requests: 500, P99: 5 * time.Millisecond}) // 10 passes
	s.Next(52 * time.Second)
	s.EndStep(StepResult{AchievedRPS: 20, Requests: 500, P99: 300 * time.Millisecond}) // 20 fails
	p, ok := s.Next(77 * time.Second)
	if !ok || p.Phase != PhaseBackoff || p.RPS != 5 {
		t.Fatalf("plan %+v, want a backoff at 5 req/s", p)
	}
	draining := []time.Duration{400 * time.Millisecond, 200 * time.Millisecond, 40 * time.Millisecond}
	for i, p99 := range draining {
		d := s.Window(WindowStat{OfferedRPS: 5, AchievedRPS: 5, Requests: 5, P99: p99, Max: p99})
		if want := i == len(draining)-1; (d == StepDone) != want {
			t.Fatalf("window %d (p99 %v): %v", i+1, p99, d)
		}
	}
	s.EndStep(StepResult{AchievedRPS: 5, Requests: 15, P99: 400 * time.Millisecond})
	if p, _ := s.Next(80 * time.Second); p.Phase != PhaseRefine || p.RPS <= 10 || p.RPS >= 20 {
		t.Errorf("after the backoff: %+v, want a refine step between 10 and 20", p)
	}
	res := s.Result()
	if len(res.Notes) != 0 {
		t.Errorf("notes %q; the target recovered", res.Notes)
	}
}

func TestSearchInterrupt(t *testing.T) {
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond})
	s.Next(0)
	s.EndStep(StepResult{AchievedRPS: 10, Requests: 20, P99: 5 * time.Millisecond})
	s.Next(2 * time.Second)
	s.EndStep(StepResult{AchievedRPS: 10, Requests: 30, P99: 5 * time.Millisecond})
	s.Next(5 * time.Second)
	s.Interrupt()
	if _, ok := s.Next(6 * time.Second); ok {
		t.Fatal("Next after Interrupt returned a plan")
	}
	res := s.Result()
	if res.Stop != StopInterrupted || res.MaxRPS == nil || *res.MaxRPS != 10 || len(res.Steps) != 2 {
		t.Errorf("stop %q max %v steps %d; want interrupted, max 10, 2 steps", res.Stop, res.MaxRPS, len(res.Steps))
	}
}

func TestSearchNextIsIdempotent(t *testing.T) {
	s := mustSearch(t, SearchConfig{SLOP99: 100 * time.Millisecond})
	a, _ := s.Next(0)
	b, _ := s.Next(time.Second)
	if a != b {
		t.Errorf("Next twice: %+v then %+v", a, b)
	}
}

func TestSearchConfigValidate(t *testing.T) {
	ok := SearchConfig{SLOP99: time.Second}
	tests := []struct {
		name  string
		edit  func(*SearchConfig)
		field string // "" means valid
	}{
		{"zero values are defaults", func(*SearchConfig) {}, ""},
		{"all set", func(c *SearchConfig) {
			*c = SearchConfig{SLOP99: time.Second, SLOErrorRate: 0.05, StartRPS: 5, MaxRPS: 500, MaxDuration: time.Minute, Resolution: 0.1, MinStep: 2 * time.Second, MaxStep: 5 * time.Second, MinRequests: 50}
		}, ""},
		{"max rate below the default start", func(c *SearchConfig) { c.MaxRPS = 4 }, ""},
		{"no slo", func(c *SearchConfig) { c.SLOP99 = 0 }, "SLOP99"},
		{"error rate above 1", func(c *SearchConfig) { c.SLOErrorRate = 1.5 }, "SLOErrorRate"},
		{"error rate NaN", func(c *SearchConfig) { c.SLOErrorRate = math.NaN() }, "SLOErrorRate"},
		{"negative start", func(c *SearchConfig) { c.StartRPS = -1 }, "StartRPS"},
		{"start above max", func(c *SearchConfig) { c.StartRPS, c.MaxRPS = 100, 50 }, "StartRPS"},
		{"max rate infinite", func(c *SearchConfig) { c.MaxRPS = math.Inf(1) }, "MaxRPS"},
		{"max rate below 1", func(c *SearchConfig) { c.MaxRPS = 0.5 }, "MaxRPS"},
		{"negative duration", func(c *SearchConfig) { c.MaxDuration = -time.Second }, "MaxDuration"},
		{"duration too short", func(c *SearchConfig) { c.MaxDuration = 4 * time.Second }, "MaxDuration"},
		{"resolution too fine", func(c *SearchConfig) { c.Resolution = 0.001 }, "Resolution"},
		{"resolution too coarse", func(c *SearchConfig) { c.Resolution = 0.9 }, "Resolution"},
		{"min step under a window", func(c *SearchConfig) { c.MinStep = 100 * time.Millisecond }, "MinStep"},
		{"min above max step", func(c *SearchConfig) { c.MinStep, c.MaxStep = 8*time.Second, 4*time.Second }, "MinStep"},
		{"negative max step", func(c *SearchConfig) { c.MaxStep = -1 }, "MaxStep"},
		{"negative min requests", func(c *SearchConfig) { c.MinRequests = -1 }, "MinRequests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
			if _, err := NewSearch(c); err == nil {
				t.Error("NewSearch accepted an invalid config")
			}
		})
	}
}

func fmtPtr(p *float64) string {
	if p == nil {
		return "nil"
	}
	return strconv.FormatFloat(*p, 'g', 6, 64)
}
