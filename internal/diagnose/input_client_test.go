package diagnose

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/google/pprof/profile"
)

// Synthetic runs for the client-side rules: a ladder of steps, each with
// four one-second windows and one /proc sample per window for the target,
// the generator and the machine.

// clSpec describes one step of a synthetic run.
type clSpec struct {
	offered  float64
	achieved float64 // responses per second while arrivals are due (0: offered)
	service  float64 // mean service time, ms
	p50, p99 float64 // latency, ms (0: from service)
	met      bool

	// per window
	errs     map[string]int64 // errors_by_class
	status   map[string]int64 // status codes of the errors
	respSize int64            // response bytes per request (0: 200)
	// endpoints splits requests between endpoints (nil: one, "GET /work")
	endpoints []clEpSpec

	// /proc
	tgtCPU, lgCPU, busy float64
	noProc              bool
	writeBps, readBps   float64
	threads             int
	psiIO               float64
	listenDrops         float64
	fds, fdLimit        int
	name                string

	// postgres
	pgExecMSPerSec float64
	pgBusy         int
	pgConns, pgMax int
}

type clEpSpec struct {
	name     string
	share    float64 // of requests
	size     int64   // response bytes
	service  float64 // p50 service ms
	errShare float64 // share of this endpoint's requests failing with 5xx
}

type clSynth struct {
	in       *Input
	t        int64
	profiles map[string]*profile.Profile
}

func newClSynth() *clSynth {
	s := &clSynth{in: &Input{SLO: report.SLO{P99MS: 500, ErrorRate: 0.01}, Cores: 2}, t: 1_700_000_000_000, profiles: map[string]*profile.Profile{}}
	s.in.OpenProfile = func(file string) (*profile.Profile, error) {
		if p, ok := s.profiles[file]; ok {
			return p, nil
		}
		return nil, fmt.Errorf("no profile %s", file)
	}
	return s
}

const clSynthWindows = 4

func (s *clSynth) step(sp clSpec) int {
	idx := len(s.in.Steps) + 1
	start := s.t
	end := start + clSynthWindows*1000
	s.t = end + 10
	ach := sp.achieved
	if ach == 0 {
		ach = sp.offered
	}
	p50, p99 := sp.p50, sp.p99
	if p50 == 0 {
		p50 = sp.service
	}
	if p99 == 0 {
		p99 = 2 * sp.service
	}
	eps := sp.endpoints
	if eps == nil {
		size := sp.respSize
		if size == 0 {
			size = 200
		}
		eps = []clEpSpec{{name: "GET /work", share: 1, size: size, service: sp.service}}
	}
	var reqs int64
	for w := range clSynthWindows {
		ws := start + int64(w)*1000
		off := sp.offered
		n := int64(ach)
		rec := evidence.WindowRecord{T: ws + 1000, StartMS: ws, EndMS: ws + 1000, Step: idx, Window: w, OfferedRPS: &off,
			AchievedRPS: ach, Arrivals: int64(sp.offered), Requests: n,
			LatencyMS:     evidence.WindowLatency{P50: p50, P99: p99, Max: p99},
			ServiceMS:     evidence.WindowLatency{P50: sp.service, P99: 2 * sp.service},
			InflightMean:  ach * sp.service / 1000,
			ErrorsByClass: sp.errs, StatusCodes: sp.status}
		for _, c := range sp.errs {
			if c > 0 {
				rec.Errors += c
			}
		}
		for _, e := range eps {
			en := int64(float64(n) * e.share)
			we := evidence.WindowEndpoint{Name: e.name, Requests: en, BytesIn: en * e.size, ServiceMS: evidence.WindowLatency{P50: e.service}}
			if e.errShare > 0 {
				we.Errors = int64(float64(en) * e.errShare)
				we.StatusCodes = map[string]int64{"503": we.Errors}
				we.ErrorsByClass = map[string]int64{"5xx": we.Errors}
				rec.Errors += we.Errors
				if rec.ErrorsByClass == nil {
					rec.ErrorsByClass = map[string]int64{}
				}
				rec.ErrorsByClass["5xx"] += we.Errors
			} else if len(eps) == 1 {
				we.Errors = rec.Errors
				we.ErrorsByClass = sp.errs
				we.StatusCodes = sp.status
			}
			rec.Endpoints = append(rec.Endpoints, we)
		}
		reqs += n
		s.in.Windows = append(s.in.Windows, rec)
		if !sp.noProc {
			name := sp.name
			if name == "" {
				name = "server"
			}
			wb, rb := sp.writeBps, sp.readBps
			s.in.Proc = append(s.in.Proc,
				evidence.ProcRecord{T: ws + 1000, Role: evidence.RoleTarget, PID: 42, IntervalMS: 1000, Process: &evidence.ProcessSample{
					Name: name, CPUCores: sp.tgtCPU, Threads: max(sp.threads, 8), FDs: max(sp.fds, 20), FDLimit: int64(max(sp.fdLimit, 1024)),
					WriteBytesPerSec: &wb, ReadBytesPerSec: &rb}},
				evidence.ProcRecord{T: ws + 1000, Role: evidence.RoleLoadgen, PID: 7, IntervalMS: 1000, Process: &evidence.ProcessSample{Name: "chokepoint", CPUCores: sp.lgCPU}},
				evidence.ProcRecord{T: ws + 1000, Role: evidence.RoleMachine, IntervalMS: 1000, Machine: &evidence.MachineSample{
					Cores: 2, CPUBusy: sp.busy, PSI: &evidence.PSI{IO: evidence.PSIResource{Some: sp.psiIO}},
					TCPListenOverflowsPerSec: sp.listenDrops, TCPListenDropsPerSec: sp.listenDrops}})
		}
		if sp.pgExecMSPerSec > 0 || sp.pgBusy > 0 || sp.pgMax > 0 {
			s.in.Postgres = append(s.in.Postgres,
				evidence.PG{T: ws + 1000, Kind: evidence.PGKindStatements, WindowMS: 1000, Statements: []evidence.PGStatement{{QueryID: 1, Query: "SELECT $1", Calls: n, TotalExecMS: sp.pgExecMSPerSec}}},
				evidence.PG{T: ws + 1000, Kind: evidence.PGKindActivity, Activity: &evidence.PGActivity{Sessions: 10, States: map[string]int{"idle": 10 - sp.pgBusy, "active": sp.pgBusy}}},
				evidence.PG{T: ws + 1000, Kind: evidence.PGKindDatabase, WindowMS: 1000, Database: &evidence.PGDatabase{MaxConnections: sp.pgMax, ReservedConnections: 3, Connections: sp.pgConns}})
		}
	}
	st := report.Step{Index: idx, Phase: "probe", OfferedRPS: sp.offered, AchievedRPS: ach, InflightMean: ach * sp.service / 1000,
		Latency: report.Latency{P50: p50, P99: p99}, StartMS: start, EndMS: end, Requests: reqs, MetSLO: sp.met}
	if sp.errs != nil {
		var e int64
		for _, c := range sp.errs {
			e += c
		}
		st.ErrorRate = float64(e) / ach
	}
	s.in.Steps = append(s.in.Steps, st)
	s.in.Coverage = []report.Coverage{{Source: "loadgen", Status: "ok"}, {Source: "proc", Status: "ok"}}
	return len(s.in.Steps) - 1
}

// ladder adds healthy steps at 10..160 req/s with a service time of base
// ms, then the given steps.
func (s *clSynth) ladder(base clSpec, rest ...clSpec) *clSynth {
	for _, r := range []float64{10, 20, 40, 80} {
		b := base
		b.offered, b.achieved, b.met = r, 0, true
		b.tgtCPU = base.tgtCPU * r / 80
		b.writeBps = base.writeBps * r / 80
		b.pgExecMSPerSec = base.pgExecMSPerSec * r / 80
		s.step(b)
	}
	for _, r := range rest {
		s.step(r)
	}
	return s
}

// clProfileOf builds a profile with one sample type and stacks given leaf
// first.
func clProfileOf(sampleType, unit string, stacks map[string]int64) *profile.Profile {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: sampleType, Unit: unit}}}
	funcs := map[string]*profile.Function{}
	var id uint64
	for stack, v := range stacks {
		var locs []*profile.Location
		for _, name := range strings.Split(stack, ";") {
			f := funcs[name]
			if f == nil {
				id++
				f = &profile.Function{ID: id, Name: name}
				funcs[name] = f
				p.Function = append(p.Function, f)
			}
			id++
			l := &profile.Location{ID: id, Line: []profile.Line{{Function: f}}}
			p.Location = append(p.Location, l)
			locs = append(locs, l)
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{v}})
	}
	return p
}

// addProf indexes a profile for a step (an index into Steps).
func (s *clSynth) addProf(typ, kind string, step int, p *profile.Profile) {
	file := fmt.Sprintf("profiles/%s-%s-%d.pb.gz", typ, kind, step)
	s.profiles[file] = p
	st := s.in.Steps[step]
	s.in.Profiles = append(s.in.Profiles, evidence.ProfileRecord{T: st.EndMS, Type: typ, Kind: kind, Step: st.Index, File: file, StartMS: st.StartMS, EndMS: st.EndMS})
}

// the request goroutine's outer frames in synthetic stacks
const clReqFrames = ";net/http.HandlerFunc.ServeHTTP;net/http.serverHandler.ServeHTTP;net/http.(*conn).serve"

// candidate runs one rule and returns its finding (nil when none) and the
// ruled-out line.
func clCandidate(t *testing.T, r Rule, in *Input) (*Candidate, string) {
	t.Helper()
	res := r.Check(in)
	if len(res.Findings) > 1 {
		t.Fatalf("%s: %d findings, want at most one", r.Kind(), len(res.Findings))
	}
	if len(res.Findings) == 0 {
		if res.RuledOut == "" {
			t.Errorf("%s: no finding and no ruled-out reason", r.Kind())
		}
		return nil, res.RuledOut
	}
	c := res.Findings[0]
	clCheckFinding(t, c.Finding)
	return &c, res.RuledOut
}

// checkFinding checks what CONTRACT.md §4 demands of every finding.
func clCheckFinding(t *testing.T, f report.Finding) {
	t.Helper()
	if f.Title == "" || f.Recommendation == "" || len(f.Evidence) == 0 {
		t.Errorf("finding %s lacks title, recommendation or evidence: %+v", f.Kind, f)
	}
	if f.Impact < 0 || f.Impact > 1 || f.Confidence < 0 || f.Confidence > 1 {
		t.Errorf("finding %s: impact %v confidence %v out of 0..1", f.Kind, f.Impact, f.Confidence)
	}
	if len(f.Evidence) > 0 && f.Evidence[0].Value != f.Impact {
		t.Errorf("finding %s: first evidence %v (%s) is not the impact %v", f.Kind, f.Evidence[0].Value, f.Evidence[0].What, f.Impact)
	}
	if g := f.ExpectedGain; g != nil && (g.Metric == "" || g.Method == "" || g.To <= g.From) {
		t.Errorf("finding %s: expected gain %+v", f.Kind, g)
	}
}

// FuzzClientRules feeds the client-side rules odd evidence (negative,
// zero, huge, inconsistent numbers, as a corrupt or hostile run directory
// could hold): they must not panic and must keep impact and confidence in
// 0..1.
func FuzzClientRules(f *testing.F) {
	f.Add(320.0, 200.0, 500.0, 0.1, 0.4, 50.0, int64(30), int64(1<<20), 1e6, 0.5)
	f.Add(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, int64(0), int64(0), 0.0, 0.0)
	f.Add(-5.0, 1e12, -1.0, -3.0, 2.0, -7.0, int64(-9), int64(-1), -1e9, 7.0)
	f.Fuzz(func(t *testing.T, offered, achieved, service, cpu, psi, drops float64, errs, size int64, writeBps, errShare float64) {
		for _, v := range []float64{offered, achieved, service, cpu, psi, drops, writeBps, errShare} {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e15 {
				t.Skip("JSON evidence holds finite numbers")
			}
		}
		base := clSpec{service: 5, tgtCPU: 0.05, busy: 0.3}
		knee := clSpec{offered: offered, achieved: achieved, service: service, tgtCPU: cpu, psiIO: psi, listenDrops: drops,
			errs: map[string]int64{"refused": errs, "5xx": errs / 2}, respSize: size, writeBps: writeBps,
			endpoints: []clEpSpec{{name: "GET /a", share: 1, size: size, service: service, errShare: errShare}}}
		s := newClSynth().ladder(base, knee)
		s.addProf(evidence.ProfileBlock, evidence.ProfileDelta, len(s.in.Steps)-1, clProfileOf("delay", "nanoseconds", map[string]int64{
			"runtime.selectgo;example.com/a.(*pool).do" + clReqFrames: errs,
		}))
		s.addProf(evidence.ProfileCPU, evidence.ProfileFetched, len(s.in.Steps)-1, clProfileOf("cpu", "nanoseconds", map[string]int64{
			"os.(*File).Sync;example.com/a.write" + clReqFrames:      size,
			"encoding/json.Marshal;example.com/a.list" + clReqFrames: errs,
		}))
		for _, r := range clientRules() {
			res := r.Check(s.in)
			for _, c := range res.Findings {
				if !(c.Impact >= 0 && c.Impact <= 1) || !(c.Confidence >= 0 && c.Confidence <= 1) {
					t.Errorf("%s: impact %v confidence %v out of range", r.Kind(), c.Impact, c.Confidence)
				}
			}
		}
	})
}
