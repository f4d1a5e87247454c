package promscrape

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"mime"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// Formats of a scraped body.
const (
	FormatText        = "text"
	FormatOpenMetrics = "openmetrics"
)

// Parse decodes a Prometheus text (0.0.4) or OpenMetrics 1.0 body, chosen
// by its Content-Type (anything but OpenMetrics is read as text). The
// caller bounds the body's size.
//
// OpenMetrics is rewritten to the classic text format and read by expfmt's
// text parser: expfmt's own OpenMetrics decoder (a grammar-driven parser)
// took about a second per thousand lines here, too slow to scrape once a
// second, and rejects info and stateset families that exporters do send.
func Parse(r io.Reader, contentType string) ([]*dto.MetricFamily, string, error) {
	format := FormatText
	if mt, _, _ := mime.ParseMediaType(contentType); mt == expfmt.OpenMetricsType {
		format = FormatOpenMetrics
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, format, fmt.Errorf("parse metrics: %w", err)
		}
		r = bytes.NewReader(OpenMetricsToText(b))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, format, fmt.Errorf("parse metrics: %w", err)
	}
	fams := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		fams = append(fams, mf)
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].GetName() < fams[j].GetName() })
	return fams, format, nil
}

// OpenMetricsToText rewrites an OpenMetrics 1.0 exposition as Prometheus
// text 0.0.4: counter families are named by their _total series, _created
// series, exemplars, timestamps, UNIT and HELP lines are dropped, types the
// text format lacks (info, stateset, gaugehistogram, unknown) become untyped,
// and reading stops at "# EOF".
func OpenMetricsToText(in []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(in))
	created := map[string]bool{} // _created series of typed families
	for len(in) > 0 {
		var line []byte
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i], in[i+1:]
		} else {
			line, in = in, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			f := strings.Fields(string(line))
			if len(f) == 2 && f[1] == "EOF" {
				break
			}
			if len(f) != 4 || f[1] != "TYPE" {
				continue // HELP, UNIT and comments
			}
			name, typ := f[2], f[3]
			switch typ {
			case "counter":
				created[name+"_created"] = true
				if !strings.HasSuffix(name, "_total") {
					name += "_total"
				}
			case "histogram", "summary":
				created[name+"_created"] = true
			case "gauge":
			default:
				continue // untyped
			}
			out.WriteString("# TYPE " + name + " " + typ + "\n")
			continue
		}
		nameLabels, value, ok := splitSample(line)
		if !ok {
			out.Write(line) // let the text parser report it
			out.WriteByte('\n')
			continue
		}
		if created[sampleName(nameLabels)] {
			continue
		}
		out.Write(nameLabels)
		out.WriteByte(' ')
		out.Write(value)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// splitSample splits "name{labels} value [timestamp] [# exemplar]" into
// its name-and-labels and value, honouring quoted label values.
func splitSample(line []byte) (nameLabels, value []byte, ok bool) {
	depth, inQuote := 0, false
	end := -1
	for i := 0; i < len(line) && end < 0; i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '{':
			depth++
		case c == '}':
			depth--
		case depth == 0 && (c == ' ' || c == '\t'):
			end = i
		}
	}
	if end <= 0 {
		return nil, nil, false
	}
	rest := bytes.TrimLeft(line[end:], " \t")
	if i := bytes.IndexAny(rest, " \t"); i >= 0 {
		rest = rest[:i]
	}
	if len(rest) == 0 {
		return nil, nil, false
	}
	return line[:end], rest, true
}

// sampleName is the metric name of "name{labels}" (unquoted names only;
// "" for a name inside the braces).
func sampleName(nameLabels []byte) string {
	if i := bytes.IndexByte(nameLabels, '{'); i >= 0 {
		return string(nameLabels[:i])
	}
	return string(nameLabels)
}

// series is one flattened sample before rates are added.
type series struct {
	evidence.MetricSample
	cumulative bool
}

// flatten turns a family into samples as Prometheus names them: histograms
// into _bucket{le}, _sum and _count, summaries into quantile series, _sum
// and _count. Non-finite values are dropped and counted.
func flatten(mf *dto.MetricFamily) (out []series, dropped int) {
	name := mf.GetName()
	add := func(n string, labels map[string]string, typ string, v float64, cumulative bool) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			dropped++
			return
		}
		out = append(out, series{MetricSample: evidence.MetricSample{Name: n, Labels: labels, Type: typ, Value: v}, cumulative: cumulative})
	}
	for _, m := range mf.GetMetric() {
		base := labelMap(m.GetLabel())
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			add(name, base, evidence.MetricCounter, m.GetCounter().GetValue(), true)
		case dto.MetricType_GAUGE:
			add(name, base, evidence.MetricGauge, m.GetGauge().GetValue(), false)
		case dto.MetricType_UNTYPED:
			// An untyped _total is a counter by convention.
			add(name, base, evidence.MetricUntyped, m.GetUntyped().GetValue(), strings.HasSuffix(name, "_total"))
		case dto.MetricType_SUMMARY:
			s := m.GetSummary()
			for _, q := range s.GetQuantile() {
				add(name, with(base, "quantile", formatFloat(q.GetQuantile())), evidence.MetricSummary, q.GetValue(), false)
			}
			add(name+"_sum", base, evidence.MetricSummary, s.GetSampleSum(), true)
			add(name+"_count", base, evidence.MetricSummary, float64(s.GetSampleCount()), true)
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			cum := mf.GetType() == dto.MetricType_HISTOGRAM
			for _, b := range h.GetBucket() {
				add(name+"_bucket", with(base, "le", formatFloat(b.GetUpperBound())), evidence.MetricHistogram, float64(b.GetCumulativeCount()), cum)
			}
			if len(h.GetBucket()) > 0 {
				// +Inf is implicit in the protobuf form and equals the count.
				if last := h.GetBucket()[len(h.GetBucket())-1]; !math.IsInf(last.GetUpperBound(), 1) {
					add(name+"_bucket", with(base, "le", "+Inf"), evidence.MetricHistogram, float64(h.GetSampleCount()), cum)
				}
			}
			add(name+"_sum", base, evidence.MetricHistogram, h.GetSampleSum(), cum)
			add(name+"_count", base, evidence.MetricHistogram, float64(h.GetSampleCount()), cum)
		}
	}
	return out, dropped
}

func labelMap(lps []*dto.LabelPair) map[string]string {
	if len(lps) == 0 {
		return nil
	}
	m := make(map[string]string, len(lps))
	for _, lp := range lps {
		m[lp.GetName()] = lp.GetValue()
	}
	return m
}

func with(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// seriesKey identifies a series across scrapes.
func seriesKey(s evidence.MetricSample) string {
	var b strings.Builder
	b.WriteString(s.Name)
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(0xff)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(s.Labels[k])
	}
	return b.String()
}

// rate is the per-second increase of a cumulative series over dt seconds;
// a value below the previous one means the counter was reset, and the
// increase is then the value itself (as Prometheus's rate() counts it).
func rate(prev, cur, dt float64) (float64, bool) {
	if dt <= 0 {
		return 0, false
	}
	inc := cur - prev
	if cur < prev {
		inc = cur
	}
	return inc / dt, true
}
