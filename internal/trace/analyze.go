package trace

import (
	"cmp"
	"slices"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// NPlusOneMinCalls is the fewest calls of one statement (or downstream
// route) with different parameters in one request that count as n+1: a
// loop rather than a couple of lookups. Sentry's N+1 query detector uses
// the same threshold ("usually five spans").
const NPlusOneMinCalls = 5

// RedundantMinCalls is the fewest identical calls (same statement and
// parameters, or same method and URL) in one request that count as
// redundant: the second identical call is already wasted work.
const RedundantMinCalls = 2

// maxDepth bounds how deep the critical path descends, so that a hostile
// chain of spans costs bounded work; deeper time counts as the parent's.
const maxDepth = 1000

// Request is the analysis of one trace: one request to one endpoint.
type Request struct {
	TraceID    string `json:"trace_id"`
	Endpoint   string `json:"endpoint"`
	StartNS    int64  `json:"start_ns"`
	DurationNS int64  `json:"duration_ns"`
	// Critical is the critical path: the segments of the root's duration
	// in time order, each spent in one resource (self or a call). Their
	// lengths add up to DurationNS.
	Critical []Segment `json:"critical"`
	// SelfNS is the critical-path time in the service's own code.
	SelfNS int64 `json:"self_ns"`
	// Calls is every call out of the service, grouped by resource.
	Calls     []Calls       `json:"calls"`
	NPlusOne  []Repeat      `json:"n_plus_one,omitempty"`
	Redundant []Repeat      `json:"redundant,omitempty"`
	Serial    []SerialGroup `json:"serial,omitempty"`
	critical  map[Resource]int64
}

// Segment is a stretch of the critical path.
type Segment struct {
	Resource Resource `json:"resource"`
	SpanID   string   `json:"span_id"` // the call's span, or the span whose own code ran
	StartNS  int64    `json:"start_ns"`
	EndNS    int64    `json:"end_ns"`
}

// Calls is what one request did with one resource.
type Calls struct {
	Resource Resource `json:"resource"`
	Count    int      `json:"count"`
	// Distinct is the number of different parameter sets (statement
	// arguments, or URLs), or -1 when some calls' parameters are unknown.
	Distinct   int   `json:"distinct"`
	TotalNS    int64 `json:"total_ns"`    // sum of the calls' durations
	CriticalNS int64 `json:"critical_ns"` // time of the resource on the critical path
}

// Repeat is a repeated-call pattern in one request. For n+1, Count calls
// with Distinct parameter sets (-1: unknown); for redundant, Count calls
// that fall into Distinct groups of identical calls, of which Extra calls
// repeat an earlier identical one and WastedNS is their time.
type Repeat struct {
	Resource Resource `json:"resource"`
	Count    int      `json:"count"`
	Distinct int      `json:"distinct"`
	Extra    int      `json:"extra,omitempty"`
	TotalNS  int64    `json:"total_ns"`
	WastedNS int64    `json:"wasted_ns,omitempty"`
}

// SerialGroup is the sibling calls under one parent that ran one after
// another with no overlap, in runs of consecutive stages. Stages are the
// groups of calls that did overlap (ran in parallel); the saving is what
// running each run's stages at once would save: the sum of the stage
// lengths minus the longest, summed over the runs.
type SerialGroup struct {
	ParentSpanID string     `json:"parent_span_id"`
	Resources    []Resource `json:"resources"` // distinct, in order of first call
	// ResourceNS is the time in the calls to each of Resources (same order).
	ResourceNS []int64 `json:"resource_ns"`
	Calls      int     `json:"calls"`
	Stages     int     `json:"stages"`
	Runs       int     `json:"runs"`   // runs of consecutive stages (each two or more)
	SumNS      int64   `json:"sum_ns"` // the stages' lengths, summed
	MaxNS      int64   `json:"max_ns"` // the longest stage of each run, summed: the runs' length with their stages at once
	SavingNS   int64   `json:"saving_ns"`
}

// AnalyzeTrace analyses one assembled trace. The request is the trace's
// topmost server span (the root when there is none).
func AnalyzeTrace(t *Trace) Request {
	root := topServer(t.Root)
	rs := root.Span
	req := Request{
		TraceID:    t.ID,
		Endpoint:   Endpoint(rs),
		StartNS:    rs.StartNS,
		DurationNS: rs.DurationNS(),
		critical:   map[Resource]int64{},
	}
	a := &analysis{req: &req}
	a.walk(root, rs.StartNS, rs.StartNS+rs.DurationNS(), 0)
	slices.Reverse(req.Critical) // walk collects them from the end
	req.Critical = mergeSegments(req.Critical)

	req.SelfNS = req.critical[Self]
	calls := collectCalls(root)
	req.Calls = groupCalls(calls, req.critical)
	req.NPlusOne, req.Redundant = repeats(calls)
	Walk(root, func(n *Node) {
		if _, isCall := ResourceOf(n.Span); isCall && n != root {
			return
		}
		if g, ok := serialGroup(n); ok {
			req.Serial = append(req.Serial, g)
		}
	})
	return req
}

// topServer returns the first server span below and including n, breadth
// first, or n itself.
func topServer(n *Node) *Node {
	queue := []*Node{n}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur.Span.Kind == evidence.SpanKindServer {
			return cur
		}
		queue = append(queue, cur.Children...)
	}
	return n
}

type analysis struct {
	req *Request
}

func (a *analysis) add(r Resource, spanID string, from, to int64) {
	if to <= from {
		return
	}
	a.req.Critical = append(a.req.Critical, Segment{Resource: r, SpanID: spanID, StartNS: from, EndNS: to})
	a.req.critical[r] += to - from
}

// walk puts node n, clamped to [lo, hi], on the critical path. Going back
// from hi, the child that ends last (clamped to the cursor) is on the
// path; children that start after the cursor ran in parallel with a
// critical one and are not. Gaps between critical children are n's own
// time. Children are clamped to their parent, which absorbs clock skew
// between services.
func (a *analysis) walk(n *Node, lo, hi int64, depth int) {
	type kid struct {
		n      *Node
		cs, ce int64
	}
	var kids []kid
	if depth < maxDepth {
		for _, c := range n.Children {
			cs, ce := max(c.Span.StartNS, lo), min(c.Span.EndNS, hi)
			if ce > cs {
				kids = append(kids, kid{c, cs, ce})
			}
		}
	}
	slices.SortFunc(kids, func(x, y kid) int {
		return cmp.Or(-cmp.Compare(x.ce, y.ce), cmp.Compare(x.cs, y.cs), cmp.Compare(x.n.Span.SpanID, y.n.Span.SpanID))
	})
	cursor := hi
	for _, k := range kids {
		if k.cs >= cursor {
			continue // ran in parallel with a later critical child
		}
		end := min(k.ce, cursor)
		a.add(Self, n.Span.SpanID, end, cursor)
		if r, ok := ResourceOf(k.n.Span); ok {
			a.add(r, k.n.Span.SpanID, k.cs, end)
		} else {
			a.walk(k.n, k.cs, end, depth+1)
		}
		cursor = k.cs
	}
	a.add(Self, n.Span.SpanID, lo, cursor)
}

// mergeSegments joins adjacent segments of the same resource and span.
func mergeSegments(segs []Segment) []Segment {
	out := segs[:0]
	for _, s := range segs {
		if l := len(out) - 1; l >= 0 && out[l].Resource == s.Resource && out[l].SpanID == s.SpanID && out[l].EndNS == s.StartNS {
			out[l].EndNS = s.EndNS
			continue
		}
		out = append(out, s)
	}
	return out
}

type call struct {
	res  Resource
	span evidence.Span
	key  string // identity of the parameters; "" when unknown
}

// collectCalls returns the calls made by the service of root: call spans
// found without descending into calls (what a downstream did is its own).
func collectCalls(root *Node) []call {
	var out []call
	stack := []*Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if r, ok := ResourceOf(n.Span); ok && n != root {
			out = append(out, call{res: r, span: n.Span, key: callKey(r, n.Span)})
			continue
		}
		for i := len(n.Children) - 1; i >= 0; i-- {
			stack = append(stack, n.Children[i])
		}
	}
	return out
}

func callKey(r Resource, s evidence.Span) string {
	switch r.Kind {
	case KindDB:
		return s.DBArgs
	case KindHTTP:
		if s.HTTPURL == "" {
			return ""
		}
		return s.HTTPMethod + " " + s.HTTPURL
	}
	return ""
}

func groupCalls(calls []call, critical map[Resource]int64) []Calls {
	idx := map[Resource]int{}
	var out []Calls
	keys := map[Resource]map[string]struct{}{}
	for _, c := range calls {
		i, ok := idx[c.res]
		if !ok {
			i = len(out)
			idx[c.res] = i
			out = append(out, Calls{Resource: c.res, CriticalNS: critical[c.res]})
			keys[c.res] = map[string]struct{}{}
		}
		out[i].Count++
		out[i].TotalNS += c.span.DurationNS()
		if c.key == "" {
			out[i].Distinct = -1
		} else if out[i].Distinct >= 0 {
			keys[c.res][c.key] = struct{}{}
			out[i].Distinct = len(keys[c.res])
		}
	}
	return out
}

// repeats finds the n+1 and redundant patterns among a request's calls.
func repeats(calls []call) (nPlusOne, redundant []Repeat) {
	byRes := map[Resource][]call{}
	var order []Resource
	for _, c := range calls {
		if _, ok := byRes[c.res]; !ok {
			order = append(order, c.res)
		}
		byRes[c.res] = append(byRes[c.res], c)
	}
	for _, r := range order {
		cs := byRes[r]
		var total int64
		known := true
		groups := map[string][]call{}
		for _, c := range cs {
			total += c.span.DurationNS()
			if c.key == "" {
				known = false
			} else {
				groups[c.key] = append(groups[c.key], c)
			}
		}
		distinct := len(groups)
		if !known {
			distinct = -1
		}
		if r.Kind != KindCall && len(cs) >= NPlusOneMinCalls && distinct != 1 {
			nPlusOne = append(nPlusOne, Repeat{Resource: r, Count: len(cs), Distinct: distinct, TotalNS: total})
		}
		rep := Repeat{Resource: r}
		for _, g := range groups {
			if len(g) < RedundantMinCalls {
				continue
			}
			rep.Count += len(g)
			rep.Distinct++
			rep.Extra += len(g) - 1
			for i, c := range g {
				rep.TotalNS += c.span.DurationNS()
				if i > 0 {
					rep.WastedNS += c.span.DurationNS()
				}
			}
		}
		if rep.Count > 0 {
			redundant = append(redundant, rep)
		}
	}
	return nPlusOne, redundant
}

// SerialMaxGapRatio bounds the gap between two stages that count as
// consecutive: at most as long as the longer of the two. Independent calls
// in a loop follow one another at once (the code between them only stores
// an answer); a caller that works longer between two calls than a call
// takes is likely processing one answer before it can make the next call
// (a data dependency the spans cannot show), so the chain breaks there.
const SerialMaxGapRatio = 1.0

// serialGroup is SerialCalls for Request.Serial: calls to two or more
// different resources (one resource called in a loop is n+1, not serial).
func serialGroup(n *Node) (SerialGroup, bool) {
	g, ok := SerialCalls(n)
	if !ok || len(g.Resources) < 2 {
		return SerialGroup{}, false
	}
	return g, true
}

// SerialCalls looks at the non-database calls made directly by n (its
// children that are calls, in start order). Database statements are left
// out: on one connection they are sequential by nature, and their order
// often carries a dependency (transaction). A call identical to an earlier
// one (same parameters: method and URL) is left out too: repeating it is
// redundant work to remove, not to run at once. The rest form stages:
// maximal chains of calls that overlap (touching is not overlapping). Runs
// of two or more consecutive stages (see SerialMaxGapRatio) ran one after
// another where they could have run at once: running each run's stages at
// once would take the longest of them instead of their sum. ok is false
// when no run has two stages.
func SerialCalls(n *Node) (SerialGroup, bool) {
	type stage struct {
		s, e  int64
		calls []*Node
	}
	var stages []stage
	seen := map[string]bool{}
	for _, c := range n.Children {
		r, ok := ResourceOf(c.Span)
		if !ok || r.Kind == KindDB {
			continue
		}
		if k := callKey(r, c.Span); k != "" {
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		s, e := c.Span.StartNS, c.Span.StartNS+c.Span.DurationNS()
		if l := len(stages) - 1; l >= 0 && s < stages[l].e {
			stages[l].e = max(stages[l].e, e)
			stages[l].calls = append(stages[l].calls, c)
			continue
		}
		stages = append(stages, stage{s: s, e: e, calls: []*Node{c}})
	}
	g := SerialGroup{ParentSpanID: n.Span.SpanID}
	byRes := map[Resource]int{}
	addRun := func(run []stage) {
		if len(run) < 2 {
			return
		}
		var sum, longest int64
		for _, st := range run {
			l := st.e - st.s
			sum += l
			longest = max(longest, l)
			for _, c := range st.calls {
				r, _ := ResourceOf(c.Span)
				i, ok := byRes[r]
				if !ok {
					i = len(g.Resources)
					byRes[r] = i
					g.Resources = append(g.Resources, r)
					g.ResourceNS = append(g.ResourceNS, 0)
				}
				g.ResourceNS[i] += c.Span.DurationNS()
				g.Calls++
			}
		}
		g.Runs++
		g.Stages += len(run)
		g.SumNS += sum
		g.MaxNS += longest
	}
	from := 0
	for i := 1; i <= len(stages); i++ {
		if i < len(stages) {
			prev, cur := stages[i-1], stages[i]
			gap := cur.s - prev.e
			if float64(gap) <= SerialMaxGapRatio*float64(max(prev.e-prev.s, cur.e-cur.s)) {
				continue
			}
		}
		addRun(stages[from:i])
		from = i
	}
	g.SavingNS = g.SumNS - g.MaxNS
	if g.Stages < 2 || g.SavingNS <= 0 {
		return SerialGroup{}, false
	}
	return g, true
}

// serialKey identifies a serial pattern across requests.
func serialKey(g SerialGroup) string {
	names := make([]string, len(g.Resources))
	for i, r := range g.Resources {
		names[i] = r.String()
	}
	return strings.Join(names, "\x00")
}
