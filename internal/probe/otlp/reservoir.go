package otlp

import (
	"container/heap"
	"slices"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// reservoir keeps at most limit spans per one-second window of arrival.
//
// It is a bottom-k sample: every span gets the priority of its trace (a
// seeded hash of the trace id, uniform and the same for all spans of one
// trace), and a window keeps the limit spans of lowest priority. That is a
// uniform sample of the window's spans, like a classic reservoir, with one
// property a per-span reservoir lacks: the spans of one trace are kept or
// dropped together, so a kept request has all its calls, and the same
// traces tend to be kept from one window to the next.
//
// reservoir is not safe for concurrent use; the Receiver locks it.
type reservoir struct {
	limit int
	cur   window
	done  []window // closed windows not yet written

	seen    int64 // spans offered
	dropped int64 // spans not kept (refused or evicted)
}

type window struct {
	sec  int64 // arrival second (Unix)
	heap spanHeap
}

type entry struct {
	prio uint64
	seq  uint64 // arrival order, so ties between traces break the same way every time
	span evidence.Span
}

// maxPendingWindows bounds how many closed windows wait for the writer; a
// writer that falls further behind loses the oldest (counted as dropped).
const maxPendingWindows = 4

// admit reports whether a span of priority prio arriving in second sec
// would be kept right now. It rolls the window over when sec moves on.
// Every span offered must be either admitted and then added, or counted as
// refused with refuse.
func (r *reservoir) admit(sec int64, prio uint64) bool {
	r.roll(sec)
	r.seen++
	h := r.cur.heap
	if len(h) < r.limit {
		return true
	}
	if r.limit == 0 || prio >= h[0].prio {
		r.dropped++
		return false
	}
	return true
}

// add keeps an admitted span, evicting the highest-priority one when the
// window is full.
func (r *reservoir) add(prio, seq uint64, sp evidence.Span) {
	heap.Push(&r.cur.heap, entry{prio: prio, seq: seq, span: sp})
	if len(r.cur.heap) > r.limit {
		heap.Pop(&r.cur.heap)
		r.dropped++
	}
}

func (r *reservoir) roll(sec int64) {
	if sec == r.cur.sec {
		return
	}
	if sec < r.cur.sec {
		return // the clock stepped back: keep filling the current window
	}
	if len(r.cur.heap) > 0 {
		r.done = append(r.done, r.cur)
		if len(r.done) > maxPendingWindows {
			r.dropped += int64(len(r.done[0].heap))
			r.done = slices.Delete(r.done, 0, 1)
		}
	}
	r.cur = window{sec: sec}
}

// take returns the spans of the windows closed before second now (all
// windows when now is 0), in start order within each window, and forgets
// them.
func (r *reservoir) take(now int64) []evidence.Span {
	if now == 0 || now > r.cur.sec {
		r.roll(max(now, r.cur.sec+1))
	}
	var out []evidence.Span
	for _, w := range r.done {
		start := len(out)
		for _, e := range w.heap {
			out = append(out, e.span)
		}
		slices.SortFunc(out[start:], func(a, b evidence.Span) int {
			if a.StartNS != b.StartNS {
				if a.StartNS < b.StartNS {
					return -1
				}
				return 1
			}
			return 0
		})
	}
	r.done = r.done[:0]
	return out
}

// spanHeap is a max-heap on (prio, seq): the root is the next to evict.
type spanHeap []entry

func (h spanHeap) Len() int { return len(h) }
func (h spanHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio > h[j].prio
	}
	return h[i].seq > h[j].seq
}
func (h spanHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *spanHeap) Push(x any)   { *h = append(*h, x.(entry)) }
func (h *spanHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
