package load

import (
	"context"
	"time"
)

// clock is the time the pacer runs on: offsets from the run's start. Tests
// inject a fake one to check a schedule deterministically.
type clock interface {
	now() time.Duration
	// sleepUntil returns at or after offset t, or early when ctx is done.
	sleepUntil(ctx context.Context, t time.Duration)
}

// goTimerSlack is how late Go's timers may wake an idle process: the
// runtime rounds netpoll waits to whole milliseconds
// (runtime/netpoll_epoll.go), so a timer can fire up to ~1 ms late. Waits
// longer than this use a Go timer for all but the last goTimerSlack, which
// the precise waiter sleeps.
const goTimerSlack = 1500 * time.Microsecond

// realClock is the monotonic clock since start.
type realClock struct {
	start   time.Time
	timer   *time.Timer
	precise preciseWaiter // nil where unsupported or not wanted
	// resolution is the shortest interval between two precise wake-ups:
	// arrivals due sooner after a wake-up wait for the next one, and are
	// sent together. Each wake-up of an idle process costs a context
	// switch, which on virtual machines is tens of microseconds.
	resolution time.Duration
	lastWake   time.Duration
}

// preciseWaiter sleeps until an offset with sub-millisecond precision.
type preciseWaiter interface {
	waitUntil(t time.Duration) error
	close() error
}

// newRealClock returns the clock of a run that started at start; its waits
// end early once ctx is done. With resolution < 0 it uses Go's timers only.
func newRealClock(ctx context.Context, start time.Time, resolution time.Duration) *realClock {
	c := &realClock{start: start, resolution: resolution, lastWake: -resolution}
	if resolution < 0 {
		return c
	}
	if p, err := newPreciseWaiter(ctx, start); err == nil {
		c.precise = p
	}
	return c
}

func (c *realClock) now() time.Duration { return time.Since(c.start) }

func (c *realClock) sleepUntil(ctx context.Context, t time.Duration) {
	if c.precise != nil {
		t = max(t, c.lastWake+c.resolution)
	}
	d := t - c.now()
	if d <= 0 {
		return
	}
	if c.precise != nil && d > goTimerSlack {
		c.goSleep(ctx, d-goTimerSlack)
		d = t - c.now()
	}
	if c.precise != nil && d > 0 && ctx.Err() == nil {
		err := c.precise.waitUntil(t)
		// The resolution spaces the wake-ups' targets, not their actual
		// times: measured from a late wake-up, arrivals spaced exactly one
		// resolution apart (1,000/s at 1 ms) would drift up to a whole
		// resolution late, each wake-up a little later than the last.
		c.lastWake = t
		if err == nil {
			return
		}
		// The precise waiter failed; fall back to Go's timers below.
		d = t - c.now()
	}
	c.goSleep(ctx, d)
}

func (c *realClock) goSleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.timer.C:
	case <-ctx.Done():
		c.timer.Stop()
	}
}

func (c *realClock) close() {
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.precise != nil {
		c.precise.close()
	}
}
