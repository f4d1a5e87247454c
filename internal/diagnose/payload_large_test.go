package diagnose

import (
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

func TestPayloadLarge(t *testing.T) {
	const mib = 1 << 20
	base := clSpec{service: 5, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.4, respSize: mib}
	ok := clSpec{offered: 160, service: 6, met: true, tgtCPU: 0.3, lgCPU: 0.05, busy: 0.5, respSize: mib}
	knee := func(mod func(*clSpec)) clSpec {
		k := clSpec{offered: 320, achieved: 250, service: 400, p99: 900, tgtCPU: 0.7, lgCPU: 0.1, busy: 0.9, respSize: mib}
		if mod != nil {
			mod(&k)
		}
		return k
	}
	jsonCPU := clProfileOf("cpu", "nanoseconds", map[string]int64{
		"encoding/json.appendString;encoding/json.Marshal;example.com/shop.writeJSON;example.com/shop.listProducts" + clReqFrames: 50e6,
		"github.com/jackc/pgx/v5.(*baseRows).Scan;example.com/shop.listProducts" + clReqFrames:                                    30e6,
		"example.com/shop.listProducts" + clReqFrames:                                                                             20e6,
	})
	mixed := func(large float64) []clEpSpec {
		return []clEpSpec{
			{name: "GET /catalog", share: large, size: 2 * mib, service: 40},
			{name: "GET /item", share: 1 - large, size: 1024, service: 3},
		}
	}
	tests := []struct {
		name     string
		build    func() *clSynth
		fire     bool
		limiting bool
		endpoint string
		why      string
	}{
		{name: "1 MiB responses at 250 MB/s with a queue", fire: true, limiting: true, endpoint: "GET /work",
			build: func() *clSynth { return newClSynth().ladder(base, ok, knee(nil)) }},
		{name: "CPU profile in the encoder", fire: true, limiting: true, endpoint: "GET /work",
			build: func() *clSynth {
				s := newClSynth().ladder(base, ok, knee(nil))
				s.addProf(evidence.ProfileCPU, evidence.ProfileFetched, len(s.in.Steps)-1, jsonCPU)
				return s
			}},
		{name: "one large endpoint among small ones, slower in proportion", fire: true, limiting: true, endpoint: "GET /catalog",
			build: func() *clSynth {
				b, o := base, ok
				b.endpoints, o.endpoints = mixed(0.3), mixed(0.3)
				return newClSynth().ladder(b, o, knee(func(k *clSpec) { k.endpoints = mixed(0.3) }))
			}},
		{name: "near miss: 100 KiB responses", why: "below 256 KiB",
			build: func() *clSynth {
				b, o := base, ok
				b.respSize, o.respSize = 100<<10, 100<<10
				return newClSynth().ladder(b, o, knee(func(k *clSpec) { k.respSize = 100 << 10 }))
			}},
		{name: "near miss: a rare large download among many small requests", why: "GET /item",
			build: func() *clSynth {
				eps := []clEpSpec{
					{name: "GET /export", share: 0.004, size: 300 << 10, service: 40},
					{name: "GET /item", share: 0.996, size: 8 << 10, service: 3},
				}
				b, o := base, ok
				b.endpoints, o.endpoints = eps, eps
				return newClSynth().ladder(b, o, knee(func(k *clSpec) { k.endpoints = eps }))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.build()
			c, why := clCandidate(t, payloadLarge{}, s.in)
			if !tt.fire {
				if c != nil && c.Confidence >= MinConfidence {
					t.Fatalf("fired: %s (confidence %.2f)", c.Title, c.Confidence)
				}
				if c == nil && !strings.Contains(why, tt.why) {
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
			if c.Locus.Endpoint != tt.endpoint {
				t.Errorf("endpoint %q, want %q", c.Locus.Endpoint, tt.endpoint)
			}
		})
	}
}

// TestPayloadLargeNotCostly: large responses on a target that is nowhere
// near a limit are not named.
func TestPayloadLargeNotCostly(t *testing.T) {
	s := newClSynth().ladder(clSpec{service: 5, tgtCPU: 0.01, busy: 0.2, respSize: 300 << 10},
		clSpec{offered: 40, service: 700, p99: 900, tgtCPU: 0.02, busy: 0.2, respSize: 300 << 10})
	d := Run(s.in, []Rule{payloadLarge{}})
	if len(d.Findings) != 0 {
		t.Fatalf("named %s on a target with 12 MB/s of responses and no queue", d.Findings[0].Title)
	}
}
