package report

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// FuzzDecode: any bytes as report.json either fail to decode or render in
// every format without panicking, and the HTML stays inert.
func FuzzDecode(f *testing.F) {
	for _, r := range []*Report{completeReport(), noneFoundReport(), loadgenReport(), partialReport(), xssReport()} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"schema":"chokepoint.report/v1","steps":[{"offered_rps":-5,"latency_ms":{"p99":1e308}}],"capacity":{"max_rps":0,"knee_rps":-1,"usl":{"reliable":true,"lambda":1e308,"kappa":-1}}}`))
	f.Add([]byte(`{"schema":"chokepoint.report/v1"} trailing`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, w := range []func(io.Writer, *Report) error{WriteText, WriteMarkdown, WriteJSON} {
			if err := w(io.Discard, r); err != nil {
				t.Fatal(err)
			}
		}
		var b bytes.Buffer
		if err := WriteHTML(&b, r, HTMLOptions{Timeline: timelineFor(r)}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "<script") {
			t.Fatal("script element in the page")
		}
	})
}

// FuzzDecodeTimeline: any timeline.jsonl decodes (or fails) and charts
// without panicking.
func FuzzDecodeTimeline(f *testing.F) {
	var seed bytes.Buffer
	for _, w := range timelineFor(completeReport())[:8] {
		b, _ := json.Marshal(w)
		seed.Write(b)
		seed.WriteByte('\n')
	}
	f.Add(seed.Bytes())
	f.Add([]byte("{\"t\":1,\"offered_rps\":null,\"latency_ms\":{\"p99\":-1}}\n{\"t\":"))
	f.Add([]byte("\n\n{}\n[]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tl, _ := decodeTimeline(bytes.NewReader(data))
		if len(tl) > maxTimelineRecords {
			t.Fatalf("%d records kept", len(tl))
		}
		timelineCharts(completeReport(), tl)
		timelineCharts(&Report{}, tl)
	})
}

// FuzzDecodeProfile: any bytes as a profile fail or draw a flame graph
// within its bounds.
func FuzzDecodeProfile(f *testing.F) {
	var b bytes.Buffer
	if err := cpuProfile().Write(&b); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	var raw bytes.Buffer
	if err := cpuProfile().WriteUncompressed(&raw); err != nil {
		f.Fatal(err)
	}
	f.Add(raw.Bytes())
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeProfile(bytes.NewReader(data))
		if err != nil {
			return
		}
		if fg := buildFlame(p); fg != nil && len(fg.Rects) > flameMaxRects {
			t.Fatalf("%d rects", len(fg.Rects))
		}
	})
}
