package diagnose

import (
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

func TestIODisk(t *testing.T) {
	// A target that writes ~8 KiB per request, capped by its disk.
	base := clSpec{service: 5, tgtCPU: 0.04, lgCPU: 0.05, busy: 0.3, writeBps: 640 << 10, psiIO: 0.02}
	ok := clSpec{offered: 160, service: 6, met: true, tgtCPU: 0.08, lgCPU: 0.05, busy: 0.3, writeBps: 1280 << 10, psiIO: 0.05}
	knee := func(mod func(*clSpec)) clSpec {
		k := clSpec{offered: 320, achieved: 250, service: 400, p99: 1200, tgtCPU: 0.12, lgCPU: 0.06, busy: 0.35, writeBps: 2 << 20, psiIO: 0.45, threads: 30}
		if mod != nil {
			mod(&k)
		}
		return k
	}
	fsyncCPU := clProfileOf("cpu", "nanoseconds", map[string]int64{
		"internal/runtime/syscall/linux.Syscall6;syscall.Syscall;syscall.Fsync;internal/poll.(*FD).Fsync;os.(*File).Sync;example.com/shop.(*journal).append;example.com/shop.track" + clReqFrames: 80e6,
		"encoding/json.Marshal;example.com/shop.track" + clReqFrames: 20e6,
	})
	tests := []struct {
		name  string
		build func() *clSynth
		fire  bool
		limit bool
		fn    string
		why   string
	}{
		{name: "pressure and the target's own writes (any language)", fire: true, limit: true,
			build: func() *clSynth { return newClSynth().ladder(base, ok, knee(nil)) }},
		{name: "CPU profile in fsync names the caller", fire: true, limit: true, fn: "example.com/shop.(*journal).append",
			build: func() *clSynth {
				s := newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.psiIO = 0.08 }))
				s.addProf(evidence.ProfileCPU, evidence.ProfileFetched, len(s.in.Steps)-1, fsyncCPU)
				return s
			}},
		{name: "near miss: pressure from a neighbour (the target writes nothing)", why: "do not wait",
			build: func() *clSynth {
				b, o := base, ok
				b.writeBps, o.writeBps = 0, 0
				return newClSynth().ladder(b, o, knee(func(k *clSpec) { k.writeBps = 0 }))
			}},
		{name: "near miss: writes without pressure (page cache absorbs them)", why: "do not wait",
			build: func() *clSynth { return newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.psiIO = 0.03 })) }},
		{name: "near miss: pressure that was there at low load too", why: "do not wait",
			build: func() *clSynth {
				b, o := base, ok
				b.psiIO, o.psiIO = 0.4, 0.4
				return newClSynth().ladder(b, o, knee(nil))
			}},
		{name: "near miss: disk busy on a CPU-bound target", why: "did not queue for it",
			build: func() *clSynth {
				return newClSynth().ladder(base, ok, knee(func(k *clSpec) { k.tgtCPU = 1.85; k.lgCPU = 0.1 }))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.build()
			c, why := clCandidate(t, ioDisk{}, s.in)
			if !tt.fire {
				if c != nil && c.Confidence >= MinConfidence {
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
			if c.Confidence < MinConfidence || c.Limiting != tt.limit {
				t.Errorf("confidence %.2f limiting %v, want above %.2f and limiting %v", c.Confidence, c.Limiting, MinConfidence, tt.limit)
			}
			if c.Locus.Resource != "disk" || c.Locus.Function != tt.fn {
				t.Errorf("locus %+v, want disk in %q", c.Locus, tt.fn)
			}
			// The concurrency rule steps aside for it.
			if cc, why := clCandidate(t, concurrencyLimit{}, s.in); cc != nil {
				t.Errorf("concurrency.limit fired too: %s", cc.Title)
			} else if tt.limit && !strings.Contains(why, "io.disk") {
				t.Errorf("concurrency.limit ruled out %q, want it to name io.disk", why)
			}
		})
	}
}
