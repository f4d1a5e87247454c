package load

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/schemas"
)

func TestRunWriter(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(500)
		}
	}))
	dir, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	rw, err := NewRunWriter(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/ok", srv.URL+"/bad"), Window: 100 * time.Millisecond})
	var windows int
	res := mustRun(t, e, Constant(400), Bound{Duration: 500 * time.Millisecond}, func(w *Window) {
		windows++
		if err := rw.Window(3, w); err != nil {
			t.Error(err)
		}
	})
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}

	// timeline.jsonl: one record per window, adding up to the result.
	var lines int
	var requests, errs int64
	err = run.ReadLines(dir.Join(run.TimelineFile), func(r evidence.WindowRecord) error {
		lines++
		requests += r.Requests
		errs += r.Errors
		if r.Step != 3 || r.OfferedRPS == nil || r.EndMS <= r.StartMS || r.T != r.EndMS {
			t.Errorf("record %+v", r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lines != windows || lines < 2 || requests != res.Requests() || errs != res.Errors() || requests != 200 || errs == 0 {
		t.Errorf("timeline: %d lines, %d requests, %d errors; result %d requests, %d errors", lines, requests, errs, res.Requests(), res.Errors())
	}

	// latency.hlog: readable by HdrHistogram's log reader, tagged by
	// endpoint, counts adding up.
	f, err := os.Open(dir.Join(run.LatencyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lr := hdr.NewHistogramLogReader(f)
	byTag := map[string]int64{}
	for {
		h, err := lr.NextIntervalHistogram()
		if errors.Is(err, io.EOF) || (err == nil && h == nil) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		byTag[ParseHlogTag(h.Tag())] += h.TotalCount()
	}
	// The scenario picks endpoints at random: /bad answers 500, so its
	// count is the number of errors.
	if byTag["GET /ok"]+byTag["GET /bad"] != 200 || byTag["GET /bad"] != errs {
		t.Errorf("hlog counts by endpoint: %v", byTag)
	}
}

func TestSummaryMatchesSchema(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(okHandler))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/a", srv.URL+"/b")})
	open := mustRun(t, e, Constant(100), Bound{Duration: 100 * time.Millisecond}, nil)
	closed := mustRun(t, e, Closed(2), Bound{Duration: 100 * time.Millisecond}, nil)
	empty := newResult([]string{"GET /"})
	for name, s := range map[string]Summary{
		"open":   open.Summary(100),
		"closed": closed.Summary(100),
		"empty":  empty.Summary(100),
		"thresholds": func() Summary {
			s := open.Summary(100)
			s.CheckThresholds(time.Millisecond, 0.01)
			s.RunDir = "runs/x"
			return s
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.Validate(SummarySchema, b); err != nil {
				t.Errorf("%v\n%s", err, b)
			}
		})
	}
	// A closed summary with an offered rate breaks the schema (the schema
	// is not vacuous).
	bad := closed.Summary(100)
	x := 5.0
	bad.OfferedRPS = &x
	b, _ := json.Marshal(bad)
	if err := schemas.Validate(SummarySchema, b); err == nil {
		t.Error("closed summary with offered_rps validated")
	}
}

func TestCheckThresholds(t *testing.T) {
	s := Summary{LatencyMS: Percentiles{P99: 12}, ErrorRate: 0.02}
	if s.CheckThresholds(0, -1) != true || len(s.Thresholds) != 0 {
		t.Error("no thresholds asked: want ok and none recorded")
	}
	tests := []struct {
		p99  time.Duration
		errs float64
		ok   bool
	}{
		{20 * time.Millisecond, 0.05, true},
		{10 * time.Millisecond, 0.05, false},
		{20 * time.Millisecond, 0.01, false},
		{12 * time.Millisecond, 0.02, true}, // at the limit is met
	}
	for _, tc := range tests {
		s := Summary{LatencyMS: Percentiles{P99: 12}, ErrorRate: 0.02}
		if got := s.CheckThresholds(tc.p99, tc.errs); got != tc.ok || len(s.Thresholds) != 2 {
			t.Errorf("p99 <= %v, errors <= %v: ok %v (%+v), want %v", tc.p99, tc.errs, got, s.Thresholds, tc.ok)
		}
	}
}

func TestHlogTag(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"GET /fast", "GET%20/fast"},
		{"list,orders 100%", "list%2Corders%20100%25"},
		{"plain", "plain"},
		{"a\nb", "a%0Ab"},
	} {
		if got := HlogTag(tc.in); got != tc.want {
			t.Errorf("HlogTag(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back := ParseHlogTag(tc.want); back != tc.in {
			t.Errorf("ParseHlogTag(%q) = %q, want %q", tc.want, back, tc.in)
		}
	}
}

func FuzzHlogTag(f *testing.F) {
	for _, s := range []string{"GET /x", "%", "%2", "%zz", "a,b c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		tag := HlogTag(name)
		for i := 0; i < len(tag); i++ {
			switch tag[i] {
			case ',', ' ', '\t', '\r', '\n':
				t.Fatalf("HlogTag(%q) = %q holds a separator", name, tag)
			}
		}
		if back := ParseHlogTag(tag); back != name {
			t.Fatalf("round trip %q -> %q -> %q", name, tag, back)
		}
		ParseHlogTag(name) // arbitrary input must not panic
	})
}
