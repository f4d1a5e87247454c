package diagnose

import (
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

func TestErrorsUnderLoad(t *testing.T) {
	two := func(failing float64) []clEpSpec {
		return []clEpSpec{
			{name: "GET /shipping", share: 0.5, size: 300, service: 5, errShare: failing},
			{name: "GET /products", share: 0.5, size: 300, service: 5},
		}
	}
	base := clSpec{service: 5, tgtCPU: 0.05, lgCPU: 0.05, busy: 0.3, endpoints: two(0)}
	ok := clSpec{offered: 160, service: 5, met: true, tgtCPU: 0.1, lgCPU: 0.05, busy: 0.3, endpoints: two(0)}
	knee := func(mod func(*clSpec)) clSpec {
		k := clSpec{offered: 320, service: 6, p99: 30, tgtCPU: 0.2, lgCPU: 0.08, busy: 0.4, endpoints: two(0.4)}
		if mod != nil {
			mod(&k)
		}
		return k
	}
	tests := []struct {
		name     string
		build    func() *clSynth
		fire     bool
		limiting bool
		endpoint string
		down     string
		why      string
	}{
		{name: "503s rise on one endpoint", fire: true, limiting: true, endpoint: "GET /shipping",
			build: func() *clSynth { return newClSynth().ladder(base, ok, knee(nil)) }},
		{name: "the failing downstream is named from spans", fire: true, limiting: true, endpoint: "GET /shipping", down: "GET http://127.0.0.1:9090/shipping",
			build: func() *clSynth {
				s := newClSynth().ladder(base, ok, knee(nil))
				k := s.in.Steps[len(s.in.Steps)-1]
				for i := range 20 {
					s.in.Spans = append(s.in.Spans, evidence.Span{T: k.StartMS + int64(i), TraceID: "t", SpanID: "s", Kind: evidence.SpanKindClient,
						HTTPMethod: "GET", HTTPURL: "http://127.0.0.1:9090/shipping?sku=1", HTTPStatus: 503, Status: evidence.SpanStatusError})
				}
				return s
			}},
		{name: "explained by the database's connection limit: ranked below", fire: true, limiting: false, endpoint: "GET /shipping",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.pgConns, k.pgMax = 97, 100 }))
			}},
		{name: "near miss: errors at every load", why: "do not rise",
			build: func() *clSynth {
				b, o := base, ok
				b.endpoints, o.endpoints = two(0.4), two(0.4)
				return newClSynth().ladder(b, o, knee(nil))
			}},
		{name: "near miss: transport errors (net.connection-limit's evidence)", why: "transport errors",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) {
					k.endpoints = two(0)
					k.errs = map[string]int64{"refused": 50}
				}))
			}},
		{name: "near miss: a few errors below the objective", why: "below",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.endpoints = two(0.005) }))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.build()
			c, why := clCandidate(t, errorsUnderLoad{}, s.in)
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
			if c.Locus.Endpoint != tt.endpoint || c.Locus.Downstream != tt.down {
				t.Errorf("locus %+v, want endpoint %q downstream %q", c.Locus, tt.endpoint, tt.down)
			}
		})
	}
}

// TestErrorsUnderLoadRanksBelowACause: when a limiting finding explains the
// breach, the fallback is not the principal.
func TestErrorsUnderLoadRanksBelowACause(t *testing.T) {
	two := []clEpSpec{{name: "GET /orders", share: 1, size: 300, service: 5, errShare: 0.3}}
	base := clSpec{service: 5, tgtCPU: 0.05, lgCPU: 0.05, busy: 0.3, endpoints: []clEpSpec{{name: "GET /orders", share: 1, size: 300, service: 5}}}
	s := newClSynth().ladder(base, clSpec{offered: 320, service: 6, p99: 30, tgtCPU: 0.2, busy: 0.4, endpoints: two, pgConns: 98, pgMax: 100})
	d := Run(s.in, []Rule{errorsUnderLoad{}})
	if len(d.Findings) != 1 || d.Findings[0].Severity == "critical" {
		t.Fatalf("findings %+v, want one non-critical errors.under-load", d.Findings)
	}
	if d.LimitedBy != "unexplained" {
		t.Errorf("limited_by %s, want unexplained: the fallback names no cause when the database explains the errors", d.LimitedBy)
	}
}
