// Package pgplan reads PostgreSQL EXPLAIN (FORMAT JSON) output into plan
// nodes and finds the sequential scans an index could serve, with the
// columns such an index would need.
//
// Plans come from the target's server and are treated as untrusted input:
// the size and nesting depth are bounded and nothing in them can make the
// parser panic or loop.
package pgplan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Bounds on untrusted input. A real plan of a large query is tens of
// kilobytes and a few dozen levels deep; these leave ample room.
const (
	MaxInput = 16 << 20 // bytes of EXPLAIN JSON
	MaxDepth = 500      // nesting of plan nodes
)

// ErrTooLarge and ErrTooDeep report input past the bounds above.
var (
	ErrTooLarge = errors.New("explain output too large")
	ErrTooDeep  = errors.New("plan nested too deeply")
)

// Explain is one statement's EXPLAIN (FORMAT JSON) result.
type Explain struct {
	Plan          Node    `json:"Plan"`
	PlanningTime  float64 `json:"Planning Time,omitempty"`  // ms; with ANALYZE or SUMMARY
	ExecutionTime float64 `json:"Execution Time,omitempty"` // ms; with ANALYZE
}

// Node is one plan node. Only the fields chokepoint reads are kept; ANALYZE
// fields are pointers so that "not measured" differs from zero.
type Node struct {
	NodeType           string   `json:"Node Type"`
	ParentRelationship string   `json:"Parent Relationship,omitempty"`
	ParallelAware      bool     `json:"Parallel Aware,omitempty"`
	RelationName       string   `json:"Relation Name,omitempty"`
	Schema             string   `json:"Schema,omitempty"` // with VERBOSE
	Alias              string   `json:"Alias,omitempty"`
	IndexName          string   `json:"Index Name,omitempty"`
	IndexCond          string   `json:"Index Cond,omitempty"`
	Filter             string   `json:"Filter,omitempty"`
	SortKey            []string `json:"Sort Key,omitempty"`
	StartupCost        float64  `json:"Startup Cost"`
	TotalCost          float64  `json:"Total Cost"`
	PlanRows           float64  `json:"Plan Rows"`
	PlanWidth          float64  `json:"Plan Width"`

	ActualRows          *float64 `json:"Actual Rows,omitempty"`
	ActualLoops         *float64 `json:"Actual Loops,omitempty"`
	ActualTotalTime     *float64 `json:"Actual Total Time,omitempty"`
	RowsRemovedByFilter *float64 `json:"Rows Removed by Filter,omitempty"`

	Plans []Node `json:"Plans,omitempty"`
}

// Parse decodes EXPLAIN (FORMAT JSON) output: the array PostgreSQL prints
// (its first element is used) or a single object.
func Parse(data []byte) (*Explain, error) {
	if len(data) > MaxInput {
		return nil, fmt.Errorf("parse plan: %w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxInput)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("parse plan: empty input")
	}
	// Check nesting before decoding: encoding/json's own limit is far
	// higher than any real plan.
	if err := checkDepth(data); err != nil {
		return nil, fmt.Errorf("parse plan: %w", err)
	}
	var e Explain
	if data[0] == '[' {
		var all []Explain
		if err := json.Unmarshal(data, &all); err != nil {
			return nil, fmt.Errorf("parse plan: %w", err)
		}
		if len(all) == 0 {
			return nil, errors.New("parse plan: no statement in output")
		}
		e = all[0]
	} else if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("parse plan: %w", err)
	}
	if e.Plan.NodeType == "" {
		return nil, errors.New("parse plan: no Plan node")
	}
	return &e, nil
}

// checkDepth rejects JSON nested deeper than a plan of MaxDepth nodes can be
// (each node level is an object inside the "Plans" array: two levels; the
// outer array, the statement object and a node's Sort Key array add three).
func checkDepth(data []byte) error {
	const limit = 2*MaxDepth + 2
	depth := 0
	inString, escaped := false, false
	for _, b := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
			if depth > limit {
				return ErrTooDeep
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return nil
}

// Walk calls fn for n and every node below it, parents first, with the
// chain of ancestors (nearest last). It stops descending where fn returns
// false.
func (n *Node) Walk(fn func(n *Node, ancestors []*Node) bool) {
	var walk func(n *Node, anc []*Node)
	walk = func(n *Node, anc []*Node) {
		if !fn(n, anc) {
			return
		}
		anc = append(anc, n)
		for i := range n.Plans {
			walk(&n.Plans[i], anc)
		}
	}
	walk(n, nil)
}

// Nodes returns every node of the plan of type t ("Seq Scan", "Index Scan"...).
func (e *Explain) Nodes(t string) []*Node {
	var out []*Node
	e.Plan.Walk(func(n *Node, _ []*Node) bool {
		if n.NodeType == t {
			out = append(out, n)
		}
		return true
	})
	return out
}

// SeqScan is a sequential scan found in a plan, with the columns an index
// would need to serve it.
type SeqScan struct {
	Relation string  `json:"relation"`
	Schema   string  `json:"schema,omitempty"` // only when EXPLAIN ran with VERBOSE
	Alias    string  `json:"alias,omitempty"`
	Filter   string  `json:"filter,omitempty"`
	PlanRows float64 `json:"plan_rows"` // rows the planner expects out of the filter
	// TotalCost is the scan node's own total cost.
	TotalCost float64 `json:"total_cost"`
	// RowsRemovedByFilter is measured (ANALYZE only), else nil.
	RowsRemovedByFilter *float64 `json:"rows_removed_by_filter,omitempty"`

	Equality []string `json:"equality,omitempty"` // col = value, col IS NULL, col = ANY(...)
	Range    []string `json:"range,omitempty"`    // col < value, >, <=, >=, LIKE
	Sort     []string `json:"sort,omitempty"`     // keys of the nearest Sort above the scan
	// Columns is what an index should cover, in index order: equality
	// columns first, then range, then sort keys, each once.
	Columns []string `json:"columns,omitempty"`
}

// SeqScans returns the plan's sequential scans, depth first.
func SeqScans(e *Explain) []SeqScan {
	if e == nil {
		return nil
	}
	var out []SeqScan
	e.Plan.Walk(func(n *Node, anc []*Node) bool {
		if n.NodeType != "Seq Scan" || n.RelationName == "" {
			return true
		}
		s := SeqScan{
			Relation:            n.RelationName,
			Schema:              n.Schema,
			Alias:               n.Alias,
			Filter:              n.Filter,
			PlanRows:            n.PlanRows,
			TotalCost:           n.TotalCost,
			RowsRemovedByFilter: n.RowsRemovedByFilter,
		}
		own := ownerOf(n)
		s.Equality, s.Range = FilterColumns(n.Filter, own)
		for i := len(anc) - 1; i >= 0; i-- {
			if t := anc[i].NodeType; t == "Sort" || t == "Incremental Sort" {
				s.Sort = sortColumns(anc[i].SortKey, own)
				break
			}
		}
		s.Columns = union(s.Equality, s.Range, s.Sort)
		out = append(out, s)
		return true
	})
	return out
}

// ownerOf returns the names a column of this scan may be qualified with.
func ownerOf(n *Node) func(string) bool {
	return func(q string) bool {
		return q == "" || q == n.Alias || q == n.RelationName
	}
}

func union(lists ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range lists {
		for _, c := range l {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}
