package trace

import (
	"cmp"
	"slices"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// EndpointStats aggregates the requests of one endpoint, so that a rule can
// ask "per request of GET /orders, statement Q runs 25 times on average".
type EndpointStats struct {
	Endpoint       string  `json:"endpoint"`
	Requests       int     `json:"requests"`
	MeanDurationMS float64 `json:"mean_duration_ms"`
	// Resources is where the time goes, self included, by critical-path
	// share, largest first.
	Resources []ResourceStats `json:"resources"`
	NPlusOne  []PatternStats  `json:"n_plus_one,omitempty"`
	Redundant []PatternStats  `json:"redundant,omitempty"`
	Serial    []SerialStats   `json:"serial,omitempty"`
}

// ResourceStats is one resource of one endpoint, per request.
type ResourceStats struct {
	Resource Resource `json:"resource"`
	// CallsPerRequest is the mean number of calls over all requests of the
	// endpoint (0 for self).
	CallsPerRequest float64 `json:"calls_per_request"`
	// MeanCallMS is the mean duration of one call.
	MeanCallMS float64 `json:"mean_call_ms"`
	// MeanTimeMS is the mean time spent in calls to it per request
	// (overlapping calls counted each).
	MeanTimeMS float64 `json:"mean_time_ms"`
	// MeanCriticalMS is its mean time on the critical path per request.
	MeanCriticalMS float64 `json:"mean_critical_ms"`
	// CriticalShare is its critical-path time over the requests' total
	// duration (0..1): the share of request latency it explains.
	CriticalShare float64 `json:"critical_share"`
}

// PatternStats is an n+1 or redundant pattern of one resource in one
// endpoint, averaged over the requests where it appeared.
type PatternStats struct {
	Resource Resource `json:"resource"`
	// Requests is how many requests showed it; Share is that over all
	// requests of the endpoint.
	Requests int     `json:"requests"`
	Share    float64 `json:"share"`
	// MeanCount is the calls per affected request; MeanDistinct the
	// distinct parameter sets per affected request (-1 when unknown in
	// any); MeanExtra, for redundant calls, the calls that repeated an
	// identical earlier one.
	MeanCount    float64 `json:"mean_count"`
	MeanDistinct float64 `json:"mean_distinct"`
	MeanExtra    float64 `json:"mean_extra,omitempty"`
	// MeanTimeMS is the time in those calls per affected request, and
	// MeanWastedMS (redundant) the time in the repeats.
	MeanTimeMS   float64 `json:"mean_time_ms"`
	MeanWastedMS float64 `json:"mean_wasted_ms,omitempty"`
	// LatencyShare is the time in those calls (wasted time for redundant
	// calls) over the affected requests' duration.
	LatencyShare float64 `json:"latency_share"`
}

// SerialStats is a serial pattern (the same set of resources called one
// after another) in one endpoint.
type SerialStats struct {
	Resources    []Resource `json:"resources"`
	Requests     int        `json:"requests"`
	Share        float64    `json:"share"`
	MeanCalls    float64    `json:"mean_calls"`
	MeanSumMS    float64    `json:"mean_sum_ms"`
	MeanSavingMS float64    `json:"mean_saving_ms"`
	// SavingShare is the time parallel calls would save over the affected
	// requests' duration.
	SavingShare float64 `json:"saving_share"`
}

// Analyze assembles spans into traces, analyses every request and
// aggregates them per endpoint (endpoints by name).
func Analyze(spans []evidence.Span) []EndpointStats {
	traces := Assemble(spans)
	reqs := make([]Request, 0, len(traces))
	for _, t := range traces {
		reqs = append(reqs, AnalyzeTrace(t))
	}
	return Aggregate(reqs)
}

const nsPerMS = 1e6

// Aggregate groups requests by endpoint, endpoints sorted by name.
func Aggregate(reqs []Request) []EndpointStats {
	byEP := map[string][]*Request{}
	for i := range reqs {
		byEP[reqs[i].Endpoint] = append(byEP[reqs[i].Endpoint], &reqs[i])
	}
	out := make([]EndpointStats, 0, len(byEP))
	for ep, rs := range byEP {
		out = append(out, aggregate(ep, rs))
	}
	slices.SortFunc(out, func(a, b EndpointStats) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	return out
}

func aggregate(ep string, rs []*Request) EndpointStats {
	st := EndpointStats{Endpoint: ep, Requests: len(rs)}
	n := float64(len(rs))
	var totalDur int64
	type resAcc struct {
		calls          int
		time, critical int64
	}
	res := map[Resource]*resAcc{Self: {}}
	for _, r := range rs {
		totalDur += r.DurationNS
		res[Self].critical += r.SelfNS
		for _, c := range r.Calls {
			a := res[c.Resource]
			if a == nil {
				a = &resAcc{}
				res[c.Resource] = a
			}
			a.calls += c.Count
			a.time += c.TotalNS
			a.critical += c.CriticalNS
		}
	}
	st.MeanDurationMS = float64(totalDur) / n / nsPerMS
	for r, a := range res {
		s := ResourceStats{
			Resource:        r,
			CallsPerRequest: float64(a.calls) / n,
			MeanTimeMS:      float64(a.time) / n / nsPerMS,
			MeanCriticalMS:  float64(a.critical) / n / nsPerMS,
			CriticalShare:   ratio(a.critical, totalDur),
		}
		if r == Self {
			s.MeanTimeMS = s.MeanCriticalMS
		}
		if a.calls > 0 {
			s.MeanCallMS = float64(a.time) / float64(a.calls) / nsPerMS
		}
		st.Resources = append(st.Resources, s)
	}
	slices.SortFunc(st.Resources, func(a, b ResourceStats) int {
		return cmp.Or(-cmp.Compare(a.CriticalShare, b.CriticalShare), -cmp.Compare(a.MeanTimeMS, b.MeanTimeMS),
			cmp.Compare(a.Resource.Kind, b.Resource.Kind), cmp.Compare(a.Resource.Name, b.Resource.Name))
	})
	st.NPlusOne = patterns(rs, n, func(r *Request) []Repeat { return r.NPlusOne }, false)
	st.Redundant = patterns(rs, n, func(r *Request) []Repeat { return r.Redundant }, true)
	st.Serial = serials(rs, n)
	return st
}

func patterns(rs []*Request, n float64, get func(*Request) []Repeat, redundant bool) []PatternStats {
	type acc struct {
		reqs                   int
		count, distinct, extra int
		unknown                bool
		time, wasted, dur      int64
	}
	accs := map[Resource]*acc{}
	for _, r := range rs {
		for _, p := range get(r) {
			a := accs[p.Resource]
			if a == nil {
				a = &acc{}
				accs[p.Resource] = a
			}
			a.reqs++
			a.count += p.Count
			a.extra += p.Extra
			if p.Distinct < 0 {
				a.unknown = true
			} else {
				a.distinct += p.Distinct
			}
			a.time += p.TotalNS
			a.wasted += p.WastedNS
			a.dur += r.DurationNS
		}
	}
	var out []PatternStats
	for res, a := range accs {
		k := float64(a.reqs)
		p := PatternStats{
			Resource:     res,
			Requests:     a.reqs,
			Share:        k / n,
			MeanCount:    float64(a.count) / k,
			MeanDistinct: float64(a.distinct) / k,
			MeanTimeMS:   float64(a.time) / k / nsPerMS,
			LatencyShare: ratio(a.time, a.dur),
		}
		if a.unknown {
			p.MeanDistinct = -1
		}
		if redundant {
			p.MeanExtra = float64(a.extra) / k
			p.MeanWastedMS = float64(a.wasted) / k / nsPerMS
			p.LatencyShare = ratio(a.wasted, a.dur)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PatternStats) int {
		return cmp.Or(-cmp.Compare(a.LatencyShare*a.Share, b.LatencyShare*b.Share),
			cmp.Compare(a.Resource.Kind, b.Resource.Kind), cmp.Compare(a.Resource.Name, b.Resource.Name))
	})
	return out
}

func serials(rs []*Request, n float64) []SerialStats {
	type acc struct {
		res            []Resource
		reqs, calls    int
		sum, save, dur int64
		lastTrace      string
	}
	accs := map[string]*acc{}
	var order []string
	for _, r := range rs {
		for _, g := range r.Serial {
			key := serialKey(g)
			a := accs[key]
			if a == nil {
				a = &acc{res: g.Resources}
				accs[key] = a
				order = append(order, key)
			}
			if a.lastTrace != r.TraceID {
				a.reqs++
				a.dur += r.DurationNS
				a.lastTrace = r.TraceID
			}
			a.calls += g.Calls
			a.sum += g.SumNS
			a.save += g.SavingNS
		}
	}
	out := make([]SerialStats, 0, len(order))
	for _, key := range order {
		a := accs[key]
		k := float64(a.reqs)
		out = append(out, SerialStats{
			Resources:    a.res,
			Requests:     a.reqs,
			Share:        k / n,
			MeanCalls:    float64(a.calls) / k,
			MeanSumMS:    float64(a.sum) / k / nsPerMS,
			MeanSavingMS: float64(a.save) / k / nsPerMS,
			SavingShare:  ratio(a.save, a.dur),
		})
	}
	slices.SortStableFunc(out, func(a, b SerialStats) int {
		return -cmp.Compare(a.SavingShare*a.Share, b.SavingShare*b.Share)
	})
	return out
}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
