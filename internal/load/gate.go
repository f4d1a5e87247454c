package load

import (
	"sync"
	"time"
)

// readGate lets a worker that has sent a request wait for the pacer's next
// wake-up before it reads the answer, when that wake-up is near anyway.
//
// Why: at high rates the pacer wakes every PacingResolution and most
// answers arrive well within that. A worker blocked in a read is woken by
// the kernel once per answer, and on a virtual machine each wake-up of an
// idle process (with the Go runtime's sysmon thread it wakes) costs more
// CPU than the rest of the request (docs/performance.md). Workers that wait
// here are released together at the pacer's wake-up and find their answers
// waiting: one wake-up for a batch. The latency recorded does not grow: the
// answer's end is its kernel receive timestamp (rxReader), not the time it
// was read. A worker waits only when the pacer will wake within the
// resolution; otherwise it reads at once, as without the gate.
type readGate struct {
	start time.Time
	res   time.Duration

	mu      sync.Mutex
	ch      chan struct{} // closed at the pacer's next wake-up
	waiters int           // workers waiting on ch
	wake    time.Duration // when the pacer wakes next (offset), while !shut
	shut    bool          // the pacer has stopped: nobody waits any more
}

func newReadGate(start time.Time, res time.Duration) *readGate {
	return &readGate{start: start, res: res, ch: make(chan struct{}), shut: true}
}

// wait returns at the pacer's next wake-up when that is within the
// resolution from now, else at once — and at once when the request's
// deadline is near, so that an answer in time is not read too late.
func (g *readGate) wait(deadline time.Time) {
	if time.Until(deadline) < 2*g.res {
		return
	}
	now := time.Since(g.start)
	g.mu.Lock()
	if g.shut || g.wake-now > g.res {
		g.mu.Unlock()
		return
	}
	g.waiters++
	ch := g.ch
	g.mu.Unlock()
	<-ch
}

// release is the pacer's wake-up: it frees every waiting worker, and says
// when the pacer will wake next (at an arrival due at next, or up to the
// resolution later).
func (g *readGate) release(next time.Duration) {
	g.mu.Lock()
	g.releaseLocked()
	g.wake, g.shut = next, false
	g.mu.Unlock()
}

// close frees every waiting worker and makes later waits return at once.
func (g *readGate) close() {
	g.mu.Lock()
	g.releaseLocked()
	g.shut = true
	g.mu.Unlock()
}

func (g *readGate) releaseLocked() {
	if g.waiters > 0 {
		close(g.ch)
		g.ch = make(chan struct{})
		g.waiters = 0
	}
}
