package diagnose

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// Thresholds of errors.under-load.
const (
	// errMinRate: the error rate at the knee is at least this (the default
	// error objective, CONTRACT.md §1), or the hunt's own objective when
	// that is stricter.
	errMinRate = 0.01
	// errRise: the error rate at the knee is at least this multiple of the
	// low-load rate, plus errRiseFloor: errors rise with load rather than
	// being a constant failure of some requests.
	errRise      = 3.0
	errRiseFloor = 0.005
	// errServerShare: at least this share of the errors are 5xx answers
	// (the server answered, and failed); otherwise they are transport
	// errors, net.connection-limit's evidence.
	errServerShare = 0.5
	// errConcentrated: one endpoint holding at least this share of the
	// errors at the knee is where they are.
	errConcentrated = 0.8
	// errDBFull: server connections at least this share of the usable
	// max_connections: the database refuses new sessions
	// (db.connections-saturated explains the errors).
	errDBFull = 0.9
	// errFallbackConfidence: the rule names what it sees, not why; a
	// deeper rule with evidence of the cause ranks above it.
	errFallbackConfidence = 0.75
)

type errorsUnderLoad struct{}

var _ Rule = errorsUnderLoad{}

func (errorsUnderLoad) Kind() string { return "errors.under-load" }

func (r errorsUnderLoad) Check(in *Input) Result {
	focus := in.FocusStep()
	if focus < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	fl := in.clLoadAt(focus)
	if fl.Requests == 0 {
		return Result{RuledOut: "could not check: no requests at the knee"}
	}
	var bl clLoad
	if b := in.BaselineStep(); b >= 0 && b != focus {
		bl = in.clLoadAt(b)
	}
	rate := in.Steps[focus].OfferedRPS
	minRate := errMinRate
	if in.SLO.ErrorRate > 0 && in.SLO.ErrorRate < minRate {
		minRate = in.SLO.ErrorRate
	}
	er, ber := fl.errorRate(), bl.errorRate()
	if er < minRate {
		return Result{RuledOut: fmt.Sprintf("error rate %s at %.0f req/s, below %s", clPct(er), rate, clPct(minRate))}
	}
	if er < errRise*ber+errRiseFloor {
		return Result{RuledOut: fmt.Sprintf("errors do not rise with load: %s at %.0f req/s against %s at low load", clPct(er), rate, clPct(ber))}
	}
	server := fl.Classes[clClass5xx]
	if float64(server) < errServerShare*float64(fl.Errors) {
		return Result{RuledOut: fmt.Sprintf("only %s of the errors at %.0f req/s are 5xx answers; the rest are transport errors (refused %d, reset %d, timeout %d): net.connection-limit's evidence",
			pct(float64(server)/float64(fl.Errors)), rate, fl.Classes[clClassRefused], fl.Classes[clClassReset], fl.Classes[clClassTimeout])}
	}
	// The endpoint whose errors rose the most.
	eps := fl.sortedEndpoints()
	sort.SliceStable(eps, func(i, j int) bool { return eps[i].Errors > eps[j].Errors })
	top := eps[0]
	share := float64(top.Errors) / float64(fl.Errors)
	baseEp := bl.Endpoints[top.Name]
	baseEpRate := 0.0
	if baseEp != nil {
		baseEpRate = baseEp.errorRate()
	}
	f := report.Finding{Kind: r.Kind()}
	if share >= errConcentrated {
		f.Locus.Endpoint = top.Name
	}
	f.Evidence = []report.Evidence{
		{Source: "loadgen", What: "share of requests failing at the knee", Value: round3(er), Unit: "ratio"},
		{Source: "loadgen", What: "the same at low load", Value: round3(ber), Unit: "ratio"},
		{Source: "loadgen", What: "share of the errors that are 5xx answers", Value: round3(float64(server) / float64(fl.Errors)), Unit: "ratio"},
		{Source: "loadgen", What: "error rate of " + top.Name + " at the knee", Value: round3(top.errorRate()), Unit: "ratio"},
		{Source: "loadgen", What: "error rate of " + top.Name + " at low load", Value: round3(baseEpRate), Unit: "ratio"},
		{Source: "loadgen", What: "share of the errors on " + top.Name, Value: round3(share), Unit: "ratio"},
	}
	codes := clStatus5xx(top.Status)
	conf := 0.5
	if share >= errConcentrated {
		conf += 0.15
	}
	if float64(server) >= 0.9*float64(fl.Errors) {
		conf += 0.1
	}
	down, downN := in.clFailingDownstream(focus)
	if down != "" {
		f.Locus.Downstream = down
		f.Evidence = append(f.Evidence, report.Evidence{Source: "otlp", What: "failed calls to " + down + " at the knee", Value: float64(downN), Unit: "calls"})
	}

	// A deeper cause explains the errors: rank below it.
	explained := ""
	pg := in.clPGAt(focus)
	if pg.Measured && pg.MaxUsable > 0 && float64(pg.Connections) >= errDBFull*float64(pg.MaxUsable) {
		explained = fmt.Sprintf("the database's connections were at %d of %d usable (db.connections-saturated)", pg.Connections, pg.MaxUsable)
	}
	if explained == "" {
		if sat, _, ok := cpuSaturation(in, focus); ok {
			if bound, why := cpuBound(in, focus, sat); bound {
				explained = "the target is CPU-bound (" + why + ")"
			}
		}
	}
	if explained == "" {
		if busy, why := in.clDiskBusy(focus); busy {
			explained = "requests wait on the disk (" + why + ")"
		}
	}

	where := "the target"
	if f.Locus.Endpoint != "" {
		where = f.Locus.Endpoint
	}
	f.Title = fmt.Sprintf("Errors rise with load on %s: %s failing at %.0f req/s (%s at low load)%s", where, clPct(er), rate, clPct(ber), codes)
	f.Recommendation = fmt.Sprintf("%s fails more as load rises. Find what it runs out of (its logs at the knee; the status codes: %s): a downstream that sheds load, a timeout, a queue or pool that rejects when full. "+
		"Give the limited resource capacity, or shed load gracefully (429 with Retry-After) and retry idempotent calls with jittered backoff.", where, strings.TrimSpace(strings.Trim(codes, " ()")))
	if down != "" {
		f.Recommendation += fmt.Sprintf(" The failures come from %s: raise its capacity or concurrency cap, or retry its 503s with jittered backoff.", down)
		f.Title += " from " + down
	}
	conf = math.Min(conf, errFallbackConfidence)
	limiting := er > in.SLO.ErrorRate && in.Breached()
	if explained != "" {
		// Kept as a lesser finding: it shows where the errors surface.
		limiting = false
		conf = MinConfidence
		f.Recommendation += " The errors are probably a consequence: " + explained + "."
	}
	f.Impact = round3(clamp01(er))
	f.Confidence = round3(conf)
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}

// clPct formats a share with two significant decimals for small rates.
func clPct(v float64) string {
	if v < 0.1 {
		return fmt.Sprintf("%.1f%%", v*100)
	}
	return pct(v)
}

// clStatus5xx lists the 5xx codes of an endpoint, most frequent first,
// as " (502 x120, 503 x4)"; "" without any.
func clStatus5xx(st map[string]int64) string {
	type kv struct {
		k string
		v int64
	}
	var xs []kv
	for k, v := range st {
		if strings.HasPrefix(k, "5") {
			xs = append(xs, kv{k, v})
		}
	}
	if len(xs) == 0 {
		return ""
	}
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].v != xs[j].v {
			return xs[i].v > xs[j].v
		}
		return xs[i].k < xs[j].k
	})
	var parts []string
	for i, x := range xs {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s x%d", x.k, x.v))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// clFailingDownstream names the downstream (METHOD scheme://host:port/route)
// whose client spans failed most at a step, and how many failed; "" when
// no spans or no failures.
func (in *Input) clFailingDownstream(step int) (string, int) {
	start, end := in.StepSpan(step)
	by := map[string]int{}
	for _, s := range in.Spans {
		if s.Kind != evidence.SpanKindClient || s.T < start || s.T > end || s.HTTPMethod == "" {
			continue
		}
		if s.HTTPStatus < 500 && s.Status != evidence.SpanStatusError {
			continue
		}
		res, ok := trace.ResourceOf(s)
		if !ok || res.Kind != trace.KindHTTP {
			continue
		}
		by[res.Name]++
	}
	best, n := "", 0
	for d, c := range by {
		if c > n || (c == n && d < best) {
			best, n = d, c
		}
	}
	return best, n
}
