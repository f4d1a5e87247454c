package diagnose

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// FuzzTraceRules feeds the trace rules spans a hostile target could send
// (any parent links, times, kinds and attributes): no rule may panic, and
// every finding keeps impact and confidence within 0..1.
func FuzzTraceRules(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte("\x00\x00\x01\x10\x05\x02\x01\x20\x05\x03\x01\x30\x05\x04\x01\x40\x05\x05\x01\x50\x05\x06"))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x80"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := hostileInput(t, data)
		for _, r := range traceRules() {
			res := r.Check(in)
			for _, c := range res.Findings {
				if !(c.Impact >= 0 && c.Impact <= 1) || !(c.Confidence >= 0 && c.Confidence <= 1) {
					t.Fatalf("%s: impact %v, confidence %v", c.Kind, c.Impact, c.Confidence)
				}
				if c.ExpectedGain != nil && (math.IsNaN(c.ExpectedGain.To) || math.IsInf(c.ExpectedGain.To, 0)) {
					t.Fatalf("%s: expected gain %+v", c.Kind, c.ExpectedGain)
				}
			}
			if len(res.Findings) == 0 && res.RuledOut == "" {
				t.Fatalf("%s neither fired nor said why", r.Kind())
			}
		}
	})
}

// hostileInput is a synthetic run whose knee step also holds spans decoded
// from data: six bytes a span (trace, parent, start, offset, length, kind
// and attributes).
func hostileInput(t *testing.T, data []byte) *Input {
	const maxSpans = 512 // the receiver bounds what it keeps; so does the test
	in := synthInput(t, synthOpts{baseReqs: 12, focusReqs: 12, focusShape: httpSequence(2, 5, 1, false, false),
		pg: map[string]synthPG{qSummary: {1, 3, 2}}})
	start, end := in.StepSpan(1)
	kinds := []string{evidence.SpanKindServer, evidence.SpanKindClient, evidence.SpanKindInternal, "", evidence.SpanKindProducer}
	queries := []string{qSummary, qCustomer, "BEGIN", "", "SELECT $1"}
	for i := 0; len(data) >= 6 && i < maxSpans; i++ {
		b := data[:6]
		data = data[6:]
		trace := int(b[0] % 4)
		parent := ""
		if b[1]%5 != 0 {
			parent = fmt.Sprintf("%016x", b[1]%16)
		}
		t0 := start + int64(b[2])*int64(end-start)/256
		startNS := t0*1e6 + int64(b[3])*1e5
		endNS := startNS + int64(int8(b[4]))*1e6 // may end before it starts
		if b[5] == 0xff {
			startNS, endNS = math.MaxInt64-1, math.MaxInt64
		}
		s := evidence.Span{T: t0, TraceID: fmt.Sprintf("%032x", trace), SpanID: fmt.Sprintf("%016x", i%16), ParentID: parent,
			Kind: kinds[int(b[5])%len(kinds)], StartNS: startNS, EndNS: endNS, Name: "x"}
		switch b[5] % 3 {
		case 0:
			s.HTTPMethod, s.HTTPRoute = "GET", "/r"
		case 1:
			s.DBSystem, s.DBQuery, s.DBArgs = "postgresql", queries[int(b[4])%len(queries)], fmt.Sprint(b[3]%3)
		default:
			s.HTTPMethod, s.HTTPURL = "GET", fmt.Sprintf("http://127.0.0.1:1/p?i=%d", binary.LittleEndian.Uint16(b[2:4])%3)
		}
		in.Spans = append(in.Spans, s)
	}
	return in
}
