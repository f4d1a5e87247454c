package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// Geometry of the SVG charts, in SVG user units (CSS pixels at 100%).
const (
	chartW      = 720.0
	chartH      = 280.0
	chartLeft   = 64.0 // room for the y tick labels
	chartRight  = 16.0
	chartTop    = 28.0 // room for the legend
	chartBottom = 44.0 // room for the x tick labels and the axis title
	// logRangeMin: a latency chart switches to a log scale when its largest
	// value is this many times its smallest, or the early steps would be a
	// flat line along the axis (a hunt's p99 typically spans 1 ms to seconds).
	logRangeMin = 20.0
	// targetTicks is how many ticks an axis aims for.
	targetTicks = 6
	// maxTimelineWindows bounds the per-second timeline: ten minutes of
	// windows keeps the chart legible and the file small.
	maxTimelineWindows = 600
	// uslCurvePoints is how many points draw the fitted USL curve.
	uslCurvePoints = 80
	// minLatencyMS and maxLatencyMS bound a latency axis: 1 µs is the
	// latency histograms' resolution and 10⁹ ms (11 days) far beyond any
	// request timeout; values outside are clamped to the axis.
	minLatencyMS = 1e-3
	maxLatencyMS = 1e9
	// maxTicks bounds the ticks of any axis, whatever the data.
	maxTicks = 64
)

// svgChart is one chart, fully computed in Go: the template only places
// numbers and escaped labels.
type svgChart struct {
	ID     string
	Title  string
	Desc   string // what the chart shows, for screen readers
	W, H   string
	Plot   svgRect
	XTicks []svgTick
	YTicks []svgTick
	XLabel string
	YLabel string
	// Positions of the axis titles.
	XTitleX, XTitleY string
	YLabelX, YLabelY string
	Lines            []svgLine
	Dots             []svgDot
	Rules            []svgRule
	Legend           []svgLegend
	Note             string // shown under the chart
}

type svgRect struct{ X, Y, W, H string }

type svgTick struct {
	P     string // pixel position along the axis
	Label string
	// Where the tick's label sits, and the grid line's ends.
	LX, LY string
	G1, G2 string
}

type svgLine struct {
	Class  string
	Points string
}

type svgDot struct {
	X, Y  string
	Class string
	Title string
}

type svgRule struct {
	X1, Y1, X2, Y2 string
	Class          string
	Label          string
	LX, LY         string
	Anchor         string
}

type svgLegend struct {
	Class  string
	Label  string
	X, Y   string
	LX2    string // end of the sample line
	TX, TY string
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// axis maps data values to pixels, linearly or logarithmically.
type axis struct {
	lo, hi float64 // data range
	p0, p1 float64 // pixel range (p0 at lo)
	log    bool
}

func (a axis) pos(v float64) float64 {
	if a.log {
		if v <= 0 {
			v = a.lo
		}
		v = math.Log10(v)
		lo, hi := math.Log10(a.lo), math.Log10(a.hi)
		return a.p0 + (v-lo)/(hi-lo)*(a.p1-a.p0)
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// ticks returns tick values: 1-2-5 steps for a linear axis, 1-2-5 within
// each decade (or decades only) for a log axis.
func (a axis) ticks() []float64 {
	if a.log {
		var out []float64
		decades := math.Log10(a.hi) - math.Log10(a.lo)
		mults := []float64{1, 2, 5}
		if decades > 3 {
			mults = []float64{1}
		}
		for e := math.Floor(math.Log10(a.lo)); e <= math.Ceil(math.Log10(a.hi)) && len(out) < maxTicks; e++ {
			for _, m := range mults {
				v := m * math.Pow(10, e)
				if v >= a.lo*(1-1e-9) && v <= a.hi*(1+1e-9) {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep((a.hi - a.lo) / targetTicks)
	var out []float64
	first := math.Ceil(a.lo/step) * step
	for i := 0; i < maxTicks; i++ {
		v := first + float64(i)*step
		if v > a.hi+step*1e-9 || !finite(v) {
			break
		}
		out = append(out, v)
	}
	return out
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// niceMax rounds v up to the next 1-2-5 step.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	s := niceStep(v / targetTicks)
	return math.Ceil(v/s) * s
}

// tickLabel prints a tick value compactly (1.5k, 20, 0.5).
func tickLabel(v float64) string {
	av := math.Abs(v)
	switch {
	case av >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case av >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// newChart lays out a chart with the given axes' data ranges.
func newChart(id, title, desc, xLabel, yLabel string, x, y axis) (*svgChart, axis, axis) {
	plotX, plotY := chartLeft, chartTop
	plotW, plotH := chartW-chartLeft-chartRight, chartH-chartTop-chartBottom
	x.p0, x.p1 = plotX, plotX+plotW
	y.p0, y.p1 = plotY+plotH, plotY
	c := &svgChart{
		ID: id, Title: title, Desc: desc,
		W: f1(chartW), H: f1(chartH),
		Plot:    svgRect{X: f1(plotX), Y: f1(plotY), W: f1(plotW), H: f1(plotH)},
		XLabel:  xLabel,
		YLabel:  yLabel,
		XTitleX: f1(plotX + plotW/2), XTitleY: f1(chartH - 8),
		YLabelX: f1(14), YLabelY: f1(plotY + plotH/2),
	}
	for _, v := range x.ticks() {
		c.XTicks = append(c.XTicks, svgTick{P: f1(x.pos(v)), Label: tickLabel(v), LX: f1(x.pos(v)), LY: f1(plotY + plotH + 16)})
	}
	for _, v := range y.ticks() {
		c.YTicks = append(c.YTicks, svgTick{P: f1(y.pos(v)), Label: tickLabel(v), LX: f1(plotX - 6), LY: f1(y.pos(v) + 4), G1: f1(plotX), G2: f1(plotX + plotW)})
	}
	return c, x, y
}

func (c *svgChart) line(class string, x, y axis, xs, ys []float64) {
	var b strings.Builder
	for i := range xs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f1(x.pos(xs[i])))
		b.WriteByte(',')
		b.WriteString(f1(y.pos(ys[i])))
	}
	if b.Len() > 0 {
		c.Lines = append(c.Lines, svgLine{Class: class, Points: b.String()})
	}
}

func (c *svgChart) dot(class string, x, y axis, xv, yv float64, title string) {
	c.Dots = append(c.Dots, svgDot{X: f1(x.pos(xv)), Y: f1(y.pos(yv)), Class: class, Title: title})
}

// hrule draws a horizontal line at y = v across the plot, labelled at its right end.
func (c *svgChart) hrule(class, label string, x, y axis, v float64) {
	py := y.pos(v)
	c.Rules = append(c.Rules, svgRule{X1: f1(x.p0), X2: f1(x.p1), Y1: f1(py), Y2: f1(py), Class: class,
		Label: label, LX: f1(x.p1 - 4), LY: f1(py - 4), Anchor: "end"})
}

// vrule draws a vertical line at x = v, labelled at its top.
func (c *svgChart) vrule(class, label string, x, y axis, v float64) {
	px := x.pos(v)
	anchor := "start"
	lx := px + 4
	if px > x.p0+(x.p1-x.p0)*0.75 {
		anchor, lx = "end", px-4
	}
	c.Rules = append(c.Rules, svgRule{X1: f1(px), X2: f1(px), Y1: f1(y.p0), Y2: f1(y.p1), Class: class,
		Label: label, LX: f1(lx), LY: f1(y.p1 + 12), Anchor: anchor})
}

func (c *svgChart) legend(items ...svgLegend) {
	x := chartLeft
	for _, it := range items {
		it.X, it.Y, it.LX2 = f1(x), f1(12), f1(x+18)
		it.TX, it.TY = f1(x+22), f1(16)
		c.Legend = append(c.Legend, it)
		x += 34 + 7*float64(len([]rune(it.Label)))
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// latencyAxis picks a linear or log y axis for latencies in [lo, hi] ms.
func latencyAxis(lo, hi float64) axis {
	lo = math.Min(math.Max(lo, minLatencyMS), maxLatencyMS)
	hi = math.Min(math.Max(hi, minLatencyMS), maxLatencyMS)
	if hi/lo >= logRangeMin {
		return axis{lo: math.Pow(10, math.Floor(math.Log10(lo))), hi: math.Pow(10, math.Ceil(math.Log10(hi))), log: true}
	}
	return axis{lo: 0, hi: niceMax(hi * 1.05)}
}

// latencyChart plots p50/p90/p99 of each step against its offered rate,
// with the objective and the knee.
func latencyChart(r *Report) *svgChart {
	steps := r.Steps
	if len(steps) == 0 {
		return nil
	}
	maxX, lo, hi := 0.0, math.Inf(1), 0.0
	for _, s := range steps {
		maxX = math.Max(maxX, s.OfferedRPS)
		for _, v := range []float64{s.Latency.P50, s.Latency.P90, s.Latency.P99} {
			if v > 0 && finite(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if r.SLO.P99MS > 0 {
		lo, hi = math.Min(lo, r.SLO.P99MS), math.Max(hi, r.SLO.P99MS)
	}
	if hi == 0 || !finite(maxX) || maxX <= 0 {
		return nil
	}
	ya := latencyAxis(lo, hi)
	scale := ""
	if ya.log {
		scale = " (log scale)"
	}
	c, x, y := newChart("chart-latency", "Latency against offered rate",
		"Latency percentiles of each step against the rate offered, with the latency objective and the knee.",
		"offered rate (req/s)", "latency (ms)"+scale,
		axis{lo: 0, hi: niceMax(maxX * 1.05)}, ya)
	series := []struct {
		class, label string
		get          func(Step) float64
	}{
		{"s-p50", "p50", func(s Step) float64 { return s.Latency.P50 }},
		{"s-p90", "p90", func(s Step) float64 { return s.Latency.P90 }},
		{"s-p99", "p99", func(s Step) float64 { return s.Latency.P99 }},
	}
	sorted := sortedSteps(steps)
	var leg []svgLegend
	for _, sr := range series {
		var xs, ys []float64
		for _, s := range sorted {
			v := sr.get(s)
			if v <= 0 || !finite(v) {
				continue
			}
			xs, ys = append(xs, s.OfferedRPS), append(ys, v)
			cls := sr.class
			if !s.MetSLO && sr.label == "p99" {
				cls += " missed"
			}
			c.dot(cls, x, y, s.OfferedRPS, v, fmt.Sprintf("%s req/s offered: %s %s ms", fmtNum(s.OfferedRPS), sr.label, fmtNum(v)))
		}
		if len(xs) > 0 {
			c.line(sr.class, x, y, xs, ys)
			leg = append(leg, svgLegend{Class: sr.class, Label: sr.label})
		}
	}
	if r.SLO.P99MS > 0 {
		c.hrule("slo", fmt.Sprintf("objective p99 %s ms", fmtNum(r.SLO.P99MS)), x, y, r.SLO.P99MS)
		leg = append(leg, svgLegend{Class: "slo", Label: "objective"})
	}
	markCapacity(c, r, x, y)
	c.legend(leg...)
	return c
}

// markCapacity draws the knee and the capacity bracket on an offered-rate axis.
func markCapacity(c *svgChart, r *Report, x, y axis) {
	if k := r.Capacity.KneeRPS; k != nil && finite(*k) && *k >= x.lo && *k <= x.hi {
		c.vrule("knee", "knee "+fmtNum(*k), x, y, *k)
	}
	if m := r.Capacity.MaxRPS; m != nil && finite(*m) && *m >= x.lo && *m <= x.hi {
		c.vrule("capacity", "capacity "+fmtNum(*m), x, y, *m)
		if k := r.Capacity.KneeRPS; k != nil && math.Abs(x.pos(*k)-x.pos(*m)) < 90 {
			// Too close to the knee's label: put this one a line lower.
			c.Rules[len(c.Rules)-1].LY = f1(y.p1 + 24)
		}
	}
}

func sortedSteps(steps []Step) []Step {
	out := append([]Step(nil), steps...)
	for i := 1; i < len(out); i++ { // insertion sort: a few dozen steps, stable
		for j := i; j > 0 && out[j].OfferedRPS < out[j-1].OfferedRPS; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// throughputChart plots achieved against offered rate with the ideal
// diagonal, the knee and the USL's predicted ceiling.
func throughputChart(r *Report) *svgChart {
	if len(r.Steps) == 0 {
		return nil
	}
	maxV := 0.0
	for _, s := range r.Steps {
		maxV = math.Max(maxV, math.Max(s.OfferedRPS, s.AchievedRPS))
	}
	if !finite(maxV) || maxV <= 0 {
		return nil
	}
	ceiling, hasCeiling := uslCeiling(r.Capacity.USL)
	if hasCeiling && ceiling > maxV*3 {
		hasCeiling = false // far off the chart: an extrapolation, not drawn
	}
	top := maxV
	if hasCeiling {
		top = math.Max(top, ceiling)
	}
	c, x, y := newChart("chart-throughput", "Achieved against offered throughput",
		"Achieved throughput of each step against the rate offered; the diagonal is a target that keeps up.",
		"offered rate (req/s)", "achieved (req/s)",
		axis{lo: 0, hi: niceMax(maxV * 1.05)}, axis{lo: 0, hi: niceMax(top * 1.05)})
	edge := math.Min(x.hi, y.hi)
	c.line("ideal", x, y, []float64{0, edge}, []float64{0, edge})
	sorted := sortedSteps(r.Steps)
	var xs, ys []float64
	for _, s := range sorted {
		xs, ys = append(xs, s.OfferedRPS), append(ys, s.AchievedRPS)
		cls := "s-achieved"
		if !s.MetSLO {
			cls += " missed"
		}
		c.dot(cls, x, y, s.OfferedRPS, s.AchievedRPS, fmt.Sprintf("%s req/s offered: %s req/s achieved", fmtNum(s.OfferedRPS), fmtNum(s.AchievedRPS)))
	}
	c.line("s-achieved", x, y, xs, ys)
	leg := []svgLegend{{Class: "s-achieved", Label: "achieved"}, {Class: "ideal", Label: "offered = achieved"}}
	if hasCeiling {
		c.hrule("usl", "USL peak "+fmtNum(ceiling)+" req/s", x, y, ceiling)
		leg = append(leg, svgLegend{Class: "usl", Label: "USL ceiling"})
	}
	markCapacity(c, r, x, y)
	c.legend(leg...)
	if u := r.Capacity.USL; u == nil {
		c.Note = "No Universal Scalability Law fit in this report."
	} else if !u.Reliable {
		c.Note = "USL fit not drawn: it is not reliable (" + nonEmpty(u.Note, "no reason given") + ")."
	}
	return c
}

func nonEmpty(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

// uslX is the Universal Scalability Law, X(N) = λN / (1 + σ(N−1) + κN(N−1)).
func uslX(u *USL, n float64) float64 {
	return u.Lambda * n / (1 + u.Sigma*(n-1) + u.Kappa*n*(n-1))
}

// uslCeiling is the fit's peak throughput: X(N*) with N* = sqrt((1−σ)/κ),
// or the asymptote λ/σ when κ = 0. Only a reliable fit has one.
func uslCeiling(u *USL) (float64, bool) {
	if u == nil || !u.Reliable || u.Lambda <= 0 {
		return 0, false
	}
	if u.Kappa > 0 {
		n := math.Sqrt(math.Max(1-u.Sigma, 0) / u.Kappa)
		if n < 1 {
			n = 1
		}
		v := uslX(u, n)
		return v, finite(v) && v > 0
	}
	if u.Sigma > 0 {
		v := u.Lambda / u.Sigma
		return v, finite(v)
	}
	return 0, false
}

// uslChart plots achieved throughput against requests in flight with the
// fitted curve; nil unless the fit is reliable.
func uslChart(r *Report) *svgChart {
	u := r.Capacity.USL
	if u == nil || !u.Reliable || len(r.Steps) == 0 {
		return nil
	}
	maxN, maxX := 0.0, 0.0
	for _, s := range r.Steps {
		if s.InflightMean > 0 && finite(s.InflightMean) {
			maxN = math.Max(maxN, s.InflightMean)
			maxX = math.Max(maxX, s.AchievedRPS)
		}
	}
	if maxN <= 0 || !finite(maxX) {
		return nil
	}
	nHi := niceMax(maxN * 1.2)
	var cx, cy []float64
	for i := 0; i <= uslCurvePoints; i++ {
		n := nHi * float64(i) / uslCurvePoints
		v := 0.0
		if n > 0 {
			v = uslX(u, n)
		}
		if finite(v) && v >= 0 {
			cx, cy = append(cx, n), append(cy, v)
			maxX = math.Max(maxX, v)
		}
	}
	c, x, y := newChart("chart-usl", "Scalability: throughput against concurrency (USL fit)",
		fmt.Sprintf("Achieved throughput against mean requests in flight, with the Universal Scalability Law fit σ=%.3g κ=%.3g λ=%.3g (r²=%.2f).", u.Sigma, u.Kappa, u.Lambda, u.R2),
		"requests in flight (mean)", "achieved (req/s)",
		axis{lo: 0, hi: nHi}, axis{lo: 0, hi: niceMax(maxX * 1.05)})
	c.line("usl", x, y, cx, cy)
	for _, s := range r.Steps {
		if s.InflightMean > 0 && finite(s.InflightMean) {
			c.dot("s-achieved", x, y, s.InflightMean, s.AchievedRPS, fmt.Sprintf("%s in flight: %s req/s", fmtNum(s.InflightMean), fmtNum(s.AchievedRPS)))
		}
	}
	c.legend(svgLegend{Class: "s-achieved", Label: "steps"}, svgLegend{Class: "usl", Label: fmt.Sprintf("X(N) = λN/(1+σ(N−1)+κN(N−1)), r²=%.2f", u.R2)})
	return c
}

// timelineWindows picks the windows around the knee: from the step before
// the knee to the step after the first failing one.
func timelineWindows(r *Report, tl []evidence.WindowRecord) []evidence.WindowRecord {
	if len(tl) == 0 {
		return nil
	}
	lo, hi := -1, -1
	for _, target := range []*float64{r.Capacity.KneeRPS, r.Capacity.FirstFailingRPS, r.Capacity.MaxRPS} {
		if target == nil {
			continue
		}
		if idx, ok := stepNear(r.Steps, *target); ok {
			if lo < 0 || idx < lo {
				lo = idx
			}
			if idx > hi {
				hi = idx
			}
		}
	}
	var out []evidence.WindowRecord
	if lo >= 0 {
		lo, hi = neighbourStep(r.Steps, lo, -1), neighbourStep(r.Steps, hi, +1)
		for _, w := range tl {
			if w.Step >= lo && w.Step <= hi {
				out = append(out, w)
			}
		}
	}
	if len(out) == 0 {
		out = tl
	}
	if len(out) > maxTimelineWindows {
		out = out[len(out)-maxTimelineWindows:]
	}
	return out
}

// stepNear is the index of the listed step whose offered rate is closest to v.
func stepNear(steps []Step, v float64) (int, bool) {
	best, bestD := -1, math.Inf(1)
	for _, s := range steps {
		if d := math.Abs(s.OfferedRPS - v); d < bestD {
			best, bestD = s.Index, d
		}
	}
	return best, best >= 0
}

// neighbourStep is the step index next to idx in run order (dir −1 or +1),
// or idx itself at the ends.
func neighbourStep(steps []Step, idx, dir int) int {
	best := idx
	for _, s := range steps {
		if dir < 0 && s.Index < idx && (best == idx || s.Index > best) {
			best = s.Index
		}
		if dir > 0 && s.Index > idx && (best == idx || s.Index < best) {
			best = s.Index
		}
	}
	return best
}

// timelineCharts draws rates and p99 second by second around the knee.
func timelineCharts(r *Report, tl []evidence.WindowRecord) []*svgChart {
	ws := timelineWindows(r, tl)
	if len(ws) == 0 {
		return nil
	}
	t0 := ws[0].StartMS
	maxRate, lo, hi := 0.0, math.Inf(1), 0.0
	for _, w := range ws {
		if w.OfferedRPS != nil && finite(*w.OfferedRPS) {
			maxRate = math.Max(maxRate, *w.OfferedRPS)
		}
		if finite(w.AchievedRPS) {
			maxRate = math.Max(maxRate, w.AchievedRPS)
		}
		if v := w.LatencyMS.P99; v > 0 && finite(v) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	endS := math.Max(float64(ws[len(ws)-1].EndMS-t0)/1000, 1)
	xa := axis{lo: 0, hi: niceMax(endS)}
	var out []*svgChart
	if maxRate > 0 {
		c, x, y := newChart("chart-timeline-rate", "Timeline around the knee: throughput",
			"Offered and achieved requests per second, one point per second, around the knee.",
			"time (s)", "req/s", xa, axis{lo: 0, hi: niceMax(maxRate * 1.05)})
		var ox, oy, ax, ay []float64
		for _, w := range ws {
			ts := float64(w.EndMS-t0) / 1000
			if w.OfferedRPS != nil && finite(*w.OfferedRPS) {
				ox, oy = append(ox, ts), append(oy, *w.OfferedRPS)
			}
			if finite(w.AchievedRPS) {
				ax, ay = append(ax, ts), append(ay, w.AchievedRPS)
			}
		}
		c.line("s-offered", x, y, ox, oy)
		c.line("s-achieved", x, y, ax, ay)
		stepBounds(c, ws, t0, x, y)
		c.legend(svgLegend{Class: "s-offered", Label: "offered"}, svgLegend{Class: "s-achieved", Label: "achieved"})
		out = append(out, c)
	}
	if hi > 0 {
		if r.SLO.P99MS > 0 {
			lo, hi = math.Min(lo, r.SLO.P99MS), math.Max(hi, r.SLO.P99MS)
		}
		ya := latencyAxis(lo, hi)
		scale := ""
		if ya.log {
			scale = " (log scale)"
		}
		c, x, y := newChart("chart-timeline-p99", "Timeline around the knee: p99 latency",
			"The 99th percentile of latency in each second, with the objective.",
			"time (s)", "p99 (ms)"+scale, xa, ya)
		var px, py []float64
		for _, w := range ws {
			if v := w.LatencyMS.P99; v > 0 && finite(v) {
				px, py = append(px, float64(w.EndMS-t0)/1000), append(py, v)
			}
		}
		c.line("s-p99", x, y, px, py)
		leg := []svgLegend{{Class: "s-p99", Label: "p99"}}
		if r.SLO.P99MS > 0 {
			c.hrule("slo", fmt.Sprintf("objective %s ms", fmtNum(r.SLO.P99MS)), x, y, r.SLO.P99MS)
			leg = append(leg, svgLegend{Class: "slo", Label: "objective"})
		}
		stepBounds(c, ws, t0, x, y)
		c.legend(leg...)
		out = append(out, c)
	}
	return out
}

// stepBounds marks where each step starts, labelled with its offered rate.
func stepBounds(c *svgChart, ws []evidence.WindowRecord, t0 int64, x, y axis) {
	prev := -1
	lastPx := math.Inf(-1)
	for i, w := range ws {
		if i > 0 && w.Step == prev {
			continue
		}
		prev = w.Step
		ts := float64(w.StartMS-t0) / 1000
		px := x.pos(ts)
		label := ""
		if w.OfferedRPS != nil && px-lastPx > 70 {
			label = fmtNum(*w.OfferedRPS) + "/s"
			lastPx = px
		}
		if i > 0 {
			c.Rules = append(c.Rules, svgRule{X1: f1(px), X2: f1(px), Y1: f1(y.p0), Y2: f1(y.p1), Class: "stepline",
				Label: label, LX: f1(px + 3), LY: f1(y.p0 - 4), Anchor: "start"})
		} else if label != "" {
			c.Rules = append(c.Rules, svgRule{X1: f1(px), X2: f1(px), Y1: f1(y.p0), Y2: f1(y.p0), Class: "stepline",
				Label: label, LX: f1(px + 3), LY: f1(y.p0 - 4), Anchor: "start"})
		}
	}
}
