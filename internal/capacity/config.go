// Package capacity holds the pure logic of a hunt: the capacity search as a
// state machine, the models fitted to its steps (Little's law, the Universal
// Scalability Law, the knee) and the checks that tell whether the load
// generator, not the target, was the limit. It does no I/O.
package capacity

import (
	"fmt"
	"math"
	"time"
)

// Defaults of SearchConfig. Where a value comes from is said beside it; see
// also docs/capacity.md.
const (
	// DefaultStartRPS is the warm-up and first probe rate: low enough for any
	// service that answers at all (issue 5: "warm up at a low rate").
	DefaultStartRPS = 10.0
	// DefaultMaxRPS is the hunt's --max-rate default (CONTRACT.md §1).
	DefaultMaxRPS = 100000.0
	// DefaultMaxDuration is the hunt's --max-duration default (CONTRACT.md §1).
	DefaultMaxDuration = 3 * time.Minute
	// DefaultResolution is the relative width the refinement narrows the
	// bracket [last good, first failing] to (issue 5 brief: 5%).
	DefaultResolution = 0.05
	// DefaultMinStep is the shortest measured step: three one-second windows
	// are the fewest on which the drift test (stabilityWindows) can judge.
	DefaultMinStep = 3 * time.Second
	// DefaultMaxStep bounds a step that is not yet stable or has too few
	// requests: 15 s holds DefaultMinRequests at 34 req/s and keeps a hunt
	// of a dozen steps within DefaultMaxDuration.
	DefaultMaxStep = 15 * time.Second
	// DefaultMinRequests is how many requests a step needs before its p99 is
	// trusted near the objective. For an exponential-like tail the relative
	// error of an empirical p99 is about 1/(√(0.01·n)·ln 100): 10% at
	// n = 500 (five samples beyond the p99).
	DefaultMinRequests = 500
)

// Limits on configuration values.
const (
	// minResolution: below 0.5% the per-step noise of a p99 (a few percent
	// at thousands of samples) exceeds the bracket, so bisection would chase
	// noise.
	minResolution = 0.005
	// maxResolution: a bracket wider than 50% is no refinement.
	maxResolution = 0.5
	// minStepFloor is one window (CONTRACT.md: a window is one second).
	minStepFloor = time.Second
)

// SearchConfig bounds and tunes a capacity search. The zero value of every
// field except SLOP99 means its default.
type SearchConfig struct {
	// SLOP99 is the latency objective at the 99th percentile, measured from
	// the intended send time. Required.
	SLOP99 time.Duration
	// SLOErrorRate is the error-rate objective, 0..1 (0 allows no errors).
	SLOErrorRate float64
	// StartRPS is the warm-up and first probe rate (0: DefaultStartRPS, or
	// MaxRPS when that is lower).
	StartRPS float64
	// MaxRPS is the highest rate ever offered (0: DefaultMaxRPS).
	MaxRPS float64
	// MaxDuration bounds the whole search (0: DefaultMaxDuration).
	MaxDuration time.Duration
	// Resolution is the relative resolution of the refinement (0:
	// DefaultResolution); the search ends when FirstFailingRPS/MaxRPS-1 is
	// at most this.
	Resolution float64
	// MinStep and MaxStep bound the length of a measured step (0: defaults).
	// Between them a step is extended while its windows drift or it has
	// fewer than MinRequests requests.
	MinStep, MaxStep time.Duration
	// MinRequests is the number of requests a step needs for its p99 to be
	// trusted (0: DefaultMinRequests).
	MinRequests int
}

// FieldError is a configuration error; Field names the SearchConfig field.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string {
	return "capacity config: " + e.Field + ": " + e.Problem
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Validate reports the first invalid field. Zero values are valid (they mean
// the default), except SLOP99, which is required.
func (c SearchConfig) Validate() error {
	switch {
	case c.SLOP99 <= 0:
		return fieldErr("SLOP99", "must be positive, got %v", c.SLOP99)
	case !finite(c.SLOErrorRate) || c.SLOErrorRate < 0 || c.SLOErrorRate > 1:
		return fieldErr("SLOErrorRate", "must be within 0..1, got %v", c.SLOErrorRate)
	case !finite(c.StartRPS) || c.StartRPS < 0:
		return fieldErr("StartRPS", "must be a non-negative number, got %v", c.StartRPS)
	case c.StartRPS > 0 && c.StartRPS < minRPS:
		return fieldErr("StartRPS", "must be at least %v req/s, got %v", minRPS, c.StartRPS)
	case !finite(c.MaxRPS) || c.MaxRPS < 0:
		return fieldErr("MaxRPS", "must be a non-negative number, got %v", c.MaxRPS)
	case c.MaxRPS > 0 && c.MaxRPS < minRPS:
		return fieldErr("MaxRPS", "must be at least %v req/s, got %v", minRPS, c.MaxRPS)
	case c.StartRPS > 0 && c.StartRPS > c.withDefaults().MaxRPS:
		return fieldErr("StartRPS", "%v exceeds MaxRPS %v", c.StartRPS, c.withDefaults().MaxRPS)
	case c.MaxDuration < 0:
		return fieldErr("MaxDuration", "must not be negative, got %v", c.MaxDuration)
	case !finite(c.Resolution) || c.Resolution < 0:
		return fieldErr("Resolution", "must be a non-negative number, got %v", c.Resolution)
	case c.Resolution > 0 && (c.Resolution < minResolution || c.Resolution > maxResolution):
		return fieldErr("Resolution", "must be within %v..%v, got %v", minResolution, maxResolution, c.Resolution)
	case c.MinStep < 0 || (c.MinStep > 0 && c.MinStep < minStepFloor):
		return fieldErr("MinStep", "must be at least %v, got %v", minStepFloor, c.MinStep)
	case c.MaxStep < 0 || (c.MaxStep > 0 && c.MaxStep < minStepFloor):
		return fieldErr("MaxStep", "must be at least %v, got %v", minStepFloor, c.MaxStep)
	case c.MinRequests < 0:
		return fieldErr("MinRequests", "must not be negative, got %d", c.MinRequests)
	}
	d := c.withDefaults()
	if d.MinStep > d.MaxStep {
		return fieldErr("MinStep", "%v exceeds MaxStep %v", d.MinStep, d.MaxStep)
	}
	if d.MaxDuration < warmupDuration+d.MinStep {
		return fieldErr("MaxDuration", "%v leaves no room for a warm-up (%v) and one step (%v)", d.MaxDuration, warmupDuration, d.MinStep)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c SearchConfig) withDefaults() SearchConfig {
	if c.MaxRPS == 0 {
		c.MaxRPS = DefaultMaxRPS
	}
	if c.StartRPS == 0 {
		c.StartRPS = math.Min(DefaultStartRPS, c.MaxRPS)
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.Resolution == 0 {
		c.Resolution = DefaultResolution
	}
	if c.MinStep == 0 {
		c.MinStep = DefaultMinStep
	}
	if c.MaxStep == 0 {
		c.MaxStep = max(DefaultMaxStep, c.MinStep)
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	return c
}

// Ladder returns the rates the climb would offer if every step passed far
// below the objective (the fastest climb): what --dry-run prints. The real
// search may take smaller steps near the objective, then refines.
func (c SearchConfig) Ladder() []float64 {
	d := c.withDefaults()
	rates := []float64{d.StartRPS}
	for r := d.StartRPS; r < d.MaxRPS; {
		r = math.Min(r*fastFactor, d.MaxRPS)
		rates = append(rates, r)
	}
	return rates
}
