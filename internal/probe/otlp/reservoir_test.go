package otlp

import (
	"hash/maphash"
	"strconv"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// hashR returns a hash whose r-value is r.
func hashR(r int) uint64 {
	if r >= 64 {
		return 0
	}
	return 1 << (63 - r)
}

// resTest drives a reservoir directly, with chosen r-values.
type resTest struct {
	res reservoir
	got []closedWindow
	n   int64
}

func newResTest(budget, perTrace int) *resTest {
	return &resTest{res: newReservoir(budget, perTrace)}
}

// offer offers one span of trace with r-value r in second sec.
func (rt *resTest) offer(sec int64, trace, r int) bool {
	return rt.offerHash(sec, trace, hashR(r))
}

func (rt *resTest) offerHash(sec int64, trace int, h uint64) bool {
	tb := rt.res.admit(sec, traceID(trace), h)
	if tb == nil {
		return false
	}
	rt.n++
	tb.spans = append(tb.spans, evidence.Span{TraceID: strconv.Itoa(trace), StartNS: rt.n})
	return true
}

func (rt *resTest) take(now int64) { rt.got = append(rt.got, rt.res.take(now)...) }

// window returns the counts of the window of second sec and its kept spans
// per trace.
func (rt *resTest) window(t *testing.T, sec int64) (evidence.SpanWindow, map[int][]evidence.Span) {
	t.Helper()
	for _, w := range rt.got {
		if w.stats.T == sec*1000 {
			kept := map[int][]evidence.Span{}
			for _, sp := range w.spans {
				n, _ := strconv.Atoi(sp.TraceID)
				kept[n] = append(kept[n], sp)
			}
			return w.stats, kept
		}
	}
	t.Fatalf("no window for second %d among %d", sec, len(rt.got))
	return evidence.SpanWindow{}, nil
}

// keptCounts is a window's kept spans per trace.
func keptCounts(kept map[int][]evidence.Span) map[int]int {
	out := map[int]int{}
	for n, spans := range kept {
		out[n] = len(spans)
	}
	return out
}

func sameCounts(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestReservoirWholeTraces(t *testing.T) {
	cases := []struct {
		name             string
		budget, perTrace int
		feed             func(rt *resTest)
		check            func(t *testing.T, rt *resTest)
	}{
		{
			name: "under budget every trace is kept at rate 1", budget: 10, perTrace: 100,
			feed: func(rt *resTest) {
				for i := range 9 {
					rt.offer(1, i%3, 0)
				}
			},
			check: func(t *testing.T, rt *resTest) {
				w, kept := rt.window(t, 1)
				want := evidence.SpanWindow{T: 1000, SampleRate: 1, SpansSeen: 9, SpansKept: 9, TracesSeen: 3, TracesKept: 3}
				if w != want || !sameCounts(keptCounts(kept), map[int]int{0: 3, 1: 3, 2: 3}) {
					t.Errorf("window %+v kept %v, want %+v and 3 whole traces", w, keptCounts(kept), want)
				}
				for _, spans := range kept {
					if spans[0].SampleRate != 0 || spans[0].Weight() != 1 {
						t.Errorf("unsampled span has rate %v", spans[0].SampleRate)
					}
				}
			},
		},
		{
			name: "over budget the rate halves and evicts whole traces", budget: 4, perTrace: 100,
			feed: func(rt *resTest) {
				rt.offer(1, 1, 0)
				rt.offer(1, 1, 0)
				rt.offer(1, 2, 1)
				rt.offer(1, 2, 1)
				rt.offer(1, 3, 1) // over budget: trace 1 (r-value 0) goes, whole
				rt.offer(1, 1, 0) // and stays out
				rt.offer(1, 3, 1)
			},
			check: func(t *testing.T, rt *resTest) {
				w, kept := rt.window(t, 1)
				if w.SampleRate != 0.5 || w.SpansSeen != 7 || w.SpansKept != 4 || w.TracesKept != 2 || w.TracesSeen != 4 {
					t.Errorf("window %+v", w)
				}
				if !sameCounts(keptCounts(kept), map[int]int{2: 2, 3: 2}) {
					t.Errorf("kept %v, want traces 2 and 3 whole", keptCounts(kept))
				}
				for _, spans := range kept {
					if spans[0].SampleRate != 0.5 || spans[0].Weight() != 2 {
						t.Errorf("span rate %v, want 0.5", spans[0].SampleRate)
					}
				}
				if rt.res.dropped != 3 {
					t.Errorf("dropped %d spans, want 3 (2 evicted, 1 refused)", rt.res.dropped)
				}
			},
		},
		{
			name: "a kept trace goes on whole in the next second as the rate falls", budget: 4, perTrace: 100,
			feed: func(rt *resTest) {
				rt.offer(1, 1, 1)
				for i := 2; i <= 6; i++ {
					rt.offer(2, i, 2) // the fifth pushes the rate to 1/8
				}
				rt.offer(2, 1, 1) // r-value 1 < 3, but continued
			},
			check: func(t *testing.T, rt *resTest) {
				w, kept := rt.window(t, 2)
				if w.SampleRate != 0.125 || w.TracesContinued != 1 || !sameCounts(keptCounts(kept), map[int]int{1: 1}) {
					t.Errorf("window %+v kept %v, want trace 1 continued at rate 1/8", w, keptCounts(kept))
				}
				if r := kept[1][0].SampleRate; r != 0 {
					t.Errorf("continued span carries rate %v, want its first second's (1)", r)
				}
			},
		},
		{
			name: "a dropped trace stays dropped in the next second as the rate doubles", budget: 4, perTrace: 100,
			feed: func(rt *resTest) {
				for range 4 {
					rt.offer(1, 1, 0)
				}
				rt.offer(1, 2, 1) // evicts trace 1; one span kept, room to double
				rt.offer(2, 1, 0) // rate 1 now, but trace 1 was dropped
				rt.offer(2, 3, 0)
			},
			check: func(t *testing.T, rt *resTest) {
				w1, _ := rt.window(t, 1)
				w2, kept := rt.window(t, 2)
				if w1.SampleRate != 0.5 || w2.SampleRate != 1 {
					t.Errorf("rates %v then %v, want 0.5 then 1", w1.SampleRate, w2.SampleRate)
				}
				if !sameCounts(keptCounts(kept), map[int]int{3: 1}) || w2.TracesSeen != 2 || w2.TracesKept != 1 {
					t.Errorf("second 2: %+v kept %v, want only trace 3 and 2 traces seen", w2, keptCounts(kept))
				}
			},
		},
		{
			name: "continued traces have their own room", budget: 4, perTrace: 100,
			feed: func(rt *resTest) {
				for i := 1; i <= 3; i++ {
					rt.offer(1, i, 9)
				}
				for i := 1; i <= 3; i++ {
					rt.offer(2, i, 9) // room for 2 continued spans
				}
				rt.offer(2, 3, 9)
			},
			check: func(t *testing.T, rt *resTest) {
				w, kept := rt.window(t, 2)
				if !sameCounts(keptCounts(kept), map[int]int{1: 1, 2: 1}) || w.SpansCapped != 1 || w.TracesContinued != 2 {
					t.Errorf("second 2: %+v kept %v, want traces 1 and 2, one span capped", w, keptCounts(kept))
				}
			},
		},
		{
			name: "a huge trace is cut at the spans-per-trace bound", budget: 100, perTrace: 5,
			feed: func(rt *resTest) {
				for range 20 {
					rt.offer(1, 1, 0)
				}
				rt.offer(1, 2, 0)
			},
			check: func(t *testing.T, rt *resTest) {
				w, kept := rt.window(t, 1)
				if !sameCounts(keptCounts(kept), map[int]int{1: 5, 2: 1}) || w.SpansCapped != 15 || w.SampleRate != 1 {
					t.Errorf("window %+v kept %v, want 5 spans of trace 1, 15 capped", w, keptCounts(kept))
				}
			},
		},
		{
			name: "the rate doubles back one second at a time when load falls", budget: 8, perTrace: 100,
			feed: func(rt *resTest) {
				for i := range 64 {
					rt.offer(1, i, i%8) // 8 traces of r-value 7 fill the budget at rate 1/128
				}
				for sec := int64(2); sec <= 10; sec++ {
					rt.offer(sec, 1000+int(sec), 0)
					rt.take(sec)
				}
			},
			check: func(t *testing.T, rt *resTest) {
				w, _ := rt.window(t, 1)
				if w.SampleRate != 1.0/128 || w.SpansKept != 8 {
					t.Fatalf("second 1: %+v, want 8 spans kept at rate 1/128", w)
				}
				// Second 1 was full: second 2 keeps its rate; from then on
				// each second doubles it, up to 1.
				want := []float64{1.0 / 128, 1.0 / 64, 1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2, 1, 1}
				for i, rate := range want {
					sec := int64(i + 2)
					if w, _ := rt.window(t, sec); w.SampleRate != rate {
						t.Errorf("second %d: rate %v, want %v", sec, w.SampleRate, rate)
					}
				}
			},
		},
		{
			name: "a writer behind loses the oldest seconds' spans, not their counts", budget: 10, perTrace: 100,
			feed: func(rt *resTest) {
				for sec := int64(1); sec <= 7; sec++ {
					rt.offer(sec, int(sec), 0)
				}
			},
			check: func(t *testing.T, rt *resTest) {
				for sec := int64(1); sec <= 7; sec++ {
					w, kept := rt.window(t, sec)
					lost := sec <= 7-maxPendingWindows
					if w.Lost != lost || w.SpansSeen != 1 || (len(kept) == 0) != lost || w.SpansKept != int64(len(kept)) {
						t.Errorf("second %d: %+v with %d traces, want lost %v", sec, w, len(kept), lost)
					}
				}
				if rt.res.dropped != 7-maxPendingWindows {
					t.Errorf("dropped %d", rt.res.dropped)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt := newResTest(c.budget, c.perTrace)
			c.feed(rt)
			rt.take(0)
			c.check(t, rt)
		})
	}
}

// checkBounds asserts the reservoir's memory bounds.
func checkBounds(t *testing.T, r *reservoir) {
	t.Helper()
	room := r.contRoom()
	if w := r.cur; w != nil {
		if w.freshSpans > r.budget || w.contSpans > room || len(w.traces) > r.budget+room {
			t.Fatalf("window holds %d new + %d continued spans in %d traces; budget %d + %d",
				w.freshSpans, w.contSpans, len(w.traces), r.budget, room)
		}
		if len(w.dropped)+len(w.prevDropped) > 2*r.budget+room || len(w.prevKept) > r.budget+room {
			t.Fatalf("window remembers %d+%d dropped and %d kept trace ids", len(w.dropped), len(w.prevDropped), len(w.prevKept))
		}
	}
	if len(r.carry.kept) > r.budget+room || len(r.carry.dropped) > 2*r.budget+room {
		t.Fatalf("carry holds %d kept and %d dropped trace ids", len(r.carry.kept), len(r.carry.dropped))
	}
	if len(r.done) > maxPendingWindows+1 {
		for _, w := range r.done[:len(r.done)-maxPendingWindows] {
			if !w.lost {
				t.Fatalf("%d windows pending with spans", len(r.done))
			}
		}
	}
}

// A flood of unique trace ids keeps memory within the bounds, and the
// estimate of the traces seen stays close to what was sent.
func TestReservoirUniqueIDFlood(t *testing.T) {
	const budget, secs, perSec = 64, 20, 5000
	rt := newResTest(budget, 8)
	seed := maphash.MakeSeed()
	n := 0
	for sec := int64(1); sec <= secs; sec++ {
		for range perSec {
			id := traceID(n)
			rt.offerHash(sec, n, maphash.Bytes(seed, id[:]))
			n++
			if n%500 == 0 {
				checkBounds(t, &rt.res)
			}
		}
		rt.take(sec)
	}
	rt.take(0)
	var est, kept int64
	for _, w := range rt.got {
		if w.stats.SpansSeen != perSec || w.stats.SpansKept > budget {
			t.Errorf("window %+v", w.stats)
		}
		est += w.stats.TracesSeen
		kept += w.stats.SpansKept
	}
	if len(rt.got) != secs || kept == 0 {
		t.Fatalf("%d windows, %d spans kept", len(rt.got), kept)
	}
	// ~40 kept traces a second give ~16% error each; over 20 seconds ~4%.
	if sent := int64(secs * perSec); est < sent*3/4 || est > sent*5/4 {
		t.Errorf("estimated %d traces, sent %d", est, sent)
	}
}

// FuzzReservoir feeds the reservoir arbitrary arrivals (seconds, trace ids,
// hashes) and checks the bounds and the whole-trace property: in every
// second a kept trace has all the spans offered of it (unless a bound cut
// it, which is counted); a trace kept in one second is kept in the next;
// a trace dropped in one second is dropped in the next.
func FuzzReservoir(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 1, 0, 0, 2, 1, 1, 1, 0, 1, 3, 2})
	f.Add([]byte{0, 200, 0, 0, 201, 5, 0, 202, 3, 0, 203, 1, 0, 1, 0, 1, 1, 0, 1, 2, 0, 2, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 3<<12 {
			return // a few thousand arrivals are plenty
		}
		const budget, perTrace = 8, 4
		rt := newResTest(budget, perTrace)
		type key struct {
			sec   int64
			trace int
		}
		offered := map[key]int{}
		hashes := map[int]uint64{} // one hash per trace id, as the receiver's
		var sec int64 = 1
		for i := 0; i+2 < len(data); i += 3 {
			sec += int64(data[i] % 3 / 2) // a new second one time in three
			trace := int(data[i+1])
			h, ok := hashes[trace]
			if !ok {
				// r-values 0..11, so that an 8-span budget is sampled deep.
				h = hashR(int(data[i+2]%12)) | uint64(trace)
				hashes[trace] = h
			}
			rt.offerHash(sec, trace, h)
			// Arrivals land in the open window (the clock never steps back here).
			offered[key{rt.res.cur.sec, trace}]++
			checkBounds(t, &rt.res)
			rt.take(sec)
		}
		rt.take(0)
		type windowKept struct {
			stats evidence.SpanWindow
			kept  map[int]int
		}
		var ws []windowKept
		for _, w := range rt.got {
			kept := map[int]int{}
			for _, sp := range w.spans {
				n, _ := strconv.Atoi(sp.TraceID)
				kept[n]++
			}
			if w.stats.Lost || w.stats.SpansKept != int64(len(w.spans)) {
				t.Fatalf("window %+v with %d spans", w.stats, len(w.spans))
			}
			ws = append(ws, windowKept{w.stats, kept})
		}
		for i, w := range ws {
			sec := w.stats.T / 1000
			for trace, n := range w.kept {
				want := min(offered[key{sec, trace}], perTrace)
				if n > want || (n < want && w.stats.SpansCapped == 0) {
					t.Fatalf("second %d: trace %d kept with %d of %d spans offered", sec, trace, n, offered[key{sec, trace}])
				}
			}
			if i == 0 {
				continue
			}
			prev := ws[i-1]
			psec := prev.stats.T / 1000
			for trace := range 256 {
				if offered[key{psec, trace}] == 0 || offered[key{sec, trace}] == 0 {
					continue
				}
				_, was := prev.kept[trace]
				_, is := w.kept[trace]
				if was && !is && w.stats.SpansCapped == 0 {
					t.Fatalf("trace %d kept in second %d, dropped in %d", trace, psec, sec)
				}
				if !was && is {
					t.Fatalf("trace %d dropped in second %d, kept in %d", trace, psec, sec)
				}
			}
		}
	})
}
