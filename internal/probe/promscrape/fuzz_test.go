package promscrape

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParse feeds arbitrary bodies, as a target could serve them, through
// both formats and the flattening: nothing may panic, and every kept sample
// must encode as JSON (no NaN or Inf reaches metrics.jsonl).
func FuzzParse(f *testing.F) {
	f.Add([]byte(exposition), false)
	f.Add([]byte("# TYPE foo counter\nfoo_total{a=\"b\"} 1 # {x=\"y\"} 1 2\nfoo_created 3\n# EOF\n"), true)
	f.Add([]byte("x{a=\"\\\"}\"} +Inf\n"), true)
	f.Add([]byte("{\"my.metric\",a=\"b\"} 1\n"), false)
	const maxBody = 1 << 20 // fuzz memory bound, as io.LimitReader bounds a scrape
	f.Fuzz(func(t *testing.T, body []byte, openMetrics bool) {
		if len(body) > maxBody {
			return
		}
		ct := "text/plain; version=0.0.4"
		if openMetrics {
			ct = "application/openmetrics-text; version=1.0.0"
		}
		fams, _, err := Parse(bytes.NewReader(body), ct)
		if err != nil {
			return
		}
		for _, mf := range fams {
			ss, _ := flatten(mf)
			for _, s := range ss {
				if _, err := json.Marshal(s.MetricSample); err != nil {
					t.Fatalf("sample %+v does not encode: %v", s, err)
				}
				_ = seriesKey(s.MetricSample)
			}
		}
	})
}
