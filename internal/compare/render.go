package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
)

// WriteJSON writes the result as chokepoint.compare/v1.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write compare json: %w", err)
	}
	return nil
}

// WriteText renders the result for a terminal: the verdict first.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", clean(r.Summary))
	fmt.Fprintf(&b, "  A: %s\n  B: %s\n", runLine(r.A), runLine(r.B))
	c := r.Capacity
	if c.ARPS != nil || c.BRPS != nil || c.LimitedByA != "" {
		fmt.Fprintf(&b, "\nCapacity: %s  [%s]\n", capacityText(c), c.Change)
		if c.LimitedByA != "" || c.LimitedByB != "" {
			fmt.Fprintf(&b, "  limited by: A %s, B %s\n", orDash(c.LimitedByA), orDash(c.LimitedByB))
		}
		if c.Uncertainty != "" {
			fmt.Fprintf(&b, "  uncertainty: %s\n", clean(c.Uncertainty))
		}
	}
	if len(r.Endpoints) > 0 {
		fmt.Fprintf(&b, "\nEndpoints (median of per-second percentiles at matching rates; p from Mann-Whitney U on p99)\n")
		fmt.Fprintf(&b, "  %-32s %9s %9s %9s %9s %8s %9s  %s\n", "endpoint", "p50 A", "p50 B", "p99 A", "p99 B", "p99 B/A", "p", "change")
		for _, e := range r.Endpoints {
			fmt.Fprintf(&b, "  %-32s %9s %9s %9s %9s %8s %9s  %s\n", clean(e.Name),
				msOf(e.A, false), msOf(e.B, false), msOf(e.A, true), msOf(e.B, true), ratioText(e.P99Ratio), pText(e.PValue), e.Change)
		}
	}
	f := r.Findings
	if len(f.Resolved)+len(f.New)+len(f.Remaining) > 0 {
		b.WriteString("\nFindings\n")
		for _, g := range []struct {
			name string
			refs []FindingRef
		}{{"resolved", f.Resolved}, {"new", f.New}, {"remaining", f.Remaining}} {
			for _, ref := range g.refs {
				fmt.Fprintf(&b, "  %-9s %s  %s\n", g.name, ref.Kind, clean(locusText(ref)))
			}
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\nWarnings\n")
		for _, wn := range r.Warnings {
			mark := " "
			if wn.Decisive {
				mark = "!"
			}
			fmt.Fprintf(&b, "  %s %s: %s\n", mark, wn.Code, clean(wn.Message))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMarkdown renders the result for a pull-request comment.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## chokepoint compare: %s\n\n", md(r.Summary))
	fmt.Fprintf(&b, "- **A** (before): %s\n- **B** (after): %s\n\n", md(runLine(r.A)), md(runLine(r.B)))
	c := r.Capacity
	if c.ARPS != nil || c.BRPS != nil {
		fmt.Fprintf(&b, "| capacity A | capacity B | B / A | range | change |\n|---:|---:|---:|---|---|\n| %s | %s | %s | %s | %s |\n\n",
			rps(c.ARPS), rps(c.BRPS), ratioText(c.Ratio), rangeText(c), c.Change)
	}
	if len(r.Endpoints) > 0 {
		b.WriteString("| endpoint | p50 A | p50 B | p99 A | p99 B | p99 B/A | p | change |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, e := range r.Endpoints {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", md(e.Name),
				msOf(e.A, false), msOf(e.B, false), msOf(e.A, true), msOf(e.B, true), ratioText(e.P99Ratio), pText(e.PValue), e.Change)
		}
		b.WriteString("\nLatencies in ms: medians of per-second percentiles at matching rates; p from a two-sided Mann-Whitney U test on the per-second p99.\n\n")
	}
	f := r.Findings
	if len(f.Resolved)+len(f.New)+len(f.Remaining) > 0 {
		b.WriteString("### Findings\n\n")
		for _, g := range []struct {
			name string
			refs []FindingRef
		}{{"resolved", f.Resolved}, {"new", f.New}, {"remaining", f.Remaining}} {
			for _, ref := range g.refs {
				fmt.Fprintf(&b, "- %s: `%s` %s\n", g.name, ref.Kind, md(locusText(ref)))
			}
		}
		b.WriteString("\n")
	}
	if len(r.Warnings) > 0 {
		b.WriteString("### Warnings\n\n")
		for _, wn := range r.Warnings {
			d := ""
			if wn.Decisive {
				d = " **(decisive)**"
			}
			fmt.Fprintf(&b, "- `%s`%s: %s\n", wn.Code, d, md(wn.Message))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func runLine(ri RunInfo) string {
	parts := []string{ri.Dir, ri.Command, ri.Status}
	if ri.Version != "" {
		parts = append(parts, "chokepoint "+ri.Version)
	}
	if ri.StartMS > 0 {
		parts = append(parts, time.UnixMilli(ri.StartMS).UTC().Format("2006-01-02 15:04 UTC"))
	}
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

func locusText(ref FindingRef) string {
	l := ref.Locus
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("endpoint", l.Endpoint)
	add("function", l.Function)
	add("query", l.Query)
	add("table", l.Table)
	add("columns", strings.Join(l.Columns, ", "))
	add("downstream", l.Downstream)
	add("process", l.Process)
	add("resource", l.Resource)
	s := strings.Join(parts, "; ")
	if ref.Title != "" {
		if s != "" {
			s += " — "
		}
		s += ref.Title
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func rps(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.4g req/s", *p)
}

func rangeText(c CapacityChange) string {
	switch {
	case c.RatioLow != nil && c.RatioHigh != nil:
		return fmt.Sprintf("×%.2f – ×%.2f", *c.RatioLow, *c.RatioHigh)
	case c.RatioLow != nil:
		return fmt.Sprintf("≥ ×%.2f", *c.RatioLow)
	case c.RatioHigh != nil:
		return fmt.Sprintf("≤ ×%.2f", *c.RatioHigh)
	}
	return "—"
}

func msOf(s *EndpointStats, p99 bool) string {
	if s == nil {
		return "—"
	}
	if p99 {
		return fmt.Sprintf("%.4g", s.P99MS)
	}
	return fmt.Sprintf("%.4g", s.P50MS)
}

func ratioText(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("×%.2f", *p)
}

func pText(p *float64) string {
	if p == nil {
		return "—"
	}
	if *p < 0.001 {
		return "<0.001"
	}
	return fmt.Sprintf("%.3g", *p)
}

// clean keeps control characters from a run directory (terminal escapes in
// an endpoint name) out of a terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// md keeps text from a run (URLs, endpoint names, queries) from becoming
// markup in a pull-request comment.
func md(s string) string {
	return strings.NewReplacer("\\", "\\\\", "`", "\\`", "*", "\\*", "_", "\\_", "<", "&lt;", ">", "&gt;", "|", "\\|",
		"[", "\\[", "]", "\\]", "&", "&amp;", "\n", " ", "\r", " ").Replace(clean(s))
}
