// Package trace analyses the spans of a run: it assembles them into
// traces, finds each request's critical path and the share of it spent in
// each downstream resource, and detects repeated (n+1, redundant) and
// serial call patterns, aggregated per endpoint. It is pure functions over
// evidence.Span and tolerates hostile data (missing parents, orphans, clock
// skew, cycles).
package trace

import (
	"cmp"
	"slices"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// Node is one span placed in its trace.
type Node struct {
	Span     evidence.Span
	Parent   *Node
	Children []*Node // ordered by start time
	// Adopted says the span's parent was missing (not exported, sampled
	// out, or part of a cycle) and it was attached to the trace's root.
	Adopted bool
}

// Trace is the spans of one trace id, as a tree.
type Trace struct {
	ID   string
	Root *Node
	// Spans counts the nodes in the tree; Unattached the spans of the
	// trace that could not be placed (orphans outside the root's time and
	// duplicate span ids).
	Spans      int
	Unattached int
}

// Assemble groups spans into traces and builds each tree. The root is the
// span without a parent id (preferring a server span, then the earliest,
// then the longest); spans whose parent is missing are attached to the
// root when they start within it, and parent cycles are cut. Traces are
// returned in root start order.
func Assemble(spans []evidence.Span) []*Trace {
	byTrace := map[string][]*Node{}
	var order []string
	for i := range spans {
		id := spans[i].TraceID
		if id == "" || spans[i].SpanID == "" {
			continue
		}
		if _, ok := byTrace[id]; !ok {
			order = append(order, id)
		}
		byTrace[id] = append(byTrace[id], &Node{Span: spans[i]})
	}
	out := make([]*Trace, 0, len(order))
	for _, id := range order {
		if t := build(id, byTrace[id]); t != nil {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(a, b *Trace) int {
		return cmp.Or(cmp.Compare(a.Root.Span.StartNS, b.Root.Span.StartNS), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func build(id string, nodes []*Node) *Trace {
	t := &Trace{ID: id}
	byID := make(map[string]*Node, len(nodes))
	uniq := nodes[:0]
	for _, n := range nodes {
		if _, dup := byID[n.Span.SpanID]; dup {
			t.Unattached++
			continue
		}
		byID[n.Span.SpanID] = n
		uniq = append(uniq, n)
	}
	nodes = uniq
	for _, n := range nodes {
		if p, ok := byID[n.Span.ParentID]; ok && p != n {
			n.Parent = p
		}
	}
	// Cut cycles: walk up from every node; meeting a node of the current
	// walk again means a cycle, broken at that node.
	state := make(map[*Node]uint8, len(nodes)) // 0 new, 1 on the current walk, 2 done
	var path []*Node
	for _, n := range nodes {
		path = path[:0]
		cur := n
		for cur != nil && state[cur] == 0 {
			state[cur] = 1
			path = append(path, cur)
			cur = cur.Parent
		}
		if cur != nil && state[cur] == 1 {
			cur.Parent = nil
			cur.Adopted = true
		}
		for _, p := range path {
			state[p] = 2
		}
	}

	var roots []*Node
	for _, n := range nodes {
		if n.Parent == nil {
			roots = append(roots, n)
		}
	}
	if len(roots) == 0 {
		return nil // unreachable: cutting cycles leaves a root
	}
	root := slices.MinFunc(roots, func(a, b *Node) int {
		return cmp.Or(
			boolRank(a.Span.ParentID == "" && !a.Adopted, b.Span.ParentID == "" && !b.Adopted),
			boolRank(a.Span.Kind == evidence.SpanKindServer, b.Span.Kind == evidence.SpanKindServer),
			cmp.Compare(a.Span.StartNS, b.Span.StartNS),
			-cmp.Compare(a.Span.DurationNS(), b.Span.DurationNS()),
			cmp.Compare(a.Span.SpanID, b.Span.SpanID),
		)
	})
	root.Adopted = false
	t.Root = root
	for _, n := range roots {
		if n != root && n.Span.StartNS >= root.Span.StartNS && n.Span.StartNS <= root.Span.EndNS {
			n.Parent = root
			n.Adopted = true
		}
	}
	for _, n := range nodes {
		if n.Parent != nil {
			n.Parent.Children = append(n.Parent.Children, n)
		}
	}
	Walk(root, func(n *Node) {
		t.Spans++
		slices.SortFunc(n.Children, func(a, b *Node) int {
			return cmp.Or(cmp.Compare(a.Span.StartNS, b.Span.StartNS), cmp.Compare(a.Span.SpanID, b.Span.SpanID))
		})
	})
	t.Unattached += len(nodes) - t.Spans
	return t
}

// boolRank orders true before false.
func boolRank(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// Walk calls fn for every node of the tree rooted at n, parents first. It
// is iterative, so a hostile deep chain cannot exhaust the stack.
func Walk(n *Node, fn func(*Node)) {
	stack := []*Node{n}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		fn(cur)
		for i := len(cur.Children) - 1; i >= 0; i-- {
			stack = append(stack, cur.Children[i])
		}
	}
}
