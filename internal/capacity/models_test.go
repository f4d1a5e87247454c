package capacity

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func uslPoints(lambda, sigma, kappa float64, ns []float64, noise float64, seed uint64) []Point {
	rng := rand.New(rand.NewPCG(seed, 1))
	pts := make([]Point, len(ns))
	for i, n := range ns {
		x := uslX(lambda, sigma, kappa, n) * (1 + noise*rng.NormFloat64())
		pts[i] = Point{N: n, X: x}
	}
	return pts
}

func within(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

func TestFitUSLRecoversParameters(t *testing.T) {
	ns := []float64{1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48}
	tests := []struct {
		name                 string
		lambda, sigma, kappa float64
		noise                float64
		tol                  float64 // relative, on each parameter
	}{
		{"exact", 100, 0.05, 0.002, 0, 1e-3},
		{"1% noise", 100, 0.05, 0.002, 0.01, 0.05},
		{"2% noise, stronger contention", 250, 0.2, 0.0005, 0.02, 0.08},
		{"no coherency cost", 50, 0.1, 0, 0.005, 0.05},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := FitUSL(uslPoints(tc.lambda, tc.sigma, tc.kappa, ns, tc.noise, 3))
			t.Logf("fit σ=%.5f κ=%.6f λ=%.3f r²=%.4f reliable=%v %s", f.Sigma, f.Kappa, f.Lambda, f.R2, f.Reliable, f.Note)
			if !f.Reliable || f.R2 < 0.95 {
				t.Errorf("reliable=%v r²=%.3f note %q; want a reliable fit", f.Reliable, f.R2, f.Note)
			}
			if !within(f.Lambda, tc.lambda, tc.tol) || !within(f.Sigma, tc.sigma, tc.tol) {
				t.Errorf("λ=%.4g σ=%.4g; want %.4g, %.4g within %.0f%%", f.Lambda, f.Sigma, tc.lambda, tc.sigma, 100*tc.tol)
			}
			if tc.kappa == 0 && f.Kappa > 1e-5 || tc.kappa > 0 && !within(f.Kappa, tc.kappa, 2*tc.tol) {
				t.Errorf("κ=%.4g; want %.4g", f.Kappa, tc.kappa)
			}
		})
	}
}

func TestFitUSLUnreliable(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	random := make([]Point, 10)
	for i := range random {
		random[i] = Point{N: float64(i + 1), X: 50 + 50*rng.Float64()}
	}
	tests := []struct {
		name string
		pts  []Point
		want string // in Note
	}{
		{"three points", uslPoints(100, 0.05, 0.002, []float64{1, 8, 30}, 0, 1), "3 distinct concurrency levels"},
		{"three levels, repeated", uslPoints(100, 0.05, 0.002, []float64{1, 1, 8, 8, 30}, 0.001, 1), "3 distinct concurrency levels"},
		{"random throughput", random, "r²"},
		{"narrow span", uslPoints(100, 0.05, 0.002, []float64{10, 11, 12, 13, 14, 15}, 0.01, 1), "spans only"},
		{"nothing usable", []Point{{N: 0, X: 1}, {N: math.NaN(), X: 2}, {N: 3, X: -1}}, "0 usable points"},
		{"flat", []Point{{1, 10}, {2, 10}, {4, 10}, {8, 10}}, "r²"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := FitUSL(tc.pts)
			if f.Reliable {
				t.Fatalf("fit %+v called reliable", f)
			}
			if !strings.Contains(f.Note, tc.want) {
				t.Errorf("note %q does not say %q", f.Note, tc.want)
			}
			if _, ok := f.PeakThroughput(); ok {
				t.Error("PeakThroughput ok on an unreliable fit")
			}
			if _, ok := f.Without(Contention); ok {
				t.Error("Without ok on an unreliable fit")
			}
			if r := f.Report(); r.Reliable || r.Note == "" || math.IsNaN(r.R2) {
				t.Errorf("report %+v", r)
			}
		})
	}
}

func TestUSLPeakAndWithout(t *testing.T) {
	ns := []float64{1, 2, 4, 8, 12, 16, 24, 32}
	f := FitUSL(uslPoints(100, 0.05, 0.002, ns, 0, 1))
	wantN := math.Sqrt(0.95 / 0.002)
	if !within(f.PeakN(), wantN, 1e-3) {
		t.Errorf("PeakN %.4g, want %.4g", f.PeakN(), wantN)
	}
	x, ok := f.PeakThroughput()
	if !ok || !within(x, uslX(100, 0.05, 0.002, wantN), 1e-3) {
		t.Errorf("PeakThroughput %.4g %v", x, ok)
	}
	// without coherency: the asymptote λ/σ = 2000
	if x, ok := f.Without(Coherency); !ok || !within(x, 2000, 0.01) {
		t.Errorf("Without(Coherency) = %.4g %v, want 2000", x, ok)
	}
	// without contention: N* = sqrt(1/κ), X = λN*/(1+κN*(N*−1))
	n := math.Sqrt(1 / 0.002)
	if x, ok := f.Without(Contention); !ok || !within(x, uslX(100, 0, 0.002, n), 0.01) {
		t.Errorf("Without(Contention) = %.4g %v, want %.4g", x, ok, uslX(100, 0, 0.002, n))
	}
	if x, ok := f.Without(Contention); ok && x <= mustPeak(t, f) {
		t.Error("removing contention did not raise the peak")
	}
	// measured only up to N=4: the peak near 22 is an extrapolation
	g := FitUSL(uslPoints(100, 0.05, 0.002, []float64{1, 1.5, 2, 3, 4}, 0, 1))
	if _, ok := g.PeakThroughput(); ok {
		t.Errorf("peak of a fit up to N=4 reported as measured (note %q)", g.Note)
	}
	if !strings.Contains(g.Note, "extrapolation") {
		t.Errorf("note %q does not say extrapolation", g.Note)
	}
	// κ = 0: no peak, removing σ is unbounded
	h := USLFit{Lambda: 10, Sigma: 0.1, Reliable: true, MaxN: 10}
	if !math.IsInf(h.PeakN(), 1) {
		t.Errorf("PeakN with κ=0: %v", h.PeakN())
	}
	if _, ok := h.Without(Contention); ok {
		t.Error("Without(Contention) with κ=0 should be unbounded")
	}
}

func mustPeak(t *testing.T, f USLFit) float64 {
	t.Helper()
	x, ok := f.PeakThroughput()
	if !ok {
		t.Fatalf("no peak: %q", f.Note)
	}
	return x
}

func TestLittle(t *testing.T) {
	tests := []struct {
		name string
		r    StepResult
		want float64
	}{
		{"measured wins", StepResult{AchievedRPS: 1000, MeanLatency: 20 * time.Millisecond, InflightMean: 7}, 7},
		{"from the mean", StepResult{AchievedRPS: 1000, MeanLatency: 20 * time.Millisecond, P50: 10 * time.Millisecond}, 20},
		{"from the median", StepResult{AchievedRPS: 500, P50: 10 * time.Millisecond}, 5},
		{"nothing", StepResult{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Concurrency(); !within(got, tc.want, 1e-9) {
				t.Errorf("Concurrency = %v, want %v", got, tc.want)
			}
		})
	}
	if got := LittleConcurrency(-1, time.Second); got != 0 {
		t.Errorf("negative throughput gave %v", got)
	}
}

func step(phase Phase, rate float64, p99 time.Duration, v Verdict) StepRecord {
	return StepRecord{Plan: Plan{Phase: phase, RPS: rate}, Verdict: v,
		Result: StepResult{OfferedRPS: rate, AchievedRPS: rate, P99: p99, P50: p99 / 3, Requests: 1000}}
}

func TestKnee(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		steps []StepRecord
		want  float64 // 0: not identified
	}{
		{"bend between 400 and 800", []StepRecord{
			step(PhaseWarmup, 10, 90*ms, VerdictPass), // warm-up ignored
			step(PhaseProbe, 100, 10*ms, VerdictPass),
			step(PhaseProbe, 200, 11*ms, VerdictPass),
			step(PhaseProbe, 400, 12*ms, VerdictPass),
			step(PhaseProbe, 800, 33*ms, VerdictBreach),
			step(PhaseRefine, 600, 22*ms, VerdictPass),
		}, 600},
		{"an early noisy spike is not the knee", []StepRecord{
			step(PhaseProbe, 100, 10*ms, VerdictPass),
			step(PhaseProbe, 200, 25*ms, VerdictPass), // spike
			step(PhaseProbe, 300, 10*ms, VerdictPass),
			step(PhaseProbe, 400, 10*ms, VerdictPass),
			step(PhaseProbe, 500, 30*ms, VerdictPass),
		}, 450},
		{"never bends", []StepRecord{
			step(PhaseProbe, 100, 10*ms, VerdictPass),
			step(PhaseProbe, 200, 10*ms, VerdictPass),
			step(PhaseProbe, 400, 11*ms, VerdictPass),
			step(PhaseProbe, 800, 12*ms, VerdictPass),
		}, 0},
		{"too few steps", []StepRecord{
			step(PhaseProbe, 100, 10*ms, VerdictPass),
			step(PhaseProbe, 800, 40*ms, VerdictPass),
		}, 0},
		{"loadgen steps ignored", []StepRecord{
			step(PhaseProbe, 100, 10*ms, VerdictPass),
			step(PhaseProbe, 200, 10*ms, VerdictPass),
			step(PhaseProbe, 400, 10*ms, VerdictPass),
			step(PhaseProbe, 800, 90*ms, VerdictLoadgen),
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Knee(tc.steps)
			if tc.want == 0 {
				if ok {
					t.Errorf("knee %v, want none", got)
				}
				return
			}
			if !ok || !within(got, tc.want, 1e-9) {
				t.Errorf("knee %v %v, want %v", got, ok, tc.want)
			}
		})
	}
}

func TestKneeOnModel(t *testing.T) {
	// M/M/8 at 800 req/s: the p99 doubles its low-load value at a known rate
	const servers, capacity = 8, 800.0
	mu := capacity / servers
	base := mmcQuantile(servers, mu, 1, 0.99)
	lo, hi := 1.0, capacity
	for range 100 {
		m := (lo + hi) / 2
		if mmcQuantile(servers, mu, m, 0.99) < kneeFactor*base {
			lo = m
		} else {
			hi = m
		}
	}
	truth := lo
	s := mustSearch(t, SearchConfig{SLOP99: 300 * time.Millisecond})
	res, _ := drive(t, s, newSim(servers, capacity, 42))
	got, ok := Knee(res.Steps)
	t.Logf("model knee %.1f req/s (p99 %.1f ms → %.1f ms), found %.1f", truth, 1000*base, 2000*base, got)
	// the knee interpolates between steps up to 2x apart; the bend is steep
	// here, so 15% is the step spacing near it, not noise
	if !ok || !within(got, truth, 0.15) {
		t.Errorf("knee %v %v, want %.1f within 15%%", got, ok, truth)
	}
	if res.MaxRPS != nil && got > *res.MaxRPS*1.05 {
		t.Errorf("knee %.1f above max_rps %.1f", got, *res.MaxRPS)
	}
	pts := USLPoints(res.Steps)
	if len(pts) == 0 {
		t.Fatal("no USL points from a search")
	}
	for _, p := range pts {
		if p.N <= 0 || p.X <= 0 {
			t.Errorf("bad point %+v", p)
		}
	}
	steps := res.ReportSteps()
	if len(steps) == 0 || steps[0].OfferedRPS != 10 || steps[0].Latency.P99 <= 0 {
		t.Errorf("report steps %+v", steps)
	}
}

func TestLoadgenSaturated(t *testing.T) {
	ms := time.Millisecond
	ok := func(rate float64) StepRecord { return step(PhaseProbe, rate, 10*ms, VerdictPass) }
	with := func(st StepRecord, edit func(*StepResult)) StepRecord { edit(&st.Result); return st }
	tests := []struct {
		name  string
		steps []StepRecord
		want  string // "" means not saturated
	}{
		{"healthy", []StepRecord{ok(100), ok(200)}, ""},
		{"cpu at its limit", []StepRecord{ok(100), with(ok(200), func(r *StepResult) { r.LoadgenCPU, r.LoadgenCPULimit = 1.95, 2 })}, "CPU"},
		{"cpu with headroom", []StepRecord{with(ok(200), func(r *StepResult) { r.LoadgenCPU, r.LoadgenCPULimit = 1.0, 2 })}, ""},
		{"lag from a few sends is noise", []StepRecord{with(ok(10), func(r *StepResult) { r.LagP99, r.Requests = 67*ms, 40 })}, ""},
		{"lag while the offered rate was sent", []StepRecord{with(ok(200), func(r *StepResult) { r.LagP99 = 25 * ms })}, ""},
		{"lag, the offered rate not sent, a busy generator", []StepRecord{with(ok(200), func(r *StepResult) { r.LagP99, r.AchievedRPS, r.LoadgenCPU, r.LoadgenCPULimit = 25*ms, 150, 1.2, 2 })}, "lag"},
		{"lag, the offered rate not sent, an idle generator", []StepRecord{with(ok(200), func(r *StepResult) { r.LagP99, r.AchievedRPS, r.LoadgenCPU, r.LoadgenCPULimit = 25*ms, 150, 0.07, 2 })}, ""},
		{"late and short of the rate", []StepRecord{with(ok(200), func(r *StepResult) {
			r.Late, r.LagP99, r.AchievedRPS, r.LoadgenCPU, r.LoadgenCPULimit = 200, 8*ms, 150, 1.2, 2
		})}, "late"},
		{"a plateau with lag is the target's", []StepRecord{with(step(PhaseProbe, 640, 138*ms, VerdictPlateau), func(r *StepResult) { r.LagP99, r.AchievedRPS, r.Requests = 42*ms, 396, 2446 })}, ""},
		{"late by a millisecond is timer noise", []StepRecord{with(ok(200), func(r *StepResult) {
			r.Late, r.LagP99, r.AchievedRPS, r.LoadgenCPU, r.LoadgenCPULimit = 200, 2*ms, 150, 1.2, 2
		})}, ""},
		{"breach explained by lag, target fast", []StepRecord{with(step(PhaseProbe, 400, 60*ms, VerdictBreach), func(r *StepResult) { r.LagP99, r.ServiceP99 = 50*ms, 5*ms })}, "lag"},
		{"breach with lag but a slow target is the target's", []StepRecord{with(step(PhaseProbe, 400, 60*ms, VerdictBreach), func(r *StepResult) { r.LagP99, r.ServiceP99 = 50*ms, 55*ms })}, ""},
		{"dropped", []StepRecord{with(ok(200), func(r *StepResult) { r.Dropped = 50 })}, "dropped"},
		{"a few dropped", []StepRecord{with(ok(200), func(r *StepResult) { r.Dropped = 5 })}, ""},
		{"a few late", []StepRecord{with(ok(200), func(r *StepResult) { r.Late = 30 })}, ""},
		{"breach with drops is the target's", []StepRecord{with(step(PhaseProbe, 400, 900*ms, VerdictBreach), func(r *StepResult) { r.Dropped = 500 })}, ""},
		{"warm-up ignored", []StepRecord{with(step(PhaseWarmup, 10, ms, VerdictPass), func(r *StepResult) { r.LagP99 = time.Second })}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sat, why := LoadgenSaturated(tc.steps)
			if sat != (tc.want != "") || !strings.Contains(why, tc.want) {
				t.Errorf("LoadgenSaturated = %v, %q; want %q", sat, why, tc.want)
			}
		})
	}
	steps := []StepRecord{
		with(ok(100), func(r *StepResult) { r.LoadgenCPU = 0.2 }),
		with(ok(400), func(r *StepResult) { r.LoadgenCPU = 0.7 }),
	}
	if c, found := LoadgenCPUAt(steps, 350); !found || c != 0.7 {
		t.Errorf("LoadgenCPUAt = %v %v", c, found)
	}
	if _, found := LoadgenCPUAt(nil, 350); found {
		t.Error("LoadgenCPUAt found a step in nothing")
	}
}
