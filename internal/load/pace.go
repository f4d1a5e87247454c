package load

import (
	"context"
	"sync"
	"time"
)

// pacer dispatches arrivals at their intended times. Its own goroutine
// sleeps until the next one is due (run); workers that are awake anyway,
// having just finished a request, also send whatever is due (tryPump), so
// at high rates arrivals leave on time without extra wake-ups. An arrival
// whose time has passed is dispatched at once: late, never skipped.
type pacer struct {
	mu       sync.Mutex
	arr      *arrivals
	until    time.Duration
	max      int64 // 0: no limit
	dispatch func(intended time.Duration)
	next     time.Duration // the next arrival, while !done
	n        int64         // dispatched so far
	done     bool
	ranOut   bool      // done because the schedule ended (not max or ctx)
	gate     *readGate // nil: workers never wait for the pacer's wake-up
}

func newPacer(arr *arrivals, until time.Duration, maxArrivals int64, dispatch func(time.Duration)) *pacer {
	p := &pacer{arr: arr, until: until, max: maxArrivals, dispatch: dispatch}
	p.advance()
	return p
}

// advance loads the next arrival, or marks the pacer done. Called with mu
// held (or before the pacer is shared).
func (p *pacer) advance() {
	if p.max > 0 && p.n >= p.max {
		p.done = true
		return
	}
	t, ok := p.arr.next()
	if !ok || t >= p.until {
		p.done, p.ranOut = true, true
		return
	}
	p.next = t
}

// pumpLocked dispatches every arrival due by now; mu is held.
func (p *pacer) pumpLocked(now time.Duration) {
	for !p.done && p.next <= now {
		p.dispatch(p.next)
		p.n++
		p.advance()
	}
}

// tryPump dispatches what is due by now unless another goroutine is at it.
func (p *pacer) tryPump(now time.Duration) {
	if p.mu.TryLock() {
		p.pumpLocked(now)
		p.mu.Unlock()
	}
}

// run paces until the schedule ends (then holds until `until`), max
// arrivals were dispatched, or ctx is done. When it returns, no goroutine
// will dispatch again. It returns the number dispatched.
func (p *pacer) run(ctx context.Context, clk clock) int64 {
	done := ctx.Done()
	for {
		p.mu.Lock()
		select {
		case <-done:
			p.done, p.ranOut = true, false
		default:
			p.pumpLocked(clk.now())
		}
		finished, next, ranOut := p.done, p.next, p.ranOut
		p.mu.Unlock()
		if p.gate != nil {
			if finished {
				p.gate.close()
			} else {
				p.gate.release(next)
			}
		}
		if finished {
			if ranOut {
				clk.sleepUntil(ctx, p.until) // hold the run's full length
			}
			return p.dispatched()
		}
		clk.sleepUntil(ctx, next)
	}
}

func (p *pacer) dispatched() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// pace runs a pacer without workers pumping (tests, and the shape of it).
func pace(ctx context.Context, clk clock, arr *arrivals, until time.Duration, maxArrivals int64, dispatch func(intended time.Duration)) int64 {
	return newPacer(arr, until, maxArrivals, dispatch).run(ctx, clk)
}
