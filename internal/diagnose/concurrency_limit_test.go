package diagnose

import (
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// concBase is a healthy target: 20 ms per request, little CPU, an idle
// machine.
var concBase = clSpec{service: 20, tgtCPU: 0.05, lgCPU: 0.05, busy: 0.3}

// concKnee is a target capped at 200 req/s (4 slots x 20 ms) offered 320:
// requests queue (500 ms of service time), the CPU idles.
func concKnee(mod func(*clSpec)) []clSpec {
	ok := clSpec{offered: 160, service: 21, met: true, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.3}
	knee := clSpec{offered: 320, achieved: 200, service: 500, p50: 450, p99: 900, tgtCPU: 0.12, lgCPU: 0.08, busy: 0.35}
	if mod != nil {
		mod(&knee)
	}
	return []clSpec{ok, knee}
}

func TestConcurrencyLimit(t *testing.T) {
	tests := []struct {
		name  string
		build func() *clSynth
		fire  bool
		limit int
		fn    string
		ep    string // locus.endpoint, when the case decides it
		why   string // a substring of the ruled-out line
	}{
		{name: "capped with idle CPU (no pprof, any language)", fire: true, limit: 4,
			build: func() *clSynth { return newClSynth().ladder(concBase, concKnee(nil)...) }},
		{name: "a pool of 2 at 4 ms", fire: true, limit: 2,
			build: func() *clSynth {
				b := concBase
				b.service = 4
				return newClSynth().ladder(b, clSpec{offered: 320, service: 4.2, met: true, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.3},
					clSpec{offered: 640, achieved: 480, service: 700, p99: 1500, tgtCPU: 0.2, lgCPU: 0.1, busy: 0.4})
			}},
		{name: "waiters parked in an application semaphore name the function", fire: true, limit: 4, fn: "example.com/shop.(*pool).do",
			build: func() *clSynth {
				s := newClSynth().ladder(concBase, concKnee(nil)...)
				// 4 s of windows x 200 req/s x 0.48 s of queueing each.
				s.addProf(evidence.ProfileBlock, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
					"runtime.selectgo;example.com/shop.(*pool).do;example.com/shop.handler" + clReqFrames:                                     384e9,
					"runtime.selectgo;net/http.(*persistConn).roundTrip;net/http.(*Transport).RoundTrip;example.com/shop.fetch" + clReqFrames: 10e9,
					"runtime.chanrecv2;example.com/shop.worker":                                                                               50e9, // idle workers: not requests
				}))
				return s
			}},
		{name: "the handler parked in the semaphore names the endpoint, not the busiest one", fire: true, limit: 4,
			fn: "example.com/shop.(*pool).do", ep: "GET /orders/export",
			build: func() *clSynth {
				two := func(sp *clSpec) {
					sp.endpoints = []clEpSpec{{name: "GET /search", share: 0.8, service: sp.service}, {name: "GET /orders/export", share: 0.2, service: sp.service}}
				}
				base := concBase
				two(&base)
				s := newClSynth().ladder(base, concKnee(two)...)
				s.addProf(evidence.ProfileBlock, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
					"runtime.selectgo;example.com/shop.(*pool).do;example.com/shop.exportOrders" + clReqFrames: 384e9,
				}))
				return s
			}},
		{name: "near miss: CPU-bound target", why: "CPU-bound",
			build: func() *clSynth {
				return newClSynth().ladder(concBase, concKnee(func(k *clSpec) { k.tgtCPU = 1.8; k.lgCPU = 0.1 })...)
			}},
		{name: "near miss: CPU-bound target with its requests queued in a pool", why: "CPU-bound",
			build: func() *clSynth {
				s := newClSynth().ladder(concBase, concKnee(func(k *clSpec) { k.tgtCPU = 1.8; k.lgCPU = 0.1 })...)
				s.addProf(evidence.ProfileBlock, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
					"runtime.selectgo;example.com/shop.(*pool).do;example.com/shop.handler" + clReqFrames: 384e9,
				}))
				return s
			}},
		{name: "queued in a pool on a machine others keep busy", fire: true, limit: 4, fn: "example.com/shop.(*pool).do",
			build: func() *clSynth {
				s := newClSynth().ladder(concBase, concKnee(func(k *clSpec) { k.tgtCPU = 1.2; k.lgCPU = 0.1; k.busy = 1 })...)
				s.addProf(evidence.ProfileBlock, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
					"runtime.selectgo;example.com/shop.(*pool).do;example.com/shop.handler" + clReqFrames: 384e9,
				}))
				return s
			}},
		{name: "near miss: one worker burning a core (single-threaded CPU-bound)", why: "compute rather than wait",
			build: func() *clSynth {
				b := concBase
				b.service = 5
				return newClSynth().ladder(b, clSpec{offered: 160, service: 5, met: true, tgtCPU: 0.8, lgCPU: 0.05, busy: 0.5},
					clSpec{offered: 320, achieved: 200, service: 400, p99: 900, tgtCPU: 0.98, lgCPU: 0.08, busy: 0.6})
			}},
		{name: "near miss: no queueing (slow everywhere)", why: "did not queue",
			build: func() *clSynth {
				b := concBase
				b.service = 300
				return newClSynth().ladder(b, clSpec{offered: 160, service: 320, p99: 550, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.3})
			}},
		{name: "near miss: objective met", why: "met at every step",
			build: func() *clSynth {
				return newClSynth().ladder(concBase, clSpec{offered: 160, service: 21, met: true, tgtCPU: 0.1, busy: 0.3})
			}},
		{name: "near miss: the database holds the workers", why: "database",
			build: func() *clSynth {
				b := concBase
				b.pgExecMSPerSec = 1200 // 15 ms per request at 80 req/s
				b.pgMax = 100
				return newClSynth().ladder(b, concKnee(func(k *clSpec) { k.pgExecMSPerSec = 3000; k.pgMax = 100; k.pgBusy = 4 })...)
			}},
		{name: "near miss: dropped connections", why: "net.connection-limit",
			build: func() *clSynth {
				return newClSynth().ladder(concBase, concKnee(func(k *clSpec) { k.listenDrops = 40; k.p50, k.p99 = 30, 1100 })...)
			}},
		{name: "listen drops that are not this target's (no retransmission tail)", fire: true, limit: 4,
			build: func() *clSynth {
				return newClSynth().ladder(concBase, concKnee(func(k *clSpec) { k.listenDrops = 400 })...)
			}},
		{name: "near miss: a mutex is what queues", why: "lock.contention",
			build: func() *clSynth {
				s := newClSynth().ladder(concBase, concKnee(nil)...)
				s.addProf(evidence.ProfileMutex, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
					"sync.(*Mutex).Unlock;example.com/shop.(*book).quote" + clReqFrames: 300e9,
				}))
				return s
			}},
		{name: "near miss: requests wait for database connections", why: "db.pool-exhausted",
			build: func() *clSynth {
				s := newClSynth().ladder(concBase, concKnee(nil)...)
				s.addProf(evidence.ProfileBlock, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
					"runtime.selectgo;github.com/jackc/puddle/v2.(*Pool).acquire;github.com/jackc/pgx/v5/pgxpool.(*Pool).Acquire;example.com/shop.invoice" + clReqFrames: 300e9,
				}))
				return s
			}},
		{name: "near miss: large responses", why: "payload.large",
			build: func() *clSynth {
				b := concBase
				b.respSize = 1 << 20
				return newClSynth().ladder(b, concKnee(func(k *clSpec) { k.respSize = 1 << 20 })...)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.build()
			c, why := clCandidate(t, concurrencyLimit{}, s.in)
			if !tt.fire {
				if c != nil {
					t.Fatalf("fired: %s (confidence %.2f)", c.Title, c.Confidence)
				}
				if !strings.Contains(why, tt.why) {
					t.Errorf("ruled out %q, want it to say %q", why, tt.why)
				}
				return
			}
			if c == nil {
				t.Fatalf("did not fire: %s", why)
			}
			if c.Confidence < MinConfidence || !c.Limiting {
				t.Errorf("confidence %.2f limiting %v, want a limiting finding above %.2f", c.Confidence, c.Limiting, MinConfidence)
			}
			if c.Locus.Resource != "concurrency" || c.Locus.Limit != tt.limit {
				t.Errorf("locus %+v, want concurrency with limit %d", c.Locus, tt.limit)
			}
			if c.Locus.Function != tt.fn {
				t.Errorf("function %q, want %q", c.Locus.Function, tt.fn)
			}
			if tt.ep != "" && c.Locus.Endpoint != tt.ep {
				t.Errorf("endpoint %q, want %q", c.Locus.Endpoint, tt.ep)
			}
			if c.ExpectedGain == nil {
				t.Errorf("no expected gain")
			}
		})
	}
}

// TestConcurrencyLimitNeedsCPUEvidence: without /proc (a remote target) a
// capped throughput alone is not enough to name the limit.
func TestConcurrencyLimitNeedsCPUEvidence(t *testing.T) {
	b := concBase
	b.noProc = true
	knee := concKnee(func(k *clSpec) { k.noProc = true })
	for i := range knee {
		knee[i].noProc = true
	}
	s := newClSynth().ladder(b, knee...)
	d := Run(s.in, []Rule{concurrencyLimit{}})
	if len(d.Findings) != 0 {
		t.Fatalf("named %s without CPU evidence", d.Findings[0].Title)
	}
	low := false
	for _, r := range d.RuledOut {
		low = low || strings.Contains(r.Why, "confidence 0.40")
	}
	if !low {
		t.Errorf("ruled out %+v, want a candidate at confidence 0.40", d.RuledOut)
	}
}
