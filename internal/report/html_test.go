package report

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/google/pprof/profile"
	"golang.org/x/net/html"
)

// timelineFor makes five one-second windows per step of r.
func timelineFor(r *Report) []evidence.WindowRecord {
	var out []evidence.WindowRecord
	for _, s := range r.Steps {
		for w := range 5 {
			start := s.StartMS + int64(w)*1000
			rate := s.OfferedRPS
			out = append(out, evidence.WindowRecord{T: start + 1000, StartMS: start, EndMS: start + 1000, Step: s.Index, Window: w,
				OfferedRPS: &rate, AchievedRPS: s.AchievedRPS * (0.97 + 0.01*float64(w)), Requests: int64(s.AchievedRPS),
				LatencyMS: evidence.WindowLatency{P50: s.Latency.P50, P90: s.Latency.P90, P99: s.Latency.P99 * (0.9 + 0.05*float64(w)), Max: s.Latency.Max},
				Endpoints: []evidence.WindowEndpoint{{Name: "GET /orders", Requests: int64(s.AchievedRPS)}}})
		}
	}
	return out
}

// cpuProfile is a CPU profile where main.parse takes 60% and
// runtime.mallocgc (under main.handler) 40%, with names from fn.
func cpuProfile(names ...string) *profile.Profile {
	if len(names) == 0 {
		names = []string{"main.handler", "main.parse", "runtime.mallocgc", "net/http.(*conn).serve"}
	}
	fns := make([]*profile.Function, len(names))
	locs := make([]*profile.Location, len(names))
	for i, n := range names {
		fns[i] = &profile.Function{ID: uint64(i + 1), Name: n, SystemName: n}
		locs[i] = &profile.Location{ID: uint64(i + 1), Address: uint64(0x1000 + i), Line: []profile.Line{{Function: fns[i], Line: int64(10 + i)}}}
	}
	return &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        10_000_000,
		DurationNanos: int64(5 * time.Second),
		Function:      fns,
		Location:      locs,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{locs[1], locs[0], locs[3]}, Value: []int64{60, 600_000_000}},
			{Location: []*profile.Location{locs[2], locs[0], locs[3]}, Value: []int64{40, 400_000_000}},
		},
	}
}

func render(t *testing.T, r *Report, opt HTMLOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteHTML(&b, r, opt); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// walk calls fn for every element node of the document.
func walk(t *testing.T, page string, fn func(n *html.Node)) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.ElementNode {
			fn(n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(doc)
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}

// assertInert checks that a page can run nothing and load nothing: no
// script element, no event handler, no reference to another resource, and
// a CSP whose style hash matches the one stylesheet.
func assertInert(t *testing.T, page string) {
	t.Helper()
	var csp, style string
	styles := 0
	walk(t, page, func(n *html.Node) {
		switch n.Data {
		case "script", "iframe", "object", "embed", "img", "link", "base", "form", "image", "use", "foreignObject":
			t.Errorf("page has a <%s> element", n.Data)
		case "meta":
			if v, _ := attr(n, "http-equiv"); strings.EqualFold(v, "Content-Security-Policy") {
				csp, _ = attr(n, "content")
			}
		case "style":
			styles++
			style = textOf(n)
		}
		for _, a := range n.Attr {
			k := strings.ToLower(a.Key)
			if strings.HasPrefix(k, "on") || k == "style" || k == "srcdoc" {
				t.Errorf("<%s> has attribute %s=%q", n.Data, a.Key, a.Val)
			}
			if (k == "href" || k == "src" || k == "xlink:href" || k == "action") && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("<%s> refers elsewhere: %s=%q", n.Data, a.Key, a.Val)
			}
		}
	})
	if styles != 1 {
		t.Errorf("%d <style> elements, want 1", styles)
	}
	sum := sha256.Sum256([]byte(style))
	wantCSP := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if !strings.HasPrefix(csp, wantCSP) {
		t.Errorf("CSP %q, want it to start with %q", csp, wantCSP)
	}
	if strings.Contains(style, "url(") || strings.Contains(style, "@import") {
		t.Error("the stylesheet loads something")
	}
}

func TestHTMLSections(t *testing.T) {
	tests := []struct {
		name       string
		r          *Report
		opt        HTMLOptions
		want       []string // element ids that must be there
		absent     []string
		wantTexts  []string
		flameNames []string
	}{
		{
			name:       "complete with timeline and profile",
			r:          completeReport(),
			opt:        HTMLOptions{Timeline: timelineFor(completeReport()), CPUProfile: cpuProfile(), ProfileLabel: "CPU profile of step 8 at 900 req/s"},
			want:       []string{"verdict", "capacity", "chart-latency", "chart-throughput", "chart-usl", "chart-timeline-rate", "chart-timeline-p99", "flame", "finding-1", "finding-2", "endpoints", "steps", "coverage", "ruled-out"},
			wantTexts:  []string{"Capacity 812 req/s, limited by db.missing-index", "Principal bottleneck", "CREATE INDEX CONCURRENTLY ON orders (customer_id);", "max_rps from 812 to 4100", "knee 700", "objective p99 500 ms", "USL peak", "OTEL_EXPORTER_OTLP_ENDPOINT", "mutex wait 0.1% of wall time", "CPU profile of step 8 at 900 req/s"},
			flameNames: []string{"main.parse", "runtime.mallocgc", "main.handler"},
		},
		{
			name:      "none found: unreliable USL",
			r:         noneFoundReport(),
			want:      []string{"verdict", "chart-latency", "chart-throughput"},
			absent:    []string{"chart-usl", "flame", "finding-1", "chart-timeline-rate"},
			wantTexts: []string{"No bottleneck below the maximum rate", "USL fit not drawn: it is not reliable (throughput never bent: nothing to fit)", "the objective held up to the maximum rate"},
		},
		{
			name:      "loadgen saturated",
			r:         loadgenReport(),
			want:      []string{"verdict", "finding-1"},
			absent:    []string{"chart-usl"},
			wantTexts: []string{"the load generator itself was the limit", "not measured", "Principal bottleneck"},
		},
		{
			name:      "partial",
			r:         partialReport(),
			want:      []string{"verdict", "finding-1", "notes"},
			wantTexts: []string{"this run did not complete", "Most important finding", "heap_bytes from 512000000 to 64000000", "start the target with net/http/pprof", "interrupted (Ctrl-C) during step 4"},
		},
		{
			name:   "empty report",
			r:      &Report{Schema: Schema},
			want:   []string{"verdict"},
			absent: []string{"chart-latency", "finding-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := render(t, tt.r, tt.opt)
			assertInert(t, page)
			ids := map[string]bool{}
			var body string
			var flameTitles []string
			walk(t, page, func(n *html.Node) {
				if id, ok := attr(n, "id"); ok {
					ids[id] = true
				}
				if n.Data == "body" {
					body = textOf(n)
				}
				if n.Data == "g" && n.FirstChild != nil && n.FirstChild.Data == "title" {
					flameTitles = append(flameTitles, textOf(n.FirstChild))
				}
			})
			for _, id := range tt.want {
				if !ids[id] {
					t.Errorf("no element #%s", id)
				}
			}
			for _, id := range tt.absent {
				if ids[id] {
					t.Errorf("unexpected element #%s", id)
				}
			}
			for _, s := range tt.wantTexts {
				if !strings.Contains(body, s) {
					t.Errorf("page text lacks %q", s)
				}
			}
			for _, f := range tt.r.Findings {
				if !strings.Contains(body, f.Title) {
					t.Errorf("finding %q not on the page", f.Title)
				}
			}
			for _, name := range tt.flameNames {
				found := false
				for _, title := range flameTitles {
					found = found || strings.HasPrefix(title, name+" — ")
				}
				if !found {
					t.Errorf("flame graph has no frame %s (frames: %q)", name, flameTitles)
				}
			}
			// The verdict comes before everything else in the body.
			if v := Verdict(tt.r); !strings.Contains(body, v) || strings.Index(body, v) > strings.Index(body, "Where the service bent") {
				t.Errorf("verdict %q is not first", v)
			}
		})
	}
}

func TestFlameGraph(t *testing.T) {
	fg := buildFlame(cpuProfile())
	if fg == nil {
		t.Fatal("no flame graph")
	}
	if fg.Total != "1000 ms" {
		t.Errorf("total %q, want 1000 ms of cpu", fg.Total)
	}
	// Self time: parse 60%, mallocgc 40%; handler has none of its own.
	if len(fg.Top) != 2 || fg.Top[0].Function != "main.parse" || fg.Top[0].SelfPct != "60.0%" || fg.Top[1].Function != "runtime.mallocgc" {
		t.Errorf("top = %+v", fg.Top)
	}
	// Root, serve, handler, then parse and mallocgc: five frames, four rows.
	if len(fg.Rects) != 5 || fg.H != f1(4*flameRowH) {
		t.Errorf("%d rects, height %s", len(fg.Rects), fg.H)
	}
	if buildFlame(nil) != nil || buildFlame(&profile.Profile{}) != nil {
		t.Error("a flame graph from nothing")
	}
}

func TestShortFrame(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"github.com/acme/shop/store.(*Store).Orders", 100, "github.com/acme/shop/store.(*Store).Orders"},
		{"github.com/acme/shop/store.(*Store).Orders", 25, "store.(*Store).Orders"},
		{"github.com/acme/shop/store.(*Store).Orders", 10, "store.(*S…"},
		{"main.f", 2, ""},
	} {
		got := tt.in
		if len([]rune(tt.in)) > tt.n {
			got = shortFrame(tt.in, tt.n)
		}
		if got != tt.want {
			t.Errorf("shortFrame(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestAxisTicks(t *testing.T) {
	for _, tt := range []struct {
		name string
		a    axis
		want string
	}{
		{"linear", axis{lo: 0, hi: 1000}, "0 200 400 600 800 1000"},
		{"log", axis{lo: 1, hi: 1000, log: true}, "1 2 5 10 20 50 100 200 500 1000"},
		{"log decades", axis{lo: 0.1, hi: 10000, log: true}, "0.1 1 10 100 1000 10k"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range tt.a.ticks() {
				got = append(got, tickLabel(v))
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("ticks %q, want %q", g, tt.want)
			}
		})
	}
}

func writeGz(t *testing.T, path string, p *profile.Profile) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
}

func TestLoadHTMLInputs(t *testing.T) {
	r := completeReport() // the first failing step (900 req/s) is step 8
	dir := t.TempDir()
	var tl bytes.Buffer
	for _, w := range timelineFor(r) {
		b, _ := json.Marshal(w)
		tl.Write(b)
		tl.WriteByte('\n')
	}
	tl.WriteString(`{"t": 17900`) // a killed run's torn last line
	if err := os.WriteFile(filepath.Join(dir, evidence.TimelineStream), tl.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	writeGz(t, filepath.Join(dir, "profiles", "cpu-8.pb.gz"), cpuProfile())
	writeGz(t, filepath.Join(dir, "profiles", "cpu-5.pb.gz"), cpuProfile("a.b", "c.d", "e.f", "g.h"))
	if err := os.WriteFile(filepath.Join(dir, "profiles", "cpu-7.pb.gz"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}

	opt, err := LoadHTMLInputs(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(opt.Timeline) != 5*len(r.Steps) {
		t.Errorf("%d windows, want %d", len(opt.Timeline), 5*len(r.Steps))
	}
	if opt.CPUProfile == nil || !strings.Contains(opt.ProfileLabel, "step 8 at 900 req/s") {
		t.Fatalf("profile %v, label %q: want step 8's", opt.CPUProfile != nil, opt.ProfileLabel)
	}

	// Without step 8's profile, the highest-rate step with one is taken,
	// and a damaged file on the way is a note, not an error.
	if err := os.Remove(filepath.Join(dir, "profiles", "cpu-8.pb.gz")); err != nil {
		t.Fatal(err)
	}
	opt, err = LoadHTMLInputs(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(opt.ProfileLabel, "step 5 ") {
		t.Errorf("label %q, want step 5 (1600 req/s)", opt.ProfileLabel)
	}
	if len(opt.Notes) != 0 {
		// step 7 (1000 req/s) is tried after step 5 (1600): its damage shows only if reached.
		t.Errorf("notes %q", opt.Notes)
	}
	if err := os.Remove(filepath.Join(dir, "profiles", "cpu-5.pb.gz")); err != nil {
		t.Fatal(err)
	}
	opt, err = LoadHTMLInputs(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if opt.CPUProfile != nil || len(opt.Notes) != 1 || !strings.Contains(opt.Notes[0], "step 7") {
		t.Errorf("profile %v, notes %q: want none and a note on step 7", opt.CPUProfile != nil, opt.Notes)
	}

	if _, err := LoadHTMLInputs(filepath.Join(dir, "missing"), r); err == nil {
		t.Error("no error for a missing directory")
	}
}

func TestDecodeTimelineMalformed(t *testing.T) {
	in := `{"t":1,"step":1}` + "\n" + `not json` + "\n" + `{"t":2,"step":1}` + "\n"
	got, err := decodeTimeline(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), ":2:") || len(got) != 1 {
		t.Fatalf("got %d records, err %v: want 1 and an error naming line 2", len(got), err)
	}
}

func TestDecodeProfileBounds(t *testing.T) {
	// A gzip bomb: a few kilobytes that expand beyond the limit.
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	chunk := make([]byte, 1<<20)
	for range maxProfileBytes>>20 + 1 {
		if _, err := zw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	zw.Close()
	if _, err := decodeProfile(&b); !errors.Is(err, profilesum.ErrTooLarge) {
		t.Fatalf("err = %v, want the size bound", err)
	}
}
