package load

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// MaxRate bounds any offered rate a Schedule accepts (requests/s). It is a
// sanity limit far above what one machine can send, not a performance claim.
const MaxRate = 10_000_000

// MaxUsers bounds a closed-model Schedule: each user is a goroutine and a
// connection, and the kernel's ephemeral port range (~28k on Linux) limits
// connections to one target long before this.
const MaxUsers = 100_000

// Schedule says when requests are offered.
//
// An open-model schedule is a piecewise-linear rate r(t): requests arrive at
// intended times that do not depend on how fast the target answers (so a
// stalled target cannot slow the generator down and hide the stall). Arrival
// k (k = 0, 1, ...) is intended at Λ⁻¹(k), where Λ(t) = ∫r is the expected
// number of arrivals by t; with Poisson the gaps are exponential instead, at
// the same rate. The last segment's rate is held for as long as the run's
// Bound allows.
//
// A closed-model schedule (Closed) has a fixed number of users, each sending
// its next request as soon as the previous one is answered.
//
// The zero Schedule offers nothing and is invalid.
type Schedule struct {
	segs    []segment
	closed  bool
	users   int
	poisson bool
	desc    string
}

// segment is one piece of a piecewise-linear rate. The last segment of a
// schedule is held forever (dur is ignored).
type segment struct {
	start    time.Duration // offset of the segment's start
	dur      time.Duration
	from, to float64 // rate at start and end, requests/s
	cum      float64 // Λ(start): expected arrivals before the segment
}

// Constant offers rps requests per second.
func Constant(rps float64) Schedule {
	return newSchedule(fmt.Sprintf("constant %s/s", fmtRate(rps)), []segment{{from: rps, to: rps}})
}

// Ramp offers a rate rising (or falling) linearly from `from` to `to`
// requests per second over `over`, then holds `to`.
func Ramp(from, to float64, over time.Duration) Schedule {
	s := newSchedule(fmt.Sprintf("ramp %s→%s/s over %s", fmtRate(from), fmtRate(to), over),
		[]segment{{dur: over, from: from, to: to}, {from: to, to: to}})
	if over <= 0 {
		s.desc = "invalid ramp"
		s.segs = nil
	}
	return s
}

// Steps offers each of rates for `each`, in order, then holds the last.
func Steps(rates []float64, each time.Duration) Schedule {
	parts := make([]string, len(rates))
	segs := make([]segment, len(rates))
	for i, r := range rates {
		parts[i] = fmtRate(r)
		segs[i] = segment{dur: each, from: r, to: r}
	}
	s := newSchedule(fmt.Sprintf("steps %s/s each %s", strings.Join(parts, ","), each), segs)
	if each <= 0 || len(rates) == 0 {
		s.desc = "invalid steps"
		s.segs = nil
	}
	return s
}

// Closed is the closed model: users concurrent users, each sending its next
// request as soon as the previous one is answered.
func Closed(users int) Schedule {
	return Schedule{closed: true, users: users, desc: fmt.Sprintf("closed %d users", users)}
}

// Poisson returns s with exponentially distributed gaps between arrivals (a
// Poisson process of the same rate) instead of evenly spaced ones. It has no
// effect on a closed schedule.
func (s Schedule) Poisson() Schedule {
	if !s.closed && !s.poisson {
		s.poisson = true
		s.desc += " (poisson)"
	}
	return s
}

func newSchedule(desc string, segs []segment) Schedule {
	var at time.Duration
	var cum float64
	for i := range segs {
		segs[i].start = at
		segs[i].cum = cum
		if i < len(segs)-1 {
			at += segs[i].dur
			cum += (segs[i].from + segs[i].to) / 2 * segs[i].dur.Seconds()
		}
	}
	return Schedule{segs: segs, desc: desc}
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// String describes the schedule.
func (s Schedule) String() string {
	if s.desc == "" {
		return "empty schedule"
	}
	return s.desc
}

// IsClosed reports whether s is a closed-model schedule.
func (s Schedule) IsClosed() bool { return s.closed }

// Users is the number of users of a closed schedule (0 for an open one).
func (s Schedule) Users() int { return s.users }

// IsPoisson reports whether arrivals are a Poisson process.
func (s Schedule) IsPoisson() bool { return s.poisson }

// Span is how long the schedule's defined part lasts (a ramp's length, the
// sum of the steps); 0 for a constant rate and for a closed schedule.
func (s Schedule) Span() time.Duration {
	if len(s.segs) == 0 {
		return 0
	}
	last := s.segs[len(s.segs)-1]
	return last.start + last.dur
}

// Validate reports a schedule that cannot be run.
func (s Schedule) Validate() error {
	if s.closed {
		if s.users < 1 || s.users > MaxUsers {
			return fmt.Errorf("concurrency: %d users: want 1 to %d", s.users, MaxUsers)
		}
		return nil
	}
	if len(s.segs) == 0 {
		return errors.New("schedule: empty (want a rate, a ramp, steps or a concurrency)")
	}
	positive := false
	for i, g := range s.segs {
		for _, r := range []float64{g.from, g.to} {
			if math.IsNaN(r) || r < 0 || r > MaxRate {
				return fmt.Errorf("schedule: rate %v: want 0 to %d requests/s", r, MaxRate)
			}
			if r > 0 {
				positive = true
			}
		}
		if i < len(s.segs)-1 && g.dur <= 0 {
			return fmt.Errorf("schedule: duration %s: want > 0", g.dur)
		}
	}
	if !positive {
		return errors.New("schedule: every rate is 0: nothing would be sent")
	}
	return nil
}

// RateAt is the offered rate at offset t, in requests/s (0 when closed).
func (s Schedule) RateAt(t time.Duration) float64 {
	if len(s.segs) == 0 || t < 0 {
		return 0
	}
	g := s.segs[s.segIndex(t)]
	if g.from == g.to || g.dur <= 0 {
		return g.to
	}
	f := float64(t-g.start) / float64(g.dur)
	if f > 1 {
		f = 1
	}
	return g.from + (g.to-g.from)*f
}

// Expected is the expected number of arrivals intended in [from, to): Λ(to)-Λ(from).
func (s Schedule) Expected(from, to time.Duration) float64 {
	if to <= from {
		return 0
	}
	return s.cumulative(to) - s.cumulative(from)
}

func (s Schedule) segIndex(t time.Duration) int {
	i := 0
	for i < len(s.segs)-1 && t >= s.segs[i+1].start {
		i++
	}
	return i
}

// cumulative is Λ(t), the expected number of arrivals before t.
func (s Schedule) cumulative(t time.Duration) float64 {
	if len(s.segs) == 0 || t <= 0 {
		return 0
	}
	i := s.segIndex(t)
	g := s.segs[i]
	x := (t - g.start).Seconds()
	if i == len(s.segs)-1 {
		return g.cum + g.to*x
	}
	slope := (g.to - g.from) / g.dur.Seconds()
	return g.cum + g.from*x + slope*x*x/2
}

// arrivals iterates over a schedule's intended arrival times.
type arrivals struct {
	s   *Schedule
	seg int
	x   float64 // Λ of the next arrival
	rng *rand.Rand
}

func (s Schedule) arrivals(seed uint64) *arrivals {
	a := &arrivals{s: &s}
	if s.poisson {
		a.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	}
	return a
}

// next returns the next intended arrival as an offset from the start, or
// false when no arrival will ever come (the held rate is 0).
func (a *arrivals) next() (time.Duration, bool) {
	x := a.x
	if a.rng != nil {
		x += a.rng.ExpFloat64()
	}
	t, ok := a.invert(x)
	if a.rng != nil {
		a.x = x
	} else {
		a.x++
	}
	return t, ok
}

// invert is Λ⁻¹(x): the time by which x arrivals are expected. x never
// decreases between calls, so the segment cursor only moves forward.
func (a *arrivals) invert(x float64) (time.Duration, bool) {
	segs := a.s.segs
	for a.seg < len(segs)-1 && x >= segs[a.seg+1].cum {
		a.seg++
	}
	g := segs[a.seg]
	y := x - g.cum
	last := a.seg == len(segs)-1
	var secs float64
	switch {
	case last || g.from == g.to:
		r := g.from
		if last {
			r = g.to
		}
		if r <= 0 {
			// Only a held rate of 0 gets here: the loop above moves past
			// any earlier segment that expects no (more) arrivals.
			return 0, false
		}
		secs = y / r
	default:
		slope := (g.to - g.from) / g.dur.Seconds()
		d := g.from*g.from + 2*slope*y
		if d < 0 {
			d = 0
		}
		den := g.from + math.Sqrt(d)
		if den <= 0 {
			return g.start, true
		}
		secs = 2 * y / den
	}
	return g.start + time.Duration(secs*float64(time.Second)), true
}

// ParseRamp parses a ramp as FROM:TO/DUR, e.g. "0:2000/30s".
func ParseRamp(s string) (Schedule, error) {
	rates, dur, ok := strings.Cut(s, "/")
	if !ok {
		return Schedule{}, fmt.Errorf("%q: want FROM:TO/DURATION, e.g. 0:2000/30s", s)
	}
	f, t, ok := strings.Cut(rates, ":")
	if !ok {
		return Schedule{}, fmt.Errorf("%q: want FROM:TO/DURATION, e.g. 0:2000/30s", s)
	}
	from, err := ParseRate(f)
	if err != nil {
		return Schedule{}, err
	}
	to, err := ParseRate(t)
	if err != nil {
		return Schedule{}, err
	}
	d, err := parseSpan(dur)
	if err != nil {
		return Schedule{}, err
	}
	sc := Ramp(from, to, d)
	return sc, sc.Validate()
}

// ParseSteps parses steps as R1,R2,.../DUR, e.g. "100,200,400/10s": each
// rate held for DUR.
func ParseSteps(s string) (Schedule, error) {
	list, dur, ok := strings.Cut(s, "/")
	if !ok || list == "" {
		return Schedule{}, fmt.Errorf("%q: want R1,R2,.../DURATION, e.g. 100,200,400/10s", s)
	}
	parts := strings.Split(list, ",")
	if len(parts) > maxSteps {
		return Schedule{}, fmt.Errorf("%q: more than %d steps", s, maxSteps)
	}
	rates := make([]float64, len(parts))
	for i, p := range parts {
		r, err := ParseRate(p)
		if err != nil {
			return Schedule{}, err
		}
		rates[i] = r
	}
	d, err := parseSpan(dur)
	if err != nil {
		return Schedule{}, err
	}
	sc := Steps(rates, d)
	return sc, sc.Validate()
}

// maxSteps bounds --steps: more would be a mistake, not a plan.
const maxSteps = 1000

// ParseRate parses a rate in requests per second ("500", "2.5k" is not
// accepted: plain decimal numbers only).
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(r) || math.IsInf(r, 0) {
		return 0, fmt.Errorf("rate %q: want a number of requests per second", s)
	}
	if r < 0 || r > MaxRate {
		return 0, fmt.Errorf("rate %q: want 0 to %d requests per second", s, MaxRate)
	}
	return r, nil
}

func parseSpan(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("duration %q: want a positive duration such as 10s", s)
	}
	return d, nil
}
