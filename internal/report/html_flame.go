package report

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// Limits of the flame graph, so that any profile gives a small, legible file.
const (
	flameW = 1160.0 // SVG user units
	// flameRowH is one stack frame's height; 16 units fit an 11px label.
	flameRowH = 16.0
	// flameMaxDepth: deeper frames are folded into their ancestor; Go
	// server stacks are rarely deeper than 40 frames above main.
	flameMaxDepth = 64
	// flameMinFrac: frames narrower than 0.1% of the total (about one
	// pixel at flameW) are not drawn.
	flameMinFrac = 0.001
	// flameMaxRects bounds the rectangles drawn (the file stays < ~1 MB).
	flameMaxRects = 4000
	// flameCharW approximates the width of one character of an 11px
	// monospace label, to truncate labels that do not fit.
	flameCharW = 6.6
	// flameTopN is how many functions the "top by self time" table lists.
	flameTopN = 12
)

// flameGraph is a rendered icicle graph: callers on top, callees below,
// widths proportional to sampled value.
type flameGraph struct {
	W, H   string
	Rects  []flameRect
	Unit   string // what the values count, e.g. "cpu nanoseconds"
	Total  string // the total, formatted
	Top    []flameTop
	Hidden int // frames too narrow to draw, or beyond the limits
}

type flameRect struct {
	X, Y, W, H string
	TX, TY     string
	Fill       string
	Label      string // truncated to fit, may be empty
	Title      string // full function name and share
}

type flameTop struct {
	Function string
	Self     string
	SelfPct  string
	Cum      string
	CumPct   string
}

type flameNode struct {
	name     string
	value    int64
	self     int64
	children map[string]*flameNode
}

func (n *flameNode) child(name string) *flameNode {
	if n.children == nil {
		n.children = map[string]*flameNode{}
	}
	c, ok := n.children[name]
	if !ok {
		c = &flameNode{name: name}
		n.children[name] = c
	}
	return c
}

// sampleIndex picks the value to weigh samples by: cpu time when the
// profile has it, else the profile's default, else the last type.
func sampleIndex(p *profile.Profile) int {
	for i, st := range p.SampleType {
		if st != nil && st.Type == "cpu" {
			return i
		}
	}
	for i, st := range p.SampleType {
		if st != nil && p.DefaultSampleType != "" && st.Type == p.DefaultSampleType {
			return i
		}
	}
	return len(p.SampleType) - 1
}

// buildFlame turns a profile into an icicle graph; nil when it has no samples.
func buildFlame(p *profile.Profile) *flameGraph {
	if p == nil || len(p.SampleType) == 0 {
		return nil
	}
	idx := sampleIndex(p)
	root := &flameNode{name: "all"}
	selfBy := map[string]int64{}
	cumBy := map[string]int64{}
	var stack []string
	for _, s := range p.Sample {
		if s == nil || idx >= len(s.Value) || s.Value[idx] <= 0 {
			continue
		}
		v := s.Value[idx]
		stack = stack[:0]
		for i := len(s.Location) - 1; i >= 0; i-- { // root first
			loc := s.Location[i]
			if loc == nil {
				continue
			}
			if len(loc.Line) == 0 {
				stack = append(stack, fmt.Sprintf("0x%x", loc.Address))
				continue
			}
			for j := len(loc.Line) - 1; j >= 0; j-- { // inlined callers first
				name := "?"
				if f := loc.Line[j].Function; f != nil && f.Name != "" {
					name = f.Name
				}
				stack = append(stack, name)
			}
		}
		root.value += v
		n := root
		seen := map[string]bool{}
		for d, name := range stack {
			if d >= flameMaxDepth {
				break
			}
			n = n.child(name)
			n.value += v
			if !seen[name] { // recursion counts once towards cumulative time
				seen[name] = true
				cumBy[name] += v
			}
		}
		n.self += v
		if len(stack) > 0 {
			selfBy[stack[len(stack)-1]] += v
		}
	}
	if root.value <= 0 {
		return nil
	}
	unit := ""
	if st := p.SampleType[idx]; st != nil {
		unit = strings.TrimSpace(st.Type + " " + st.Unit)
	}
	fg := &flameGraph{Unit: unit, Total: flameValue(root.value, unit)}
	depth := 0
	var walk func(n *flameNode, x float64, d int)
	walk = func(n *flameNode, x float64, d int) {
		w := float64(n.value) / float64(root.value) * flameW
		if float64(n.value)/float64(root.value) < flameMinFrac || len(fg.Rects) >= flameMaxRects {
			fg.Hidden++
			return
		}
		depth = max(depth, d+1)
		y := float64(d) * flameRowH
		label := n.name
		if fit := int((w - 6) / flameCharW); fit < len([]rune(label)) {
			label = shortFrame(label, fit)
		}
		pct := 100 * float64(n.value) / float64(root.value)
		fg.Rects = append(fg.Rects, flameRect{
			X: f1(x), Y: f1(y), W: f1(max(w-0.5, 0.5)), H: f1(flameRowH - 1),
			TX: f1(x + 3), TY: f1(y + flameRowH - 4),
			Fill:  frameColour(n.name),
			Label: label,
			Title: fmt.Sprintf("%s — %s (%.1f%%)", n.name, flameValue(n.value, unit), pct),
		})
		kids := make([]*flameNode, 0, len(n.children))
		for _, c := range n.children {
			kids = append(kids, c)
		}
		slices.SortFunc(kids, func(a, b *flameNode) int { return strings.Compare(a.name, b.name) })
		cx := x
		for _, c := range kids {
			walk(c, cx, d+1)
			cx += float64(c.value) / float64(root.value) * flameW
		}
	}
	walk(root, 0, 0)
	fg.W, fg.H = f1(flameW), f1(float64(depth)*flameRowH)

	type fn struct {
		name      string
		self, cum int64
	}
	var fns []fn
	for name, self := range selfBy {
		fns = append(fns, fn{name, self, cumBy[name]})
	}
	slices.SortFunc(fns, func(a, b fn) int {
		if c := cmp.Compare(b.self, a.self); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for i, f := range fns {
		if i == flameTopN {
			break
		}
		fg.Top = append(fg.Top, flameTop{
			Function: f.name,
			Self:     flameValue(f.self, unit), SelfPct: fmt.Sprintf("%.1f%%", 100*float64(f.self)/float64(root.value)),
			Cum: flameValue(f.cum, unit), CumPct: fmt.Sprintf("%.1f%%", 100*float64(f.cum)/float64(root.value)),
		})
	}
	return fg
}

// shortFrame shortens a function name to at most n runes: the package path
// goes first, then the end is cut with an ellipsis.
func shortFrame(name string, n int) string {
	if n < 3 {
		return ""
	}
	if i := strings.LastIndex(name, "/"); i >= 0 && len([]rune(name[i+1:])) <= n {
		return name[i+1:]
	} else if i >= 0 {
		name = name[i+1:]
	}
	r := []rune(name)
	if len(r) <= n {
		return name
	}
	return string(r[:n-1]) + "…"
}

// frameColour gives each package a stable warm colour, so that one
// package's frames read as one band.
func frameColour(name string) string {
	pkg := name
	if i := strings.LastIndex(pkg, "/"); i >= 0 {
		pkg = pkg[i+1:]
	}
	if i := strings.Index(pkg, "."); i >= 0 {
		pkg = pkg[:i]
	}
	h := fnv.New32a()
	h.Write([]byte(pkg))
	v := h.Sum32()
	r := 205 + v%50
	g := 90 + (v>>8)%110
	b := 40 + (v>>16)%50
	return fmt.Sprintf("#%02x%02x%02x", r, g, b)
}

// flameValue formats a sampled value in its unit.
func flameValue(v int64, unit string) string {
	switch {
	case strings.HasSuffix(unit, "nanoseconds"):
		return fmt.Sprintf("%s ms", fmtNum(float64(v)/1e6))
	case strings.HasSuffix(unit, "bytes"):
		return fmt.Sprintf("%s MB", fmtNum(float64(v)/1e6))
	}
	return fmt.Sprintf("%d %s", v, unit)
}
