package compare

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

// huntSpec describes a synthetic hunt: a target with a true capacity and a
// latency below it, hunted up a ×1.25 ladder and refined by bisection, as
// the capacity search does.
type huntSpec struct {
	capacity float64 // req/s the target sustains within the objective
	p99      float64 // p99 below capacity, ms
	noise    float64 // relative noise on every window's latency
	seed     uint64
	urls     []string
	version  string
	host     string
	sloP99   float64
	status   string
	findings []report.Finding
	// firstFailing, when set, overrides the bracket found by the search
	// (a hunt with coarse steps).
	maxRPS, firstFailing float64
}

const (
	ladderStart  = 100.0
	ladderFactor = 1.25
	refinements  = 3
	windowsPer   = 5
)

func (s huntSpec) withDefaults() huntSpec {
	if len(s.urls) == 0 {
		s.urls = []string{"http://127.0.0.1:8080/orders?customer=7"}
	}
	if s.version == "" {
		s.version = "v0.3.0"
	}
	if s.host == "" {
		s.host = "bench-1"
	}
	if s.sloP99 == 0 {
		s.sloP99 = 500
	}
	if s.status == "" {
		s.status = run.StatusComplete
	}
	if s.noise == 0 {
		s.noise = 0.05
	}
	return s
}

// rates returns the offered rates of the hunt's steps, in order.
func (s huntSpec) rates() (rates []float64, maxOK, firstFail float64) {
	r := ladderStart
	for ; r <= s.capacity; r *= ladderFactor {
		rates = append(rates, r)
		maxOK = r
	}
	rates = append(rates, r)
	firstFail = r
	for range refinements {
		mid := math.Round((maxOK + firstFail) / 2)
		rates = append(rates, mid)
		if mid <= s.capacity {
			maxOK = mid
		} else {
			firstFail = mid
		}
	}
	return rates, maxOK, firstFail
}

// writeHunt writes the synthetic hunt's run directory and returns its path.
func writeHunt(t *testing.T, s huntSpec) string {
	t.Helper()
	s = s.withDefaults()
	path := filepath.Join(t.TempDir(), "run")
	dir, err := run.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	rng := rand.New(rand.NewPCG(s.seed, 99))
	start := int64(1_790_000_000_000)
	m := run.Manifest{Schema: run.ManifestSchema, Command: "hunt", Args: append([]string{"--max-rate=100000", "--slo-p99=500ms"}, s.urls...),
		Version: s.version, GoVersion: "go1.26.8", StartMS: start, EndMS: start + 120_000, Status: s.status,
		Machine: run.Machine{Hostname: s.host, OS: "linux", Arch: "amd64", Cores: 8, MemoryBytes: 16 << 30}}
	if err := dir.WriteJSON(run.ManifestFile, m); err != nil {
		t.Fatal(err)
	}
	rates, maxOK, firstFail := s.rates()
	if s.maxRPS != 0 {
		maxOK, firstFail = s.maxRPS, s.firstFailing
	}
	rep := &report.Report{
		Schema: report.Schema, Status: s.status,
		Target: report.Target{URLs: s.urls},
		SLO:    report.SLO{P99MS: s.sloP99, ErrorRate: 0.01},
		Capacity: report.Capacity{MaxRPS: ptr(maxOK), FirstFailingRPS: ptr(firstFail), LimitedBy: report.LimitedUnexplained,
			USL: &report.USL{Reliable: false, Note: "synthetic"}},
		Findings: append([]report.Finding{}, s.findings...),
		RuledOut: []report.RuledOut{}, Coverage: []report.Coverage{},
		StartMS: start,
	}
	if len(s.findings) > 0 {
		rep.Capacity.LimitedBy = s.findings[0].Kind
	}
	endpoints := map[string]*report.Endpoint{}
	var names []string
	t0 := start
	for i, rate := range rates {
		step := i + 1
		met := rate <= s.capacity
		achieved := math.Min(rate, s.capacity*1.02)
		var p99s []float64
		for w := range windowsPer {
			jitter := func() float64 { return 1 + s.noise*(2*rng.Float64()-1) }
			p99 := s.p99 * jitter()
			if !met {
				p99 = s.sloP99 * 3 * rate / s.capacity * jitter()
			}
			p99s = append(p99s, p99)
			rec := evidence.WindowRecord{T: t0 + 1000, StartMS: t0, EndMS: t0 + 1000, Step: step, Window: w,
				OfferedRPS: ptr(rate), AchievedRPS: achieved, Requests: int64(achieved), Arrivals: int64(rate),
				LatencyMS: evidence.WindowLatency{P50: p99 / 4, P90: p99 / 2, P99: p99, Max: p99 * 1.5}}
			for _, ep := range []struct {
				name  string
				share float64
				slow  float64
			}{{"GET /orders", 0.8, 1}, {"GET /health", 0.2, 0.1}} {
				n := int64(achieved * ep.share)
				rec.Endpoints = append(rec.Endpoints, evidence.WindowEndpoint{Name: ep.name, Requests: n,
					LatencyMS: evidence.WindowLatency{P50: p99 * ep.slow / 4, P90: p99 * ep.slow / 2, P99: p99 * ep.slow, Max: p99 * ep.slow * 1.5}})
				e, ok := endpoints[ep.name]
				if !ok {
					e = &report.Endpoint{Name: ep.name}
					endpoints[ep.name] = e
					names = append(names, ep.name)
				}
				e.Requests += n
				e.Latency.P99 = math.Max(e.Latency.P99, p99*ep.slow)
				e.Latency.P50 = p99 * ep.slow / 4
			}
			if err := dir.Append(run.TimelineFile, rec); err != nil {
				t.Fatal(err)
			}
			t0 += 1000
		}
		rep.Steps = append(rep.Steps, report.Step{Index: step, OfferedRPS: rate, AchievedRPS: achieved, MetSLO: met,
			Latency: report.Latency{P50: median(p99s) / 4, P99: median(p99s)}})
	}
	for _, n := range names {
		rep.Endpoints = append(rep.Endpoints, *endpoints[n])
	}
	rep.EndMS = t0
	if err := dir.WriteJSON(run.ReportFile, rep); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadSpec describes a synthetic constant-rate load run.
type loadSpec struct {
	rate    float64
	p99     float64
	noise   float64
	errRate float64
	seed    uint64
	windows int
	url     string
}

func writeLoad(t *testing.T, s loadSpec) string {
	t.Helper()
	if s.url == "" {
		s.url = "http://127.0.0.1:8080/orders"
	}
	if s.windows == 0 {
		s.windows = 10
	}
	if s.noise == 0 {
		s.noise = 0.05
	}
	path := filepath.Join(t.TempDir(), "load")
	dir, err := run.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	start := int64(1_790_000_000_000)
	m := run.Manifest{Schema: run.ManifestSchema, Command: "load", Args: []string{"--rate=" + ftoa(s.rate), "--duration=10s", s.url},
		Version: "v0.3.0", StartMS: start, Status: run.StatusComplete,
		Machine: run.Machine{Hostname: "bench-1", OS: "linux", Arch: "amd64", Cores: 8, MemoryBytes: 16 << 30}}
	if err := dir.WriteJSON(run.ManifestFile, m); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(s.seed, 7))
	var total, errs int64
	for w := range s.windows {
		p99 := s.p99 * (1 + s.noise*(2*rng.Float64()-1))
		n := int64(s.rate)
		e := int64(math.Round(float64(n) * s.errRate))
		total, errs = total+n, errs+e
		rec := evidence.WindowRecord{T: start + int64(w+1)*1000, StartMS: start + int64(w)*1000, EndMS: start + int64(w+1)*1000,
			Window: w, OfferedRPS: ptr(s.rate), AchievedRPS: s.rate, Requests: n, Errors: e,
			LatencyMS: evidence.WindowLatency{P50: p99 / 3, P99: p99},
			Endpoints: []evidence.WindowEndpoint{{Name: "GET /orders", Requests: n, Errors: e, LatencyMS: evidence.WindowLatency{P50: p99 / 3, P99: p99}}}}
		if err := dir.Append(run.TimelineFile, rec); err != nil {
			t.Fatal(err)
		}
	}
	sum := LoadSummary{Schema: loadSchema, Status: "complete", Model: "open", Schedule: "constant " + ftoa(s.rate) + "/s",
		StartMS: start, Requests: total, OfferedRPS: ptr(s.rate), AchievedRPS: s.rate, ErrorRate: float64(errs) / float64(total),
		LatencyMS: LoadLatency{P50: s.p99 / 3, P99: s.p99},
		Endpoints: []LoadEndpoint{{Name: "GET /orders", Requests: total, Errors: errs, LatencyMS: LoadLatency{P50: s.p99 / 3, P99: s.p99}}}}
	if err := dir.WriteJSON(LoadFile, sum); err != nil {
		t.Fatal(err)
	}
	return path
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
