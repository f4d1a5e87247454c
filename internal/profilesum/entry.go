package profilesum

import (
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/google/pprof/profile"
)

// Entry points: which request handler a stack belongs to. A profile names
// functions, not requests; the handler frame on a stack (or a pprof label
// the service set per request) is what ties a cost to an endpoint.

// entryLabelKeys are pprof label keys whose value names the request being
// served, as services and instrumentation set them with pprof.Do /
// pprof.SetGoroutineLabels (OpenTelemetry's http.route and span names,
// Pyroscope's span_name, and plain route/endpoint/handler keys), most
// specific first.
var entryLabelKeys = []string{
	"http.route", "http_route", "route", "endpoint", "handler",
	"http.target", "url.path", "path", "span_name", "span.name", "operation",
}

// entryDispatchPrefixes are library functions that call a request handler
// directly (not through a ServeHTTP method): routers and RPC servers whose
// handlers have their own signature.
var entryDispatchPrefixes = []string{
	"github.com/gin-gonic/gin.(*Context).Next",
	"github.com/labstack/echo",
	"github.com/go-chi/chi",
	"github.com/gofiber/fiber",
	"github.com/valyala/fasthttp.(*Server).serveConn",
	"google.golang.org/grpc.(*Server).processUnaryRPC",
	"google.golang.org/grpc.(*Server).processStreamingRPC",
	"net/rpc.(*service).call",
}

// IsDispatch reports whether a frame hands a request to a handler: any
// ServeHTTP method (net/http's ServeMux and HandlerFunc, routers,
// middleware types), or a known router or RPC server dispatch function.
func IsDispatch(fn string) bool {
	if fn == "" || fn == NoFunction {
		return false
	}
	rest := fn[len(PackagePath(fn)):]
	for el := range strings.SplitSeq(rest, ".") {
		if el == "ServeHTTP" || el == "serveHTTP" {
			return true
		}
	}
	return hasAnyPrefix(fn, entryDispatchPrefixes)
}

// EntryPoint is the request handler a stack runs under.
type EntryPoint struct {
	// Name is the handler function (as Go prints it, wrappers trimmed) or,
	// when Label is set, the label's value.
	Name string `json:"name"`
	// Label is the pprof label key Name came from ("" for a frame).
	Label string `json:"label,omitempty"`
}

// IsZero reports whether no entry point was found.
func (e EntryPoint) IsZero() bool { return e.Name == "" }

// EntryOf returns the entry point of a sample: the value of a
// request-naming pprof label when the service sets one, else the innermost
// application frame called by a dispatch frame (the handler under the
// mux and the middleware), else the zero EntryPoint (background work, or a
// server whose dispatch this package does not know).
func (o Options) EntryOf(s *profile.Sample) EntryPoint {
	for _, k := range entryLabelKeys {
		if vs := s.Label[k]; len(vs) > 0 && vs[0] != "" {
			return EntryPoint{Name: vs[0], Label: k}
		}
	}
	return EntryPoint{Name: o.entryFrame(frames(s))}
}

// entryFrame is the innermost application frame whose caller dispatches a
// request (fs leaf first), "" when there is none.
func (o Options) entryFrame(fs []string) string {
	for i := 0; i+1 < len(fs); i++ {
		if o.IsApplication(fs[i]) && IsDispatch(fs[i+1]) {
			return TrimWrapper(fs[i])
		}
	}
	return ""
}

// appChain is a sample's application frames from its entry point (or its
// outermost application frame) inwards, wrappers trimmed and direct
// recursion collapsed.
func (o Options) appChain(fs []string, entry string) []string {
	var out []string
	started := entry == ""
	for i := len(fs) - 1; i >= 0; i-- {
		f := fs[i]
		if !o.IsApplication(f) {
			continue
		}
		f = TrimWrapper(f)
		if !started {
			if f != entry {
				continue
			}
			started = true
		}
		if len(out) > 0 && out[len(out)-1] == f {
			continue
		}
		out = append(out, f)
	}
	return out
}

// PathFollow: a callee carrying at least this share of its caller's
// cumulative cost is where the caller's cost is, and the path descends
// into it. At three quarters, naming the callee keeps most of the cost
// while pointing at the code to change; below it the caller's own work
// and its other callees are a quarter or more, and the caller is the
// better name. (Zoo cpu.hot-path: each step of handler → search loop →
// edit distance keeps 95-99% of its caller.)
const PathFollow = 0.75

// HotPath is where a profile's application cost concentrates: the deepest
// application function on the heaviest chain of calls from an entry point
// that still carries at least PathFollow of its caller's cost.
type HotPath struct {
	// Function is the function to optimise; Path the application frames
	// from the entry point (or the outermost application frame) down to it
	// on its heaviest chain.
	Function string   `json:"function"`
	Path     []string `json:"path"`
	// Value is Function's cumulative cost (it and what it calls, runtime
	// and libraries included) on the chains that end in it; Share is Value
	// over the profile's total.
	Value int64   `json:"value"`
	Share float64 `json:"share"`
	// Self is the part of Value not in other application functions: the
	// function's own code and the runtime and libraries it calls. A path
	// that ends because its cost splits over many callees has little.
	Self int64 `json:"self"`
	// GC is the part of Self spent allocating or collecting garbage (the
	// runtime's allocation and GC assist frames).
	GC int64 `json:"gc"`
	// Aside is the part of Self, GC excluded, in frames the caller set
	// aside (HotPathOptions.Aside: serialising and sending responses, ...).
	Aside int64 `json:"aside"`
	// Entries is Value by the entry point of its stacks (zero EntryPoint:
	// none found), largest first.
	Entries []EntryCost `json:"entries"`
}

// Own is the share of the profile's total in Function's own work (Self)
// without allocation, garbage collection and set-aside work: what making
// the function itself cheaper removes.
func (h HotPath) Own(total int64) float64 { return share(max(0, h.Self-h.GC-h.Aside), total) }

// EntryCost is part of a cost charged to one entry point.
type EntryCost struct {
	Entry EntryPoint `json:"entry"`
	Value int64      `json:"value"`
	Share float64    `json:"share"` // of the cost it is part of
}

// pathNode is a node of the tree of application call chains.
type pathNode struct {
	fn string
	// value is the cost of the chains through the node; self, gc and side
	// of those ending in it.
	value, self, gc, side int64
	children              map[string]*pathNode
}

func (n *pathNode) child(fn string) *pathNode {
	if n.children == nil {
		n.children = map[string]*pathNode{}
	}
	c := n.children[fn]
	if c == nil {
		c = &pathNode{fn: fn}
		n.children[fn] = c
	}
	return c
}

// addSelf counts a chain ending in the node.
func (n *pathNode) addSelf(v int64, gc, side bool) {
	n.self += v
	if gc {
		n.gc += v
	} else if side {
		n.side += v
	}
}

// heaviest returns the child with the largest value (ties by name).
func (n *pathNode) heaviest() *pathNode {
	var best *pathNode
	for _, c := range n.children {
		if best == nil || c.value > best.value || (c.value == best.value && c.fn < best.fn) {
			best = c
		}
	}
	return best
}

// HotPathOptions are HotPaths' settings; the zero value sets nothing aside.
type HotPathOptions struct {
	Options
	// Aside lists frame prefixes whose cost HotPath.Aside reports
	// separately (a sample counts when any frame matches).
	Aside []string
}

// HotPaths finds where a profile's application cost concentrates. Stacks
// are grouped by entry point; within each, application frames form a tree
// of call chains. A node whose heaviest callee keeps PathFollow of its cost
// passes it down; every other node ends a path (its callees are walked
// too, so a hot loop under a handler whose cost splits is still found).
// Paths of several entry points ending in the same function are merged (a
// helper hot under two handlers is one hot path). Stacks without an
// application frame (the runtime's background GC, the server's own
// connection handling) belong to no path but count in the total. The
// result is sorted by own work (HotPath.Own), then Value, highest first.
func HotPaths(p *profile.Profile, sampleType string, o HotPathOptions) ([]HotPath, int64, error) {
	i, err := SampleIndex(p, sampleType)
	if err != nil {
		return nil, 0, err
	}
	roots := map[EntryPoint]*pathNode{}
	var tot int64
	for s, v := range values(p, i) {
		tot += v
		fs := frames(s)
		e := o.EntryOf(s)
		chainFrom := ""
		if e.Label == "" {
			chainFrom = e.Name
		}
		chain := o.appChain(fs, chainFrom)
		if len(chain) == 0 {
			continue
		}
		gc, side := isGCOrAlloc(fs), anyFrameHasPrefix(fs, o.Aside)
		root := roots[e]
		if root == nil {
			root = &pathNode{}
			roots[e] = root
		}
		n := root
		for _, f := range chain {
			n = n.child(f)
			n.value += v
		}
		n.addSelf(v, gc, side)
	}
	ends := map[string]*HotPath{}
	entries := map[string]map[EntryPoint]int64{}
	heaviestEnd := map[string]int64{} // the largest single chain ending in a function
	var walk func(e EntryPoint, n *pathNode, path []string)
	walk = func(e EntryPoint, n *pathNode, path []string) {
		path = append(path, n.fn)
		if c := n.heaviest(); c != nil && float64(c.value) >= PathFollow*float64(n.value) {
			// The cost passes down: n is not where it is.
			walk(e, c, path)
			for _, o := range n.children {
				if o != c {
					walk(e, o, path)
				}
			}
			return
		}
		if slices.Contains(path[:len(path)-1], n.fn) {
			// Recursion through another function: the cost is already
			// in the outer call's.
			for _, c := range n.children {
				walk(e, c, path)
			}
			return
		}
		hp := ends[n.fn]
		if hp == nil {
			hp = &HotPath{Function: n.fn}
			ends[n.fn] = hp
			entries[n.fn] = map[EntryPoint]int64{}
		}
		if n.value > heaviestEnd[n.fn] {
			hp.Path, heaviestEnd[n.fn] = slices.Clone(path), n.value
		}
		hp.Value += n.value
		hp.Self += n.self
		hp.GC += n.gc
		hp.Aside += n.side
		entries[n.fn][e] += n.value
		for _, c := range n.children {
			walk(e, c, path)
		}
	}
	for e, root := range roots {
		for _, top := range root.children {
			walk(e, top, nil)
		}
	}
	out := make([]HotPath, 0, len(ends))
	for fn, hp := range ends {
		hp.Share = share(hp.Value, tot)
		hp.Entries = EntryCosts(entries[fn], hp.Value)
		out = append(out, *hp)
	}
	sort.SliceStable(out, func(a, b int) bool {
		oa, ob := out[a].Own(tot), out[b].Own(tot)
		if oa != ob {
			return oa > ob
		}
		if out[a].Value != out[b].Value {
			return out[a].Value > out[b].Value
		}
		return out[a].Function < out[b].Function
	})
	return out, tot, nil
}

// isGCOrAlloc reports whether a stack (leaf first) is in the runtime's
// allocator or garbage collector, as GC counts it.
func isGCOrAlloc(fs []string) bool {
	return anyFrameHasPrefix(fs, gcFramePrefixes) || anyFrameHasPrefix(fs, allocFramePrefixes)
}

func anyFrameHasPrefix(fs, prefixes []string) bool {
	if len(prefixes) == 0 {
		return false
	}
	for _, f := range fs {
		if hasAnyPrefix(f, prefixes) {
			return true
		}
	}
	return false
}

// EntryCosts lists costs by entry point, largest first, each with its share
// of total.
func EntryCosts(by map[EntryPoint]int64, total int64) []EntryCost {
	out := make([]EntryCost, 0, len(by))
	for e, v := range by {
		out = append(out, EntryCost{Entry: e, Value: v, Share: share(v, total)})
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Value != out[b].Value {
			return out[a].Value > out[b].Value
		}
		return out[a].Entry.Name < out[b].Entry.Name
	})
	return out
}

// Route matching: an entry point names a function or a label; a load names
// endpoints "METHOD /path" or by a scenario request's name. Both are split
// into words (path segments, camelCase, snake_case), and the endpoint whose
// words the entry's cover best is the one it serves.

// routeStopWords carry no route information: HTTP methods, and the words
// Go handlers, servers and closures are named with.
var routeStopWords = map[string]bool{
	"get": true, "post": true, "put": true, "patch": true, "delete": true, "head": true, "option": true,
	"http": true, "https": true, "api": true, "handler": true, "handle": true, "serve": true, "server": true,
	"func": true, "fm": true, "main": true, "service": true, "svc": true, "route": true, "router": true,
	"controller": true, "endpoint": true, "request": true, "the": true, "internal": true, "cmd": true,
	"and": true, "with": true, "by": true, "of": true, "to": true, "for": true,
}

// RouteWords splits a name into lower-case route words: path segments,
// camelCase and snake_case parts, plural "s" dropped; a query string,
// stop words, single letters and numbers left out.
func RouteWords(name string) []string {
	name, _, _ = strings.Cut(name, "?")
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) == 0 {
			return
		}
		w := strings.ToLower(string(cur))
		cur = cur[:0]
		if len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "is") {
			w = w[:len(w)-1]
		}
		if len(w) < 2 || routeStopWords[w] || strings.Trim(w, "0123456789") == "" {
			return
		}
		for _, x := range words {
			if x == w {
				return
			}
		}
		words = append(words, w)
	}
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			// A lower-to-upper change starts a word (cartQuote), as does
			// the last upper of a run followed by a lower (HTTPServer).
			if unicode.IsUpper(r) && len(cur) > 0 {
				prev := rs[i-1]
				next := rune(0)
				if i+1 < len(rs) {
					next = rs[i+1]
				}
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && unicode.IsLower(next)) {
					flush()
				}
			}
			cur = append(cur, r)
		default:
			flush()
		}
	}
	flush()
	return words
}

// entryWords splits an entry into strong words (the handler's own name,
// or a label's value) and weak ones (its package's last element and its
// receiver type, which may name the resource: orders.(*Handler).List).
func entryWords(e EntryPoint) (strong, weak []string) {
	if e.Label != "" {
		return RouteWords(e.Name), nil
	}
	pkg := PackagePath(e.Name)
	rest := strings.TrimPrefix(e.Name[len(pkg):], ".")
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[i+1:]
	}
	weak = RouteWords(pkg)
	// rest is "F", "(*T).M", "T.M", "(*T).M.func1" ...: the function is
	// the last element that is not a closure suffix, the type the one
	// before it.
	var els []string
	for el := range strings.SplitSeq(rest, ".") {
		if el == "" || (strings.HasPrefix(el, "func") && strings.Trim(el[4:], "0123456789") == "") {
			continue
		}
		els = append(els, el)
	}
	if len(els) == 0 {
		return nil, weak
	}
	strong = RouteWords(els[len(els)-1])
	for _, el := range els[:len(els)-1] {
		weak = append(weak, RouteWords(el)...)
	}
	return strong, weak
}

// RouteScore is how well an entry point's words match an endpoint's, 0..1:
// the endpoint's words found among the entry's, over the endpoint's words
// plus the handler's own words the endpoint lacks (GET /orders/history
// matches orderHistory 1.0 and getOrder 0.5; GET /orders the reverse).
func RouteScore(e EntryPoint, endpoint string) float64 {
	ew := RouteWords(endpoint)
	strong, weak := entryWords(e)
	if len(ew) == 0 || len(strong)+len(weak) == 0 {
		return 0
	}
	have := map[string]bool{}
	for _, w := range strong {
		have[w] = true
	}
	for _, w := range weak {
		have[w] = true
	}
	inEndpoint := map[string]bool{}
	matched := 0
	for _, w := range ew {
		inEndpoint[w] = true
		if have[w] {
			matched++
		}
	}
	extra := 0
	for _, w := range strong {
		if !inEndpoint[w] {
			extra++
		}
	}
	return float64(matched) / float64(len(ew)+extra)
}

// MinRouteScore: an entry point is matched to an endpoint only when at
// least half of their combined route words agree (one of two path
// segments, or the handler's name and one segment).
const MinRouteScore = 0.5

// MatchEndpoint returns the endpoint an entry point serves: the one with
// the highest RouteScore, when it reaches MinRouteScore and no other
// endpoint scores as high; ok is false otherwise (no match, or a tie).
func MatchEndpoint(e EntryPoint, endpoints []string) (string, bool) {
	best, bestScore, tie := "", 0.0, false
	for _, ep := range endpoints {
		sc := RouteScore(e, ep)
		switch {
		case sc > bestScore:
			best, bestScore, tie = ep, sc, false
		case sc == bestScore && sc > 0 && ep != best:
			tie = true
		}
	}
	if bestScore < MinRouteScore || tie {
		return "", false
	}
	return best, true
}

// SiteEntries charges the samples whose innermost application frame is fn
// (the samples Attribute and HeapSites charge to fn: its allocations, its
// CPU with the runtime and libraries it calls) to their entry points,
// largest first, with their total.
func SiteEntries(p *profile.Profile, sampleType, fn string, o Options) ([]EntryCost, int64, error) {
	by, tot, err := o.siteEntries(p, sampleType, fn)
	if err != nil {
		return nil, 0, err
	}
	return EntryCosts(by, tot), tot, nil
}

func (o Options) siteEntries(p *profile.Profile, sampleType, fn string) (map[EntryPoint]int64, int64, error) {
	i, err := SampleIndex(p, sampleType)
	if err != nil {
		return nil, 0, err
	}
	by := map[EntryPoint]int64{}
	var tot int64
	for s, v := range values(p, i) {
		if site, _, app := o.appFrame(frames(s)); app && site == fn {
			tot += v
			by[o.EntryOf(s)] += v
		}
	}
	return by, tot, nil
}

// SiteEntryGrowth is how an allocation site's heap in use grew between two
// heap snapshots, by the entry point of its allocation stacks: the entry
// points whose share grew, their growth over the site's total growth
// among them, largest first.
func SiteEntryGrowth(prev, cur *profile.Profile, fn string, o Options) ([]EntryCost, error) {
	a, _, err := o.siteEntries(prev, "inuse_space", fn)
	if err != nil {
		return nil, err
	}
	b, _, err := o.siteEntries(cur, "inuse_space", fn)
	if err != nil {
		return nil, err
	}
	grew := map[EntryPoint]int64{}
	var tot int64
	for e, v := range b {
		if d := v - a[e]; d > 0 {
			grew[e] = d
			tot += d
		}
	}
	return EntryCosts(grew, tot), nil
}
