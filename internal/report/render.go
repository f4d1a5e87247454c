package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report json: %w", err)
	}
	return nil
}

// Verdict is the one-line answer: capacity and what limited it.
func Verdict(r *Report) string {
	c := r.Capacity
	switch c.LimitedBy {
	case LimitedLoadgen:
		return "No capacity measured: the load generator itself was the limit"
	case LimitedNoneFound:
		return fmt.Sprintf("No bottleneck below the maximum rate: the objective held up to %s req/s", num(c.MaxRPS))
	case LimitedNotReached:
		if c.MaxRPS != nil {
			return fmt.Sprintf("Capacity not reached: the objective held up to %s req/s when the hunt ended", num(c.MaxRPS))
		}
		return "Capacity not reached: the hunt ended before the objective broke"
	case LimitedUnexplained:
		return fmt.Sprintf("Capacity %s req/s; the objective broke at %s req/s, cause not identified with confidence", num(c.MaxRPS), num(c.FirstFailingRPS))
	}
	return fmt.Sprintf("Capacity %s req/s, limited by %s", num(c.MaxRPS), c.LimitedBy)
}

func num(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmtNum(*p)
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// WriteText renders the report for a terminal: the verdict first.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", Verdict(r))
	if t := targetText(r.Target); t != "" {
		fmt.Fprintf(&b, "target:    %s\n", t)
	}
	fmt.Fprintf(&b, "objective: p99 <= %gms, errors <= %g%%   status: %s\n", r.SLO.P99MS, r.SLO.ErrorRate*100, r.Status)
	c := r.Capacity
	fmt.Fprintf(&b, "capacity:  max %s req/s, first failing %s req/s, knee %s req/s", num(c.MaxRPS), num(c.FirstFailingRPS), num(c.KneeRPS))
	if c.USL != nil {
		if c.USL.Reliable {
			fmt.Fprintf(&b, ", USL σ=%.3g κ=%.3g λ=%.3g (r²=%.2f)", c.USL.Sigma, c.USL.Kappa, c.USL.Lambda, c.USL.R2)
		} else if c.USL.Note != "" {
			fmt.Fprintf(&b, ", USL not reliable: %s", c.USL.Note)
		}
	}
	b.WriteString("\n")
	if len(r.Findings) > 0 {
		b.WriteString("\nFindings\n")
		for i, f := range r.Findings {
			fmt.Fprintf(&b, "%d. [%s] %s — %s\n", i+1, f.Severity, f.Kind, f.Title)
			if l := locusText(f.Locus); l != "" {
				fmt.Fprintf(&b, "   where: %s\n", l)
			}
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "   evidence (%s): %s = %s %s\n", e.Source, e.What, fmtNum(e.Value), e.Unit)
			}
			if f.Recommendation != "" {
				fmt.Fprintf(&b, "   fix: %s\n", f.Recommendation)
			}
			if g := f.ExpectedGain; g != nil {
				fmt.Fprintf(&b, "   expected: %s %s → %s (%s)\n", g.Metric, fmtNum(g.From), fmtNum(g.To), g.Method)
			}
		}
	}
	if len(r.Steps) > 0 {
		b.WriteString("\nSteps\n")
		fmt.Fprintf(&b, "  %10s %10s %9s %9s %9s %8s  %s\n", "offered/s", "achieved/s", "p50 ms", "p99 ms", "max ms", "errors", "objective")
		for _, s := range r.Steps {
			ok := "met"
			if !s.MetSLO {
				ok = "MISSED"
			}
			fmt.Fprintf(&b, "  %10s %10s %9s %9s %9s %7.2f%%  %s\n", fmtNum(s.OfferedRPS), fmtNum(s.AchievedRPS),
				fmtNum(s.Latency.P50), fmtNum(s.Latency.P99), fmtNum(s.Latency.Max), s.ErrorRate*100, ok)
		}
	}
	if len(r.Endpoints) > 0 {
		b.WriteString("\nEndpoints\n")
		for _, e := range r.Endpoints {
			fmt.Fprintf(&b, "  %-40s %9d requests  p50 %s ms  p99 %s ms  errors %.2f%%\n", e.Name, e.Requests, fmtNum(e.Latency.P50), fmtNum(e.Latency.P99), e.ErrorRate*100)
		}
	}
	var missing []Coverage
	for _, c := range r.Coverage {
		if c.Status != "ok" {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		b.WriteString("\nEvidence not collected\n")
		for _, c := range missing {
			fmt.Fprintf(&b, "  %-8s %s: %s\n", c.Source, c.Status, c.Detail)
		}
	}
	if len(r.RuledOut) > 0 {
		b.WriteString("\nRuled out\n")
		for _, ro := range r.RuledOut {
			fmt.Fprintf(&b, "  %-26s %s\n", ro.Kind, ro.Why)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, termSafe(b.String()))
	return err
}

// targetText names what was hunted: the scenario file, else the URLs.
func targetText(t Target) string {
	s := strings.Join(t.URLs, " ")
	if t.Scenario != "" {
		s = t.Scenario + ": " + s
	}
	if t.PID > 0 {
		s += fmt.Sprintf(" (pid %d)", t.PID)
	}
	return strings.TrimSpace(s)
}

// termSafe replaces control characters other than newlines, so that text
// from the target (an endpoint name carrying an escape sequence) cannot
// drive the terminal.
func termSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
			return '?'
		}
		return r
	}, s)
}

func locusText(l Locus) string {
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
	if len(l.Columns) > 0 {
		add("columns", strings.Join(l.Columns, ", "))
	}
	add("downstream", l.Downstream)
	add("process", l.Process)
	if l.Limit > 0 {
		add("limit", fmt.Sprint(l.Limit))
	}
	add("resource", l.Resource)
	return strings.Join(parts, "; ")
}

// WriteMarkdown renders the report for a pull-request comment.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## chokepoint: %s\n\n", mdEscape(Verdict(r)))
	if r.Status != "" && r.Status != "complete" {
		fmt.Fprintf(&b, "> **%s run**: it ended early; what it measured is below.\n\n", mdEscape(r.Status))
	}
	if t := targetText(r.Target); t != "" {
		fmt.Fprintf(&b, "Target: %s\n\n", mdEscape(t))
	}
	c := r.Capacity
	fmt.Fprintf(&b, "| capacity | first failing | knee | objective |\n|---|---|---|---|\n| %s req/s | %s req/s | %s req/s | p99 ≤ %g ms, errors ≤ %g%% |\n\n",
		num(c.MaxRPS), num(c.FirstFailingRPS), num(c.KneeRPS), r.SLO.P99MS, r.SLO.ErrorRate*100)
	if len(r.Findings) > 0 {
		b.WriteString("### Findings\n\n")
		for i, f := range r.Findings {
			fmt.Fprintf(&b, "%d. **%s** `%s` — %s\n", i+1, f.Severity, f.Kind, mdEscape(f.Title))
			if l := locusText(f.Locus); l != "" {
				fmt.Fprintf(&b, "   - where: %s\n", mdEscape(l))
			}
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "   - %s: %s = %s %s\n", e.Source, mdEscape(e.What), fmtNum(e.Value), e.Unit)
			}
			if f.Recommendation != "" {
				fmt.Fprintf(&b, "   - fix: %s\n", mdEscape(f.Recommendation))
			}
			if g := f.ExpectedGain; g != nil {
				fmt.Fprintf(&b, "   - expected: %s %s → %s (%s)\n", g.Metric, fmtNum(g.From), fmtNum(g.To), mdEscape(g.Method))
			}
		}
		b.WriteString("\n")
	}
	if len(r.Steps) > 0 {
		b.WriteString("### Steps\n\n| offered/s | achieved/s | p50 ms | p99 ms | errors | objective |\n|---:|---:|---:|---:|---:|---|\n")
		for _, s := range r.Steps {
			ok := "met"
			if !s.MetSLO {
				ok = "**missed**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f%% | %s |\n", fmtNum(s.OfferedRPS), fmtNum(s.AchievedRPS), fmtNum(s.Latency.P50), fmtNum(s.Latency.P99), s.ErrorRate*100, ok)
		}
		b.WriteString("\n")
	}
	if len(r.Endpoints) > 0 {
		b.WriteString("### Endpoints\n\n| endpoint | requests | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|\n")
		for _, e := range r.Endpoints {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %.2f%% |\n", mdEscape(e.Name), e.Requests, fmtNum(e.Latency.P50), fmtNum(e.Latency.P99), e.ErrorRate*100)
		}
		b.WriteString("\n")
	}
	var missing []string
	for _, c := range r.Coverage {
		if c.Status != "ok" {
			missing = append(missing, fmt.Sprintf("- %s (%s): %s", mdEscape(c.Source), mdEscape(c.Status), mdEscape(c.Detail)))
		}
	}
	if len(missing) > 0 {
		b.WriteString("### Evidence not collected\n\n" + strings.Join(missing, "\n") + "\n\n")
	}
	if len(r.RuledOut) > 0 {
		b.WriteString("<details><summary>Ruled out</summary>\n\n")
		for _, ro := range r.RuledOut {
			fmt.Fprintf(&b, "- %s: %s\n", mdEscape(ro.Kind), mdEscape(ro.Why))
		}
		b.WriteString("\n</details>\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdReplacer escapes what GitHub-flavoured markdown would read as markup:
// emphasis, code, links, tables, HTML (as entities) and line breaks.
var mdReplacer = strings.NewReplacer("\\", "\\\\", "`", "\\`", "*", "\\*", "_", "\\_", "~", "\\~", "<", "&lt;", ">", "&gt;", "&", "&amp;",
	"|", "\\|", "[", "\\[", "]", "\\]", "!", "\\!", "#", "\\#", "\n", " ", "\r", " ")

// mdEscape keeps target-supplied text from becoming markup.
func mdEscape(s string) string {
	return mdReplacer.Replace(termSafe(s))
}
