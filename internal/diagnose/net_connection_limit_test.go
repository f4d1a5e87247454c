package diagnose

import (
	"strings"
	"testing"
)

func TestNetConnectionLimit(t *testing.T) {
	base := clSpec{service: 3, tgtCPU: 0.05, lgCPU: 0.05, busy: 0.3}
	ok := clSpec{offered: 160, service: 3, met: true, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.3}
	knee := func(mod func(*clSpec)) clSpec {
		k := clSpec{offered: 640, achieved: 600, service: 8, p50: 9, p99: 1030, tgtCPU: 0.2, lgCPU: 0.1, busy: 0.4}
		mod(&k)
		return k
	}
	tests := []struct {
		name     string
		build    func() *clSynth
		fire     bool
		limiting bool
		resource string
		process  string
		limit    int
		why      string
	}{
		{name: "SYNs dropped at the listen queue, retried after a second", fire: true, limiting: true, resource: "network",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.listenDrops = 60 }))
			}},
		{name: "connections refused (client-side evidence only)", fire: true, limiting: true, resource: "network",
			build: func() *clSynth {
				b, o := base, ok
				b.noProc, o.noProc = true, true
				return newClSynth().ladder(b, o, knee(func(k *clSpec) {
					k.noProc, k.p99 = true, 40
					k.errs = map[string]int64{"refused": 30}
				}))
			}},
		{name: "descriptors at their limit", fire: true, limiting: true, resource: "fd", limit: 1024,
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) {
					k.fds, k.fdLimit, k.p99 = 1020, 1024, 40
					k.errs = map[string]int64{"reset": 20}
				}))
			}},
		{name: "the limit sits in a proxy in front of the target", fire: true, limiting: true, resource: "network", process: "nginx",
			build: func() *clSynth {
				b, o := base, ok
				b.name, o.name = "nginx", "nginx"
				return newClSynth().ladder(b, o, knee(func(k *clSpec) { k.listenDrops = 60; k.name = "nginx" }))
			}},
		{name: "near miss: 5xx answers, not lost connections", why: "no connection was lost",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) {
					k.p99 = 40
					k.errs, k.status = map[string]int64{"5xx": 60}, map[string]int64{"503": 60}
				}))
			}},
		{name: "near miss: timeouts of a slow target", why: "no connection was lost",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) {
					k.p50, k.p99, k.service = 900, 1800, 900
					k.errs = map[string]int64{"timeout": 60}
				}))
			}},
		{name: "near miss: drops at low load as much as at the knee (a neighbour's)", why: "no connection was lost",
			build: func() *clSynth {
				b, o := base, ok
				b.listenDrops, o.listenDrops = 40, 40
				return newClSynth().ladder(b, o, knee(func(k *clSpec) { k.listenDrops = 40; k.p99 = 40 }))
			}},
		{name: "near miss: a neighbour's drops (no retransmission tail in our requests)", why: "not this target's connections",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.listenDrops = 800; k.p99 = 120 }))
			}},
		{name: "near miss: a slow tail without lost connections", why: "no connection was lost",
			build: func() *clSynth { return newClSynth().ladder(base, ok, knee(func(k *clSpec) {})) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.build()
			c, why := clCandidate(t, netConnectionLimit{}, s.in)
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
			if c.Confidence < MinConfidence || c.Limiting != tt.limiting {
				t.Errorf("confidence %.2f limiting %v, want above %.2f and limiting %v", c.Confidence, c.Limiting, MinConfidence, tt.limiting)
			}
			if c.Locus.Resource != tt.resource || c.Locus.Process != tt.process {
				t.Errorf("locus %+v, want resource %s process %q", c.Locus, tt.resource, tt.process)
			}
			if tt.limit > 0 && c.Locus.Limit != tt.limit {
				t.Errorf("limit %d, want %d", c.Locus.Limit, tt.limit)
			}
		})
	}
}
