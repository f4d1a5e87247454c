package diagnose

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/trace"
)

// This file holds what the trace rules (rules_trace.go) share: one analysis
// of the spans of the focus step and of the baseline step, made on first use
// and reused by every trace rule; and the pg_stat_statements and load
// aggregates they compare it with.

// noSpansWhy is what a trace rule says when the run holds no span at all.
const noSpansWhy = "could not check: no spans received; export the target's traces to the receiver (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318)"

// traceCache shares one traceView between the trace rules of one Rules()
// list. It remembers the Input it analysed by a weak pointer, so it neither
// keeps an old run alive nor mixes two runs up.
type traceCache struct {
	mu   sync.Mutex
	in   weak.Pointer[Input]
	view *traceView
}

// get returns the analysis of in's spans, computing it on first use.
func (c *traceCache) get(in *Input) *traceView {
	if c == nil {
		return newTraceView(in)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view == nil || c.in.Value() != in {
		c.view = newTraceView(in)
		c.in = weak.Make(in)
	}
	return c.view
}

// traceView is what the spans say at the knee and at low load.
type traceView struct {
	spans     int // spans in the whole run
	focusStep int
	baseStep  int
	focus     *stepTraces // nil when the focus step has no request traces
	base      *stepTraces // nil when there is no baseline or it has no traces
}

// why returns the "could not check" reason when the focus step cannot be
// judged from spans, and "" when it can.
func (v *traceView) why(in *Input) string {
	switch {
	case v.spans == 0:
		return noSpansWhy
	case v.focusStep < 0:
		return "could not check: no load step completed"
	case v.focus == nil:
		return fmt.Sprintf("could not check: %d spans received, but none of a request served during the step at %.0f req/s (are the target's server spans exported?)", v.spans, in.Steps[v.focusStep].OfferedRPS)
	}
	return ""
}

func newTraceView(in *Input) *traceView {
	v := &traceView{spans: len(in.Spans), focusStep: in.FocusStep(), baseStep: in.BaselineStep()}
	if v.spans == 0 || v.focusStep < 0 {
		return v
	}
	v.focus = trAnalyseStep(in, v.focusStep)
	if v.baseStep >= 0 && v.baseStep != v.focusStep {
		v.base = trAnalyseStep(in, v.baseStep)
	}
	return v
}

// stepTraces is the analysis of the requests traced during one step.
type stepTraces struct {
	step       int
	requests   int     // traced requests (traces with a server span)
	totalMS    float64 // their summed duration
	endpoints  []trace.EndpointStats
	statements map[string]bool // normalised statements the spans carried
	serial     []trSerial
	reads      []trRead
	keys       map[trace.Resource]trKeys
	// typicalMS is, per endpoint and resource, the median duration of
	// one call: what a run of calls made at once would wait for when a
	// few calls' long tails are left aside.
	typicalMS map[string]map[trace.Resource]float64
	// inside is, per endpoint and resource, how much of the calls' time
	// the downstream's own server spans cover.
	inside map[string]map[trace.Resource]trInside
	// overheadMS is, per endpoint and statement, the time of the
	// database spans that carry no statement (a pool acquire, a connect)
	// attributed to the statement by its share of the request's
	// statements, summed over requests: each execution outside a
	// transaction pays for its own connection.
	overheadMS map[string]map[trace.Resource]float64
}

// trKeys counts a resource's calls and their distinct parameter sets
// over a step: an ideal cache would miss only the distinct ones.
type trKeys struct {
	calls    int
	distinct int
	unknown  bool // some calls' parameters were unknown
}

// idealHitRatio is the share of calls a cache of unbounded size and life
// would answer; ok is false when parameters are unknown.
func (k trKeys) idealHitRatio() (float64, bool) {
	if k.unknown || k.calls == 0 {
		return 0, false
	}
	return 1 - float64(k.distinct)/float64(k.calls), true
}

// endpoint returns the stats of one endpoint, or nil.
func (st *stepTraces) endpoint(name string) *trace.EndpointStats {
	if st == nil {
		return nil
	}
	for i := range st.endpoints {
		if st.endpoints[i].Endpoint == name {
			return &st.endpoints[i]
		}
	}
	return nil
}

// isStatement reports whether a db resource names a SQL statement (rather
// than a span without query text: a connect, a pool acquire).
func (st *stepTraces) isStatement(r trace.Resource) bool {
	return r.Kind == trace.KindDB && st.statements[r.Name]
}

// trAnalyseStep assembles and analyses the traces of the requests that
// started during a step. Only those spans are gathered, so memory follows
// the step, not the run. It returns nil when no request was traced.
func trAnalyseStep(in *Input, step int) *stepTraces {
	start, end := in.StepSpan(step)
	// A request is a trace whose entry server span has no parent. Server
	// spans whose parent is somewhere else are fragments: a downstream's
	// side of a call whose caller's spans were shed, which must not count
	// as requests of their own. Only when no server span in the step lacks
	// a parent (a caller propagates context without exporting spans) do
	// they all count.
	ids := map[string]bool{} // trace id -> has a parentless server span
	entries := 0
	for i := range in.Spans {
		s := &in.Spans[i]
		// Half-open: a request that starts as the step ends was sent at
		// the next step's rate.
		if s.Kind == evidence.SpanKindServer && s.T >= start && s.T < end && s.TraceID != "" {
			entry := s.ParentID == ""
			if entry && !ids[s.TraceID] {
				entries++
			}
			ids[s.TraceID] = ids[s.TraceID] || entry
		}
	}
	if entries > 0 {
		for id, entry := range ids {
			if !entry {
				delete(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var spans []evidence.Span
	for i := range in.Spans {
		if _, ok := ids[in.Spans[i].TraceID]; ok {
			spans = append(spans, in.Spans[i])
		}
	}
	st := &stepTraces{step: step, statements: map[string]bool{}}
	for i := range spans {
		if q := spans[i].DBQuery; q != "" {
			st.statements[q] = true
		}
	}
	var reqs []trace.Request
	var shapes []trShape
	for _, t := range trace.Assemble(spans) {
		root := trTopServer(t.Root)
		if root == nil {
			continue // background work, not a request
		}
		r := trace.AnalyzeTrace(t)
		if r.DurationNS <= 0 {
			continue
		}
		reqs = append(reqs, r)
		shapes = append(shapes, trShapeOf(r.Endpoint, r.DurationNS, root))
		st.totalMS += float64(r.DurationNS) / 1e6
	}
	if len(reqs) == 0 {
		return nil
	}
	st.requests = len(reqs)
	st.endpoints = trace.Aggregate(reqs)
	st.serial = trAggregateSerial(shapes, st.endpoints)
	st.reads = trAggregateReads(shapes, st)
	st.keys = trCountKeys(shapes)
	st.typicalMS, st.inside = trTypicalCalls(shapes)
	st.overheadMS = trStatementOverhead(shapes, st)
	return st
}

// trTopServer returns the first server span below and including n,
// breadth first, or nil when the trace has none.
func trTopServer(n *trace.Node) *trace.Node {
	queue := []*trace.Node{n}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur.Span.Kind == evidence.SpanKindServer {
			return cur
		}
		queue = append(queue, cur.Children...)
	}
	return nil
}

// trCall is one call out of the service during a request.
type trCall struct {
	res     trace.Resource
	key     string // identity of the parameters ("" unknown)
	method  string // HTTP method, for HTTP calls
	startNS int64
	durNS   int64
	// serverNS is the time of the downstream's own server span under the
	// call (its handler's work), -1 when the downstream exports none.
	serverNS int64
}

// trShape is what the serial and cache analyses need of one request.
type trShape struct {
	endpoint string
	durNS    int64
	calls    []trCall
	serial   trSerialGroup // the request's largest serial group (calls == 0: none)
}

// trSerialGroup is the independent non-database calls under one parent
// that did not overlap: in each run, the stages ran one after another.
type trSerialGroup struct {
	calls, stages int
	runs          int // runs of consecutive stages
	sumNS, maxNS  int64
	savingNS      int64
	byRes         map[trace.Resource]int64 // time per resource in the group
	sameRoute     bool                     // every call went to one route (a loop over items)
}

// trShapeOf collects the calls the service made while serving root (without
// descending into the calls: what a downstream did is its own) and finds its
// largest serial group.
func trShapeOf(endpoint string, durNS int64, root *trace.Node) trShape {
	sh := trShape{endpoint: endpoint, durNS: durNS}
	stack := []*trace.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if g, ok := trSerialOf(n); ok && g.savingNS > sh.serial.savingNS {
			sh.serial = g
		}
		for i := len(n.Children) - 1; i >= 0; i-- {
			c := n.Children[i]
			if r, ok := trace.ResourceOf(c.Span); ok {
				sh.calls = append(sh.calls, trCall{res: r, key: trCallKey(r, c.Span), method: c.Span.HTTPMethod,
					startNS: c.Span.StartNS, durNS: c.Span.DurationNS(), serverNS: trServerNS(c)})
				continue
			}
			stack = append(stack, c)
		}
	}
	return sh
}

// trServerNS is the duration of the first server span directly under a
// call (the downstream's side of it); 0 for a call that failed without one
// (it never reached the downstream's handler: a refused or failed
// connection); -1 when unknown (no server span: the downstream exports
// none, or it was not kept).
func trServerNS(call *trace.Node) int64 {
	for _, k := range call.Children {
		if k.Span.Kind == evidence.SpanKindServer {
			return k.Span.DurationNS()
		}
	}
	if call.Span.Status == evidence.SpanStatusError && call.Span.HTTPStatus == 0 {
		return 0
	}
	return -1
}

// trCallKey identifies a call's parameters: a statement's argument
// fingerprint, or an HTTP call's method and full URL; "" when unknown.
func trCallKey(r trace.Resource, s evidence.Span) string {
	switch r.Kind {
	case trace.KindDB:
		return s.DBArgs
	case trace.KindHTTP:
		if s.HTTPURL == "" {
			return ""
		}
		return s.HTTPMethod + " " + s.HTTPURL
	}
	return ""
}

// trSerialOf is trace.SerialCalls (sibling calls in runs of consecutive
// stages that did not overlap, identical repeats left out) in the form the
// aggregation needs. Unlike trace.Request.Serial, calls to one route count:
// a loop over items calling the same route one at a time is the commonest
// serial pattern.
func trSerialOf(n *trace.Node) (trSerialGroup, bool) {
	sg, ok := trace.SerialCalls(n)
	if !ok {
		return trSerialGroup{}, false
	}
	g := trSerialGroup{calls: sg.Calls, stages: sg.Stages, runs: sg.Runs, sumNS: sg.SumNS, maxNS: sg.MaxNS,
		savingNS: sg.SavingNS, byRes: make(map[trace.Resource]int64, len(sg.Resources)), sameRoute: len(sg.Resources) == 1}
	for i, r := range sg.Resources {
		g.byRes[r] += sg.ResourceNS[i]
	}
	return g, true
}

// trSerial is the serial calls of one endpoint, named by the
// downstream that takes most of their time.
type trSerial struct {
	endpoint     string
	downstream   trace.Resource
	requests     int     // requests of the endpoint that showed it
	share        float64 // of the endpoint's traced requests
	meanCalls    float64
	meanStages   float64
	meanRuns     float64
	meanSumMS    float64
	meanSavingMS float64
	// savingShare is the saving over the duration of all the endpoint's
	// traced requests: the share of its latency parallel calls would save.
	savingShare float64
	sameRoute   float64 // share of the affected requests whose group is one route
}

func trAggregateSerial(shapes []trShape, eps []trace.EndpointStats) []trSerial {
	type acc struct {
		reqs                int
		calls, stages, same int
		runs                int
		sum, saving         int64
		byRes               map[trace.Resource]int64
	}
	accs := map[string]*acc{}
	durs := map[string]int64{}
	for _, sh := range shapes {
		durs[sh.endpoint] += sh.durNS
		g := sh.serial
		if g.calls == 0 {
			continue
		}
		a := accs[sh.endpoint]
		if a == nil {
			a = &acc{byRes: map[trace.Resource]int64{}}
			accs[sh.endpoint] = a
		}
		a.reqs++
		a.calls += g.calls
		a.stages += g.stages
		a.runs += g.runs
		a.sum += g.sumNS
		a.saving += g.savingNS
		if g.sameRoute {
			a.same++
		}
		for r, t := range g.byRes {
			a.byRes[r] += t
		}
	}
	var out []trSerial
	for _, ep := range eps {
		a := accs[ep.Endpoint]
		if a == nil || ep.Requests == 0 {
			continue
		}
		k := float64(a.reqs)
		p := trSerial{
			endpoint:     ep.Endpoint,
			requests:     a.reqs,
			share:        k / float64(ep.Requests),
			meanCalls:    float64(a.calls) / k,
			meanStages:   float64(a.stages) / k,
			meanRuns:     float64(a.runs) / k,
			meanSumMS:    float64(a.sum) / k / 1e6,
			meanSavingMS: float64(a.saving) / k / 1e6,
			sameRoute:    float64(a.same) / k,
		}
		if d := durs[ep.Endpoint]; d > 0 {
			p.savingShare = float64(a.saving) / float64(d)
		}
		var best int64 = -1
		for r, t := range a.byRes {
			if t > best || t == best && r.String() < p.downstream.String() {
				best, p.downstream = t, r
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b trSerial) int {
		return cmp.Or(-cmp.Compare(a.savingShare, b.savingShare), cmp.Compare(a.endpoint, b.endpoint))
	})
	return out
}

// trRead is the read of one endpoint that most requests issued with
// identical parameters: the candidate for a cache.
type trRead struct {
	endpoint string
	resource trace.Resource
	// requests showed the identical read; share is that over the
	// endpoint's traced requests.
	requests int
	share    float64
	// calls is every call of the resource by the endpoint, distinct the
	// parameter sets among them (an ideal cache would miss only those).
	calls, distinct int
	identCalls      int     // the identical calls among them
	meanCallMS      float64 // of the identical calls
	timeMS          float64 // in the identical calls, summed over the requests
	// timeShare is the time in the identical calls over the duration of
	// all the endpoint's traced requests.
	timeShare float64
}

// trAggregateReads finds, per endpoint, the read issued with the same
// parameters by the most requests. Reads are SELECT-like statements with a
// known argument fingerprint, and GET/HEAD calls with a URL.
func trAggregateReads(shapes []trShape, st *stepTraces) []trRead {
	type ident struct {
		res trace.Resource
		key string
	}
	type acc struct {
		reqs  int
		calls int
		ns    int64
		last  int // index of the last request counted
	}
	type epAcc struct {
		reqs   int
		durNS  int64
		idents map[ident]*acc
		calls  map[trace.Resource]int
		keys   map[trace.Resource]map[string]bool
	}
	eps := map[string]*epAcc{}
	var order []string
	for i, sh := range shapes {
		e := eps[sh.endpoint]
		if e == nil {
			e = &epAcc{idents: map[ident]*acc{}, calls: map[trace.Resource]int{}, keys: map[trace.Resource]map[string]bool{}}
			eps[sh.endpoint] = e
			order = append(order, sh.endpoint)
		}
		e.reqs++
		e.durNS += sh.durNS
		for _, c := range sh.calls {
			if c.key == "" || !trIsReadCall(c, st) {
				continue
			}
			id := ident{c.res, c.key}
			a := e.idents[id]
			if a == nil {
				a = &acc{last: -1}
				e.idents[id] = a
			}
			if a.last != i {
				a.reqs++
				a.last = i
			}
			a.calls++
			a.ns += c.durNS
			e.calls[c.res]++
			if e.keys[c.res] == nil {
				e.keys[c.res] = map[string]bool{}
			}
			if len(e.keys[c.res]) <= trMaxKeys {
				e.keys[c.res][c.key] = true
			}
		}
	}
	var out []trRead
	for _, name := range order {
		e := eps[name]
		var best *acc
		var bestID ident
		for id, a := range e.idents {
			if best == nil || a.reqs > best.reqs || a.reqs == best.reqs && (a.ns > best.ns || a.ns == best.ns && id.res.String()+id.key < bestID.res.String()+bestID.key) {
				best, bestID = a, id
			}
		}
		if best == nil {
			continue
		}
		r := trRead{
			endpoint:   name,
			resource:   bestID.res,
			requests:   best.reqs,
			share:      float64(best.reqs) / float64(e.reqs),
			calls:      e.calls[bestID.res],
			distinct:   len(e.keys[bestID.res]),
			identCalls: best.calls,
			meanCallMS: float64(best.ns) / float64(best.calls) / 1e6,
			timeMS:     float64(best.ns) / 1e6,
		}
		if e.durNS > 0 {
			r.timeShare = float64(best.ns) / float64(e.durNS)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b trRead) int {
		return cmp.Or(-cmp.Compare(a.timeShare*a.share, b.timeShare*b.share), cmp.Compare(a.endpoint, b.endpoint))
	})
	return out
}

// trInside is the part of a resource's calls spent inside the downstream:
// the calls whose time inside is known (a server span under them, or a
// failure before any answer), their time, and the time of those server
// spans.
type trInside struct {
	calls, withServer  int
	clientNS, serverNS int64
}

// share is the server spans' time over their calls' time; ok is false
// when it is known for fewer than half of the calls.
func (t trInside) share() (float64, bool) {
	if t.withServer*2 < t.calls || t.clientNS <= 0 {
		return 0, false
	}
	return float64(t.serverNS) / float64(t.clientNS), true
}

// trTypicalCalls returns, per endpoint and resource, the median call
// duration and how much of the calls the downstream's server spans cover.
func trTypicalCalls(shapes []trShape) (map[string]map[trace.Resource]float64, map[string]map[trace.Resource]trInside) {
	durs := map[string]map[trace.Resource][]int64{}
	inside := map[string]map[trace.Resource]trInside{}
	for _, sh := range shapes {
		m := durs[sh.endpoint]
		if m == nil {
			m = map[trace.Resource][]int64{}
			durs[sh.endpoint] = m
			inside[sh.endpoint] = map[trace.Resource]trInside{}
		}
		for _, c := range sh.calls {
			m[c.res] = append(m[c.res], c.durNS)
			in := inside[sh.endpoint][c.res]
			in.calls++
			if c.serverNS >= 0 {
				in.withServer++
				in.clientNS += c.durNS
				in.serverNS += min(c.serverNS, c.durNS)
			}
			inside[sh.endpoint][c.res] = in
		}
	}
	out := make(map[string]map[trace.Resource]float64, len(durs))
	for ep, m := range durs {
		out[ep] = make(map[trace.Resource]float64, len(m))
		for r, d := range m {
			slices.Sort(d)
			out[ep][r] = float64(d[len(d)/2]) / 1e6
		}
	}
	return out, inside
}

// trSplit is how one downstream's time on the critical path of one
// endpoint divides between the explanations the trace rules offer, in
// milliseconds per request of the endpoint (all its traced requests).
type trSplit struct {
	requests    int     // the endpoint's traced requests
	criticalMS  float64 // the downstream's time on the critical path
	serialMS    float64 // what running its serial calls at once would save (sum minus longest stage, per run)
	redundantMS float64 // its repeated identical calls
	ownMS       float64 // the rest: the wait on the downstream itself
	// orderMS is serialMS with a typical call (the median) as what each
	// run would wait for at once instead of its longest stage, and waitMS
	// the rest of the critical-path time. They rank the two explanations:
	// under overload single calls take far longer than others (queues,
	// retransmits), and the longest stage of a run then counts one
	// call's tail as the dependency's own wait where the order of the
	// calls made the request wait for all of them.
	orderMS, waitMS float64
}

// split returns the trSplit of a downstream on an endpoint; the zero value
// when the endpoint was not traced.
func (st *stepTraces) split(endpoint string, res trace.Resource) trSplit {
	ep := st.endpoint(endpoint)
	if ep == nil || ep.Requests == 0 {
		return trSplit{}
	}
	n := float64(ep.Requests)
	sp := trSplit{requests: ep.Requests}
	for _, rs := range ep.Resources {
		if rs.Resource == res {
			sp.criticalMS = rs.MeanCriticalMS
		}
	}
	for _, rp := range ep.Redundant {
		if rp.Resource == res {
			sp.redundantMS = rp.MeanWastedMS * float64(rp.Requests) / n
		}
	}
	for _, p := range st.serial {
		if p.endpoint != endpoint || p.downstream != res {
			continue
		}
		k := float64(p.requests) / n
		sp.serialMS = p.meanSavingMS * k
		sp.orderMS = math.Max(sp.serialMS, (p.meanSumMS-p.meanRuns*st.typicalMS[endpoint][res])*k)
	}
	sp.redundantMS = math.Min(sp.redundantMS, sp.criticalMS)
	sp.serialMS = math.Min(sp.serialMS, sp.criticalMS-sp.redundantMS)
	sp.orderMS = math.Min(sp.orderMS, sp.criticalMS-sp.redundantMS)
	sp.ownMS = sp.criticalMS - sp.redundantMS - sp.serialMS
	sp.waitMS = sp.criticalMS - sp.redundantMS - sp.orderMS
	return sp
}

// trCountKeys counts every resource's calls and distinct parameter sets.
func trCountKeys(shapes []trShape) map[trace.Resource]trKeys {
	out := map[trace.Resource]trKeys{}
	seen := map[trace.Resource]map[string]bool{}
	for _, sh := range shapes {
		for _, c := range sh.calls {
			k := out[c.res]
			k.calls++
			if c.key == "" {
				k.unknown = true
			} else {
				if seen[c.res] == nil {
					seen[c.res] = map[string]bool{}
				}
				switch {
				case seen[c.res][c.key]:
				case len(seen[c.res]) < trMaxKeys:
					seen[c.res][c.key] = true
					k.distinct++
				default:
					k.distinct++ // not remembered: counted as new (a conservative hit ratio)
				}
			}
			out[c.res] = k
		}
	}
	return out
}

// trStatementOverhead spreads each request's time in database spans
// without a statement over its statements, by count.
func trStatementOverhead(shapes []trShape, st *stepTraces) map[string]map[trace.Resource]float64 {
	out := map[string]map[trace.Resource]float64{}
	for _, sh := range shapes {
		var overNS int64
		stmts := 0
		for _, c := range sh.calls {
			switch {
			case st.isStatement(c.res):
				stmts++
			case c.res.Kind == trace.KindDB:
				overNS += c.durNS
			}
		}
		if overNS <= 0 || stmts == 0 {
			continue
		}
		m := out[sh.endpoint]
		if m == nil {
			m = map[trace.Resource]float64{}
			out[sh.endpoint] = m
		}
		per := float64(overNS) / 1e6 / float64(stmts)
		for _, c := range sh.calls {
			if st.isStatement(c.res) {
				m[c.res] += per
			}
		}
	}
	return out
}

// trMaxKeys bounds the distinct parameter sets remembered per resource
// (beyond it the read is plainly not repeated; memory stays bounded).
const trMaxKeys = 100000

// trIsReadCall reports whether a call only reads: a SELECT-like statement, or an
// HTTP GET or HEAD.
func trIsReadCall(c trCall, st *stepTraces) bool {
	switch c.res.Kind {
	case trace.KindDB:
		return st.isStatement(c.res) && trReadStatement(c.res.Name)
	case trace.KindHTTP:
		return c.method == "GET" || c.method == "HEAD"
	}
	return false
}

// trReadStatement reports whether a normalised statement reads without
// writing: SELECT, VALUES, TABLE, SHOW, or a WITH whose statements do not
// write. SELECT ... FOR UPDATE/SHARE takes locks, so it is not a plain read.
func trReadStatement(q string) bool {
	u := strings.ToUpper(strings.TrimSpace(q))
	first, _, _ := strings.Cut(u, " ")
	switch first {
	case "SELECT", "VALUES", "TABLE", "SHOW":
	case "WITH":
		for _, w := range []string{"INSERT ", "UPDATE ", "DELETE ", "MERGE "} {
			if strings.Contains(u, w) {
				return false
			}
		}
	default:
		return false
	}
	return !strings.Contains(u, " FOR UPDATE") && !strings.Contains(u, " FOR SHARE") &&
		!strings.Contains(u, " FOR NO KEY UPDATE") && !strings.Contains(u, " FOR KEY SHARE")
}

// trTxControl reports whether a statement is transaction control
// or session set-up (BEGIN, COMMIT, SET ...), which repeats by nature.
func trTxControl(q string) bool {
	first, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(q)), " ")
	switch strings.TrimSuffix(first, ";") {
	case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "RESET", "DISCARD", "DEALLOCATE", "PREPARE", "EXECUTE", "LISTEN", "UNLISTEN":
		return true
	}
	return false
}

// trStatement is one statement's pg_stat_statements deltas summed over a
// step.
type trStatement struct {
	query   string
	calls   int64
	rows    int64
	execMS  float64
	windows int // windows in which it ran
	// minRowsPerCall and maxRowsPerCall span the windows' rows per call:
	// equal when every call returned as many rows.
	minRowsPerCall, maxRowsPerCall float64
}

// meanExecMS is the mean execution time of one call.
func (p *trStatement) meanExecMS() float64 {
	if p == nil || p.calls == 0 {
		return 0
	}
	return p.execMS / float64(p.calls)
}

// trStatements sums pg_stat_statements over a step, by normalised text.
// ok is false when the probe recorded no statements in it.
func trStatements(in *Input, step int) (map[string]*trStatement, bool) {
	start, end := in.StepSpan(step)
	out := map[string]*trStatement{}
	recs := in.PostgresIn(evidence.PGKindStatements, start, end)
	for _, r := range recs {
		for _, s := range r.Statements {
			if s.Calls <= 0 {
				continue
			}
			p := out[s.Query]
			rpc := float64(s.Rows) / float64(s.Calls)
			if p == nil {
				p = &trStatement{query: s.Query, minRowsPerCall: rpc, maxRowsPerCall: rpc}
				out[s.Query] = p
			}
			p.calls += s.Calls
			p.rows += s.Rows
			p.execMS += s.TotalExecMS
			p.windows++
			p.minRowsPerCall = min(p.minRowsPerCall, rpc)
			p.maxRowsPerCall = max(p.maxRowsPerCall, rpc)
		}
	}
	return out, len(recs) > 0
}

// trLoad is what the load generator measured in a step.
type trLoad struct {
	requests int64
	// meanServiceMS is the mean service time (from the actual send), from
	// the windows' in-flight means by Little's law.
	meanServiceMS float64
	endpoints     map[string]*trEndpointLoad
}

// trEndpointLoad is one endpoint's requests and request-weighted median
// latency in a step.
type trEndpointLoad struct {
	requests int64
	p50, p99 float64 // request-weighted means of the windows' percentiles
}

func trLoadOf(in *Input, step int) trLoad {
	l := trLoad{endpoints: map[string]*trEndpointLoad{}}
	var inflightMS float64
	for _, w := range in.WindowsIn(step) {
		l.requests += w.Requests
		inflightMS += w.InflightMean * float64(w.EndMS-w.StartMS)
		for _, e := range w.Endpoints {
			el := l.endpoints[e.Name]
			if el == nil {
				el = &trEndpointLoad{}
				l.endpoints[e.Name] = el
			}
			el.requests += e.Requests
			el.p50 += e.LatencyMS.P50 * float64(e.Requests)
			el.p99 += e.LatencyMS.P99 * float64(e.Requests)
		}
	}
	for _, el := range l.endpoints {
		if el.requests > 0 {
			el.p50 /= float64(el.requests)
			el.p99 /= float64(el.requests)
		}
	}
	if l.requests > 0 {
		// Little's law: in-flight = rate x time, so the summed in-flight
		// time over the requests is their mean service time.
		l.meanServiceMS = inflightMS / float64(l.requests)
	}
	if l.meanServiceMS <= 0 && step >= 0 && step < len(in.Steps) {
		s := in.Steps[step]
		if s.AchievedRPS > 0 {
			l.meanServiceMS = s.InflightMean / s.AchievedRPS * 1000
		}
	}
	return l
}

// latencyFor returns the client-side latency of an endpoint named as the
// traces name it: the load's own name when they agree, else the step's
// overall p50/p99 when the load has a single endpoint (a trace names the
// route template, the load the path).
func (l trLoad) latencyFor(in *Input, step int, endpoint string) (p50, p99 float64, ok bool) {
	if e, found := l.endpoints[endpoint]; found && e.requests > 0 {
		return e.p50, e.p99, true
	}
	if len(l.endpoints) <= 1 && step >= 0 && step < len(in.Steps) {
		s := in.Steps[step]
		if s.Latency.P50 > 0 {
			return s.Latency.P50, s.Latency.P99, true
		}
	}
	return 0, 0, false
}
