package load

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// fakeClock jumps to whatever time is slept until; lag, when set, makes
// every wake-up that late.
type fakeClock struct {
	t   time.Duration
	lag time.Duration
}

func (c *fakeClock) now() time.Duration { return c.t }
func (c *fakeClock) sleepUntil(_ context.Context, t time.Duration) {
	if t > c.t {
		c.t = t + c.lag
	}
}

// perSecond paces s for d on a fake clock and counts arrivals per second.
func perSecond(s Schedule, d time.Duration, clk *fakeClock) []int {
	counts := make([]int, int(math.Ceil(d.Seconds())))
	pace(context.Background(), clk, s.arrivals(7), d, 0, func(intended time.Duration) {
		if intended < 0 || intended >= d {
			panic("arrival outside the run")
		}
		counts[int(intended/time.Second)]++
	})
	return counts
}

func TestScheduleArrivalCounts(t *testing.T) {
	tests := []struct {
		name  string
		s     Schedule
		d     time.Duration
		want  []float64 // expected arrivals per second
		total float64
	}{
		{"constant", Constant(500), 5 * time.Second, []float64{500, 500, 500, 500, 500}, 2500},
		{"constant fractional", Constant(0.5), 4 * time.Second, []float64{1, 0, 1, 0}, 2},
		{"ramp up", Ramp(0, 1000, 4*time.Second), 4 * time.Second, []float64{125, 375, 625, 875}, 2000},
		{"ramp down", Ramp(1000, 200, 4*time.Second), 4 * time.Second, []float64{900, 700, 500, 300}, 2400},
		{"ramp then hold", Ramp(100, 300, 2*time.Second), 4 * time.Second, []float64{150, 250, 300, 300}, 1000},
		{"steps", Steps([]float64{100, 200, 400}, 2*time.Second), 6 * time.Second, []float64{100, 100, 200, 200, 400, 400}, 1400},
		{"steps hold last", Steps([]float64{100, 300}, time.Second), 4 * time.Second, []float64{100, 300, 300, 300}, 1000},
		{"steps with zero", Steps([]float64{100, 0, 100}, time.Second), 3 * time.Second, []float64{100, 0, 100}, 200},
		{"high rate", Constant(20000), 3 * time.Second, []float64{20000, 20000, 20000}, 60000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := perSecond(tc.s, tc.d, &fakeClock{})
			total := 0
			for i, n := range got {
				total += n
				// Within 1% (CONTRACT goal), and never more than one
				// arrival off the exact count at a boundary.
				if diff := math.Abs(float64(n) - tc.want[i]); diff > math.Max(1, tc.want[i]*0.01) {
					t.Errorf("second %d: %d arrivals, want %.0f", i, n, tc.want[i])
				}
			}
			if math.Abs(float64(total)-tc.total) > 1 {
				t.Errorf("total %d arrivals, want %.0f", total, tc.total)
			}
			if exp := tc.s.Expected(0, tc.d); math.Abs(exp-tc.total) > 1e-6 {
				t.Errorf("Expected(0, %s) = %v, want %v", tc.d, exp, tc.total)
			}
		})
	}
}

func TestPoissonArrivals(t *testing.T) {
	s := Constant(2000).Poisson()
	got := perSecond(s, 10*time.Second, &fakeClock{})
	total := 0
	for _, n := range got {
		total += n
	}
	// A Poisson count with mean 20,000 has σ ≈ 141: 1% is 1.4σ... use 3σ.
	if math.Abs(float64(total)-20000) > 3*math.Sqrt(20000) {
		t.Errorf("poisson total %d, want 20000 ± %.0f", total, 3*math.Sqrt(20000))
	}
	// Gaps must vary (not evenly spaced): count distinct gaps.
	var last time.Duration
	gaps := map[time.Duration]bool{}
	pace(context.Background(), &fakeClock{}, s.arrivals(1), 100*time.Millisecond, 0, func(t time.Duration) {
		gaps[(t-last)/time.Microsecond] = true
		last = t
	})
	if len(gaps) < 50 {
		t.Errorf("only %d distinct gaps among poisson arrivals", len(gaps))
	}
	// The same seed gives the same arrivals.
	a, b := s.arrivals(3), s.arrivals(3)
	for range 100 {
		x, _ := a.next()
		y, _ := b.next()
		if x != y {
			t.Fatalf("poisson arrivals differ for one seed: %v vs %v", x, y)
		}
	}
}

func TestPaceLateArrivalsAreSentNotSkipped(t *testing.T) {
	// A pacer that always wakes 5 ms late still dispatches every arrival,
	// with its original intended time.
	clk := &fakeClock{lag: 5 * time.Millisecond}
	var late, n int
	pace(context.Background(), clk, Constant(1000).arrivals(1), time.Second, 0, func(intended time.Duration) {
		n++
		if clk.now()-intended > lateThreshold {
			late++
		}
	})
	if n != 1000 {
		t.Errorf("dispatched %d, want 1000", n)
	}
	if late == 0 {
		t.Error("no arrival was late with a pacer waking 5ms late")
	}
}

func TestPaceBounds(t *testing.T) {
	t.Run("max arrivals", func(t *testing.T) {
		n := pace(context.Background(), &fakeClock{}, Constant(1000).arrivals(1), time.Hour, 1234, func(time.Duration) {})
		if n != 1234 {
			t.Errorf("dispatched %d, want 1234", n)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		n := pace(ctx, &fakeClock{}, Constant(1000).arrivals(1), time.Hour, 0, func(time.Duration) {
			cancel()
		})
		if n != 1 {
			t.Errorf("dispatched %d after cancel, want 1", n)
		}
	})
	t.Run("zero held rate holds the duration", func(t *testing.T) {
		clk := &fakeClock{}
		n := pace(context.Background(), clk, Ramp(100, 0, time.Second).arrivals(1), 3*time.Second, 0, func(time.Duration) {})
		if n < 49 || n > 51 {
			t.Errorf("dispatched %d, want 50", n)
		}
		if clk.now() != 3*time.Second {
			t.Errorf("pacer returned at %v, want 3s", clk.now())
		}
	})
}

func TestScheduleRateAndSpan(t *testing.T) {
	r := Ramp(0, 1000, 10*time.Second)
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 0}, {5 * time.Second, 500}, {10 * time.Second, 1000}, {time.Minute, 1000}} {
		if got := r.RateAt(tc.at); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("RateAt(%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if r.Span() != 10*time.Second {
		t.Errorf("Span = %v", r.Span())
	}
	if s := Steps([]float64{1, 2, 3}, time.Second); s.Span() != 3*time.Second || s.RateAt(1500*time.Millisecond) != 2 {
		t.Errorf("steps: span %v, rate at 1.5s %v", s.Span(), s.RateAt(1500*time.Millisecond))
	}
	if Constant(5).Span() != 0 || Closed(3).Span() != 0 {
		t.Error("constant and closed schedules have no span")
	}
}

func TestScheduleValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Schedule
		want string // substring of the error; "" for valid
	}{
		{"constant", Constant(10), ""},
		{"zero", Constant(0), "every rate is 0"},
		{"negative", Constant(-1), "rate -1"},
		{"nan", Constant(math.NaN()), "rate NaN"},
		{"too fast", Constant(MaxRate + 1), "rate"},
		{"ramp", Ramp(0, 10, time.Second), ""},
		{"ramp no length", Ramp(0, 10, 0), "empty"},
		{"steps none", Steps(nil, time.Second), "empty"},
		{"closed", Closed(5), ""},
		{"closed zero", Closed(0), "concurrency"},
		{"closed huge", Closed(MaxUsers + 1), "concurrency"},
		{"zero value", Schedule{}, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseScheduleFlags(t *testing.T) {
	tests := []struct {
		in      string
		steps   bool
		want    string // String() of the schedule, or the error substring
		wantErr bool
	}{
		{in: "0:2000/30s", want: "ramp 0→2000/s over 30s"},
		{in: "10.5:20/1m", want: "ramp 10.5→20/s over 1m0s"},
		{in: "0:0/10s", want: "every rate is 0", wantErr: true},
		{in: "0-2000/30s", want: "want FROM:TO/DURATION", wantErr: true},
		{in: "0:2000", want: "want FROM:TO/DURATION", wantErr: true},
		{in: "0:2000/-3s", want: "positive duration", wantErr: true},
		{in: "a:2000/3s", want: `rate "a"`, wantErr: true},
		{in: "0:1e9/3s", want: "want 0 to", wantErr: true},
		{in: "100,200,400/10s", steps: true, want: "steps 100,200,400/s each 10s"},
		{in: "5/1s", steps: true, want: "steps 5/s each 1s"},
		{in: "100,,400/10s", steps: true, want: `rate ""`, wantErr: true},
		{in: "100,200", steps: true, want: "want R1,R2", wantErr: true},
		{in: "/10s", steps: true, want: "want R1,R2", wantErr: true},
		{in: "100/0s", steps: true, want: "positive duration", wantErr: true},
		{in: "Inf/1s", steps: true, want: "rate", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			parse := ParseRamp
			if tc.steps {
				parse = ParseSteps
			}
			s, err := parse(tc.in)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.String() != tc.want {
				t.Errorf("String() = %q, want %q", s.String(), tc.want)
			}
		})
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"0:2000/30s", "100,200,400/10s", "1:1/1ns", "9999999:0/1h", ",/", "1e-300:1/1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, parse := range []func(string) (Schedule, error){ParseRamp, ParseSteps} {
			s, err := parse(in)
			if err != nil {
				continue
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("%q parsed into an invalid schedule: %v", in, err)
			}
			// A valid schedule yields non-decreasing arrivals in its span.
			a := s.arrivals(1)
			var last time.Duration
			for range 1000 {
				at, ok := a.next()
				if !ok {
					break
				}
				if at < last {
					t.Fatalf("%q: arrival %v before %v", in, at, last)
				}
				last = at
			}
		}
	})
}

func TestPacerPumpedByWorkers(t *testing.T) {
	var got []time.Duration
	p := newPacer(Constant(1000).arrivals(1), 20*time.Millisecond, 0, func(t time.Duration) { got = append(got, t) })
	// A worker awake at 5.5 ms sends the six arrivals due by then
	// (0, 1, ..., 5 ms), each with its own intended time.
	p.tryPump(5500 * time.Microsecond)
	if len(got) != 6 || got[5] != 5*time.Millisecond {
		t.Fatalf("pumped %v, want 0..5ms", got)
	}
	// The pacer goes on from there, sending each of the rest once.
	clk := &fakeClock{t: 6 * time.Millisecond}
	if n := p.run(context.Background(), clk); n != 20 || len(got) != 20 {
		t.Errorf("dispatched %d (%d recorded), want 20", n, len(got))
	}
	for i, at := range got {
		if at != time.Duration(i)*time.Millisecond {
			t.Fatalf("arrival %d intended at %v", i, at)
		}
	}
	p.tryPump(time.Hour) // done: nothing more
	if len(got) != 20 {
		t.Errorf("a finished pacer dispatched again: %d", len(got))
	}
}
