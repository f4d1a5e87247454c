package report

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/google/pprof/profile"
)

//go:embed assets/report.html.tmpl assets/report.css
var assets embed.FS

// HTMLOptions carries what report.html shows beyond report.json. The zero
// value is valid: the page then has no timeline and no flame graph.
type HTMLOptions struct {
	// Timeline is the run's timeline.jsonl, one record per window; the page
	// charts the windows around the knee.
	Timeline []evidence.WindowRecord
	// CPUProfile is a CPU profile of the saturated step, drawn as a flame
	// graph; nil for none.
	CPUProfile *profile.Profile
	// ProfileLabel says what CPUProfile covers ("step 7 at 900 req/s").
	ProfileLabel string
	// Notes are problems met while reading these inputs; the page lists
	// them so that a missing chart is explained.
	Notes []string
}

// htmlPage is everything the template shows, computed and formatted in Go.
type htmlPage struct {
	CSP            string
	CSS            template.CSS
	Title          string
	Verdict        string
	Status         string
	Partial        bool
	Capacity       string
	Bracket        []string
	LimitedBy      string
	PrincipalLabel string
	Principal      *htmlFinding
	URLs           []string
	Scenario       string
	PID            int
	Objective      string
	Period         string
	Charts         []*svgChart
	Flame          *flameGraph
	FlameLabel     string
	Findings       []htmlFinding
	Endpoints      []htmlEndpoint
	Steps          []htmlStep
	Coverage       []Coverage
	Missing        int
	RuledOut       []RuledOut
	Notes          []string
	InputNotes     []string
	Schema         string
}

type htmlFinding struct {
	N              int
	ID             string
	Kind           string
	Title          string
	Severity       string
	Impact         string
	Confidence     string
	Locus          []htmlKV
	Evidence       []htmlEvidence
	Recommendation string
	Gain           string
}

type htmlKV struct{ K, V string }

type htmlEvidence struct{ Source, What, Value, Unit string }

type htmlEndpoint struct {
	Name                     string
	Requests                 int64
	Errors, P50, P90, P99, M string
}

type htmlStep struct {
	Index                                     int
	Phase                                     string
	Offered, Achieved, P50, P90, P99, Max, Er string
	InFlight                                  string
	Met                                       bool
}

var pageTemplate = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{
	"inc": func(i int) int { return i + 1 },
}).ParseFS(assets, "assets/report.html.tmpl"))

// cspFor is the page's Content-Security-Policy: nothing may load, no script
// may run, and only the page's own stylesheet (by hash) applies.
func cspFor(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; img-src data:; base-uri 'none'; form-action 'none'"
}

// WriteHTML renders the report as one self-contained HTML page: no script,
// no request to anywhere, a strict Content-Security-Policy, the verdict
// first, charts as inline SVG. Everything that came from the target is
// escaped by html/template.
func WriteHTML(w io.Writer, r *Report, opt HTMLOptions) error {
	css, err := assets.ReadFile("assets/report.css")
	if err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	p := buildPage(r, opt)
	p.CSS = template.CSS(css)
	p.CSP = cspFor(string(css))
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, p); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write html: %w", err)
	}
	return nil
}

func buildPage(r *Report, opt HTMLOptions) *htmlPage {
	c := r.Capacity
	p := &htmlPage{
		Title:      "chokepoint: " + Verdict(r),
		Verdict:    Verdict(r),
		Status:     nonEmpty(r.Status, "unknown"),
		Partial:    r.Status != "" && r.Status != "complete",
		Capacity:   capacityText(c.MaxRPS),
		LimitedBy:  c.LimitedBy,
		URLs:       r.Target.URLs,
		Scenario:   r.Target.Scenario,
		PID:        r.Target.PID,
		Objective:  fmt.Sprintf("p99 ≤ %s ms, errors ≤ %s%%", fmtNum(r.SLO.P99MS), fmtNum(r.SLO.ErrorRate*100)),
		Period:     period(r.StartMS, r.EndMS),
		Schema:     nonEmpty(r.Schema, Schema),
		Notes:      r.Notes,
		RuledOut:   r.RuledOut,
		Coverage:   r.Coverage,
		InputNotes: opt.Notes,
	}
	if c.MaxRPS != nil {
		p.Bracket = append(p.Bracket, "the objective held up to "+num(c.MaxRPS)+" req/s")
	}
	if c.FirstFailingRPS != nil {
		p.Bracket = append(p.Bracket, "it broke at "+num(c.FirstFailingRPS)+" req/s")
	}
	if c.KneeRPS != nil {
		p.Bracket = append(p.Bracket, "latency bends from "+num(c.KneeRPS)+" req/s")
	}
	for i, f := range r.Findings {
		p.Findings = append(p.Findings, htmlFindingOf(i, f))
	}
	if len(p.Findings) > 0 {
		p.Principal = &p.Findings[0]
		p.PrincipalLabel = "Most important finding"
		if r.Findings[0].Severity == SeverityCritical {
			p.PrincipalLabel = "Principal bottleneck"
		}
	}
	for _, e := range r.Endpoints {
		p.Endpoints = append(p.Endpoints, htmlEndpoint{Name: e.Name, Requests: e.Requests,
			Errors: fmtPct(e.ErrorRate), P50: fmtNum(e.Latency.P50), P90: fmtNum(e.Latency.P90), P99: fmtNum(e.Latency.P99), M: fmtNum(e.Latency.Max)})
	}
	for _, s := range r.Steps {
		p.Steps = append(p.Steps, htmlStep{Index: s.Index, Phase: s.Phase, Offered: fmtNum(s.OfferedRPS), Achieved: fmtNum(s.AchievedRPS),
			P50: fmtNum(s.Latency.P50), P90: fmtNum(s.Latency.P90), P99: fmtNum(s.Latency.P99), Max: fmtNum(s.Latency.Max),
			Er: fmtPct(s.ErrorRate), InFlight: fmtNum(s.InflightMean), Met: s.MetSLO})
	}
	for _, cv := range r.Coverage {
		if cv.Status != "ok" {
			p.Missing++
		}
	}
	for _, ch := range []*svgChart{latencyChart(r), throughputChart(r), uslChart(r)} {
		if ch != nil {
			p.Charts = append(p.Charts, ch)
		}
	}
	p.Charts = append(p.Charts, timelineCharts(r, opt.Timeline)...)
	if fg := buildFlame(opt.CPUProfile); fg != nil {
		p.Flame = fg
		p.FlameLabel = nonEmpty(opt.ProfileLabel, "CPU profile")
	}
	return p
}

func htmlFindingOf(i int, f Finding) htmlFinding {
	h := htmlFinding{
		N: i + 1, ID: fmt.Sprintf("finding-%d", i+1),
		Kind: f.Kind, Title: f.Title, Severity: f.Severity,
		Impact:         fmt.Sprintf("%.0f%%", f.Impact*100),
		Confidence:     fmt.Sprintf("%.0f%%", f.Confidence*100),
		Recommendation: f.Recommendation,
	}
	l := f.Locus
	add := func(k, v string) {
		if v != "" {
			h.Locus = append(h.Locus, htmlKV{k, v})
		}
	}
	add("endpoint", l.Endpoint)
	add("function", l.Function)
	add("query", l.Query)
	add("table", l.Table)
	add("columns", strings.Join(l.Columns, ", "))
	add("downstream", l.Downstream)
	add("process", l.Process)
	if l.Limit > 0 {
		add("limit", fmt.Sprint(l.Limit))
	}
	add("resource", l.Resource)
	for _, e := range f.Evidence {
		h.Evidence = append(h.Evidence, htmlEvidence{Source: e.Source, What: e.What, Value: fmtNum(e.Value), Unit: e.Unit})
	}
	if g := f.ExpectedGain; g != nil {
		h.Gain = fmt.Sprintf("%s from %s to %s", g.Metric, fmtNum(g.From), fmtNum(g.To))
		if g.Method != "" {
			h.Gain += " (" + g.Method + ")"
		}
	}
	return h
}

func capacityText(p *float64) string {
	if p == nil {
		return "not measured"
	}
	return num(p) + " req/s"
}

func fmtPct(v float64) string { return fmt.Sprintf("%.2f%%", v*100) }

// period formats a run's start and length in UTC ("" when unknown).
func period(startMS, endMS int64) string {
	if startMS <= 0 {
		return ""
	}
	s := time.UnixMilli(startMS).UTC()
	out := s.Format("2006-01-02 15:04:05 UTC")
	if endMS > startMS {
		out += fmt.Sprintf(", %s", (time.Duration(endMS-startMS) * time.Millisecond).Round(time.Second))
	}
	return out
}
