package otlp

import (
	"math"
	"math/bits"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// reservoir keeps whole traces, by consistent probability sampling on the
// trace id, per one-second window of arrival.
//
// Every trace id has an r-value: the number of leading zero bits of a
// seeded hash of the id (0..64; r ≥ s with probability 2^-s), the same for
// all its spans. A window has a shift s and keeps the traces first seen in
// it whose r-value is at least s: a keep probability of 2^-s, decided per
// trace, never per span. This is OpenTelemetry's consistent probability
// sampling with power-of-two probabilities (p-value s, r-value r): the kept
// sets nest, so a trace kept at one rate is kept at every higher one.
//
// The rate adapts to load. When the spans of the traces first seen in a
// window exceed the window's budget, s grows by one and the traces whose
// r-value is now too small are evicted whole (about half of what was
// kept); s never falls within a window, so a trace once dropped in a window
// stays dropped in it. The next window starts at the same s, or one lower
// (twice the probability) when that would still have fitted with room to
// spare.
//
// Traces that span two windows stay whole: the traces kept in a window are
// kept in the next one whatever its rate ("continued", on an allowance of
// their own), and the traces dropped in a window that the next window's
// rate would keep (those with r-value s-1 when the rate doubles) are
// dropped in it. The dropped ones are remembered only up to a bound; a
// window that overflowed it does not let the next one raise the rate.
//
// Memory is bounded whatever arrives: a window holds at most budget spans
// of new traces plus budget/2 of continued ones, perTrace spans of one
// trace, and remembers at most budget dropped trace ids besides those
// inherited; a flood of unique trace ids only raises s.
//
// reservoir is not safe for concurrent use; the Receiver locks it.
type reservoir struct {
	budget   int // spans of traces first seen in a window
	perTrace int // spans of one trace kept per window

	cur   *window   // the open window, nil between windows
	carry carry     // what the next window inherits from the last closed one
	last  int64     // the last closed window's second
	done  []*window // closed windows not yet written

	seen     int64 // spans offered
	dropped  int64 // spans not kept (refused, evicted, capped or lost)
	capped   int64 // of dropped: spans of kept traces beyond a bound
	maxShift int   // the lowest rate used so far: 2^-maxShift
}

// carry is what a window inherits from the one before it.
type carry struct {
	shift   int
	kept    map[pcommon.TraceID]float64 // kept traces and their keep probability
	dropped map[pcommon.TraceID]int     // dropped traces the new shift would keep, by r-value
}

type window struct {
	sec    int64
	shift  int // a new trace is kept when its r-value is ≥ shift
	traces map[pcommon.TraceID]*traceBuf

	freshSpans int // spans held (reserved) of traces first seen here
	contSpans  int // spans held of traces continued from the previous window

	prevKept    map[pcommon.TraceID]float64
	prevDropped map[pcommon.TraceID]int
	// dropped holds the r-values of dropped traces the next window could
	// keep: those with r-value shift-1 (kept if the rate doubles) and those
	// dropped because the previous window dropped them.
	dropped     map[pcommon.TraceID]int
	droppedFull bool // a trace that belongs in dropped did not fit

	spansSeen int64
	capped    int64 // spans of kept traces dropped at a bound
	forced    int64 // distinct traces dropped by an earlier decision (forceDrop)
	lost      bool  // the writer fell behind: spans discarded, counts kept

	stats evidence.SpanWindow // filled as the window closes
}

type traceBuf struct {
	r     int
	cont  bool    // continued from the previous window
	rate  float64 // keep probability of a continued trace
	spans []evidence.Span
}

// maxPendingWindows bounds how many closed windows wait for the writer; a
// writer that falls further behind loses the oldest window's spans
// (counted as dropped; its counts are still written).
const maxPendingWindows = 4

// raiseFill: the next window doubles the keep probability only when the
// doubled sample would fill at most this share of the budget, so that a
// steady load settles on one rate (kept spans between 1/2 and 1 of the
// budget) instead of alternating between two.
const raiseFill = 0.75

// contShare is the share of the budget held for traces continued from the
// previous window, on top of it. A trace straddles two windows when its
// spans are exported in batches arriving in different seconds (typically
// the server span, which ends last). In a zoo hunt (concurrency.limit) up
// to a third of a second's traces were continued, but with one span each:
// at most 17% of the second's spans. Half the budget leaves a wide margin.
const contShare = 0.5

func newReservoir(budget, perTrace int) reservoir {
	return reservoir{budget: budget, perTrace: perTrace, last: math.MinInt64}
}

// rValue is the r-value of a trace id's hash: its leading zero bits.
func rValue(h uint64) int { return bits.LeadingZeros64(h) }

// admit offers one span of the trace id with hash h, arriving in second
// sec. It returns the trace's buffer, where the caller appends the span
// (room for it is reserved), or nil when the span is dropped (counted).
func (r *reservoir) admit(sec int64, id pcommon.TraceID, h uint64) *traceBuf {
	if r.cur != nil && sec > r.cur.sec {
		r.close()
	}
	if r.cur == nil {
		r.open(max(sec, r.last+1))
	}
	r.seen++
	w := r.cur
	w.spansSeen++
	tb := r.place(w, id, rValue(h))
	if tb == nil {
		r.dropped++
	}
	return tb
}

// place decides one span's fate in w.
func (r *reservoir) place(w *window, id pcommon.TraceID, rv int) *traceBuf {
	if tb := w.traces[id]; tb != nil {
		switch {
		case len(tb.spans) >= r.perTrace:
		case tb.cont && w.contSpans < r.contRoom():
			w.contSpans++
			return tb
		case !tb.cont:
			r.shrink(w)
			if w.traces[id] != tb {
				return nil // evicted with its trace
			}
			if w.freshSpans < r.budget { // else even the lowest rate is full
				w.freshSpans++
				return tb
			}
		}
		r.capSpan(w)
		return nil
	}
	if _, ok := w.dropped[id]; ok {
		return nil
	}
	if rate, ok := w.prevKept[id]; ok {
		delete(w.prevKept, id)
		if w.contSpans >= r.contRoom() {
			// No room: the trace loses this window's part.
			r.capSpan(w)
			r.forceDrop(w, id, rv)
			return nil
		}
		tb := &traceBuf{r: rv, cont: true, rate: rate}
		w.traces[id] = tb
		w.contSpans++
		return tb
	}
	if prv, ok := w.prevDropped[id]; ok {
		delete(w.prevDropped, id)
		r.forceDrop(w, id, prv)
		return nil
	}
	if rv >= w.shift {
		r.shrink(w)
	}
	if rv < w.shift || w.freshSpans >= r.budget {
		r.noteDropped(w, id, rv)
		return nil
	}
	tb := &traceBuf{r: rv}
	w.traces[id] = tb
	w.freshSpans++
	return tb
}

func (r *reservoir) contRoom() int { return max(1, int(float64(r.budget)*contShare)) }

func (r *reservoir) capSpan(w *window) {
	w.capped++
	r.capped++
}

// forceDrop drops a trace because of a decision made in the previous
// window. The entry moves from what the window inherited, so memory stays
// within what was carried.
func (r *reservoir) forceDrop(w *window, id pcommon.TraceID, rv int) {
	w.dropped[id] = rv
	w.forced++
}

// shrink makes room for one more span of a new trace: while the budget is
// full it halves w's keep probability, evicting whole the traces the lower
// rate does not keep.
func (r *reservoir) shrink(w *window) {
	for w.freshSpans+1 > r.budget && w.shift < 64 {
		w.shift++
		r.maxShift = max(r.maxShift, w.shift)
		// Dropped traces below the new band can no longer be kept by the
		// next window (its rate is at most twice this one's); the band is
		// about to be refilled by the evictions.
		for id, rv := range w.dropped {
			if rv < w.shift-1 {
				delete(w.dropped, id)
			}
		}
		w.droppedFull = false
		for id, tb := range w.traces {
			if tb.cont || tb.r >= w.shift {
				continue
			}
			w.freshSpans -= len(tb.spans)
			r.dropped += int64(len(tb.spans))
			delete(w.traces, id)
			r.noteDropped(w, id, tb.r)
		}
	}
}

// noteDropped remembers a dropped trace the next window could keep.
func (r *reservoir) noteDropped(w *window, id pcommon.TraceID, rv int) {
	if rv < w.shift-1 {
		return // kept by no rate the next window may use
	}
	if len(w.dropped) >= r.budget {
		w.droppedFull = true
		return
	}
	w.dropped[id] = rv
}

// open starts the window of second sec from what the last one left.
func (r *reservoir) open(sec int64) {
	c := r.carry
	r.cur = &window{
		sec:         sec,
		shift:       c.shift,
		traces:      map[pcommon.TraceID]*traceBuf{},
		prevKept:    c.kept,
		prevDropped: c.dropped,
		dropped:     map[pcommon.TraceID]int{},
	}
	r.carry = carry{shift: c.shift}
}

// close ends the open window: it works out what the next window inherits
// and queues the window for the writer.
func (r *reservoir) close() {
	w := r.cur
	r.cur = nil
	r.last = w.sec
	next := w.shift
	if next > 0 && !w.droppedFull && 2*float64(w.freshSpans) <= raiseFill*float64(r.budget) {
		next--
	}
	rate := keepRate(w.shift)
	c := carry{shift: next, kept: make(map[pcommon.TraceID]float64, len(w.traces))}
	for id, tb := range w.traces {
		if tb.cont {
			c.kept[id] = tb.rate
		} else {
			c.kept[id] = rate
		}
	}
	for id, rv := range w.dropped {
		if rv >= next {
			if c.dropped == nil {
				c.dropped = map[pcommon.TraceID]int{}
			}
			c.dropped[id] = rv
		}
	}
	r.carry = c
	w.prevKept, w.prevDropped, w.dropped = nil, nil, nil
	w.summarize()
	r.done = append(r.done, w)
	// A writer that fell behind loses the oldest windows' spans; their
	// counts (a few numbers) are still written.
	for _, old := range r.done[:max(0, len(r.done)-maxPendingWindows)] {
		if !old.lost {
			for _, tb := range old.traces {
				r.dropped += int64(len(tb.spans))
			}
			old.traces, old.lost = nil, true
			old.stats.SpansKept, old.stats.TracesKept, old.stats.TracesContinued = 0, 0, 0
			old.stats.Lost = true
		}
	}
}

// keepRate is the keep probability of shift s.
func keepRate(s int) float64 { return math.Ldexp(1, -s) }

// take returns the windows closed before second now (all windows when now
// is 0), oldest first, each with its counts and its spans in start order,
// and forgets them.
func (r *reservoir) take(now int64) []closedWindow {
	if r.cur != nil && (now == 0 || now > r.cur.sec) {
		r.close()
	}
	out := make([]closedWindow, 0, len(r.done))
	for _, w := range r.done {
		out = append(out, w.emit())
	}
	clear(r.done)
	r.done = r.done[:0]
	return out
}

// closedWindow is one window ready to be written.
type closedWindow struct {
	stats evidence.SpanWindow
	spans []evidence.Span
}

// summarize fills the window's counts as it closes.
func (w *window) summarize() {
	rate := keepRate(w.shift)
	var fresh, cont, spans int64
	for _, tb := range w.traces {
		if tb.cont {
			cont++
		} else {
			fresh++
		}
		spans += int64(len(tb.spans))
	}
	w.stats = evidence.SpanWindow{
		T:               w.sec * 1000,
		SampleRate:      rate,
		SpansSeen:       w.spansSeen,
		SpansKept:       spans,
		TracesKept:      fresh + cont,
		TracesContinued: cont,
		// New traces with an r-value ≥ shift were all kept, so the kept
		// ones over the rate estimate how many arrived (exact at rate 1).
		TracesSeen:  cont + w.forced + int64(math.Round(float64(fresh)/rate)),
		SpansCapped: w.capped,
	}
}

// emit returns the window's counts and its spans in start order, each
// marked with its trace's keep probability.
func (w *window) emit() closedWindow {
	cw := closedWindow{stats: w.stats}
	for _, tb := range w.traces {
		rate := w.stats.SampleRate
		if tb.cont {
			rate = tb.rate
		}
		for _, sp := range tb.spans {
			if rate < 1 {
				sp.SampleRate = rate
			}
			cw.spans = append(cw.spans, sp)
		}
	}
	slices.SortFunc(cw.spans, func(a, b evidence.Span) int {
		if a.StartNS != b.StartNS {
			if a.StartNS < b.StartNS {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.TraceID, b.TraceID); c != 0 {
			return c
		}
		return strings.Compare(a.SpanID, b.SpanID)
	})
	return cw
}
