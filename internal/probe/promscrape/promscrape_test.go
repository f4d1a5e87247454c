package promscrape

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/run"
)

// exposition is what a client_golang service with a pgx pool and an HTTP
// middleware exposes (abridged), plus families that are not kept.
const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1e-05
go_gc_duration_seconds{quantile="1"} NaN
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 17
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# TYPE pgxpool_acquire_count counter
pgxpool_acquire_count{db="shop"} 1000
# TYPE pgxpool_acquired_conns gauge
pgxpool_acquired_conns{db="shop"} 10
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/orders",le="0.1"} 90
http_request_duration_seconds_bucket{route="/orders",le="+Inf"} 100
http_request_duration_seconds_sum{route="/orders"} 7.5
http_request_duration_seconds_count{route="/orders"} 100
# TYPE app_widgets_total counter
app_widgets_total 5
# TYPE app_queue_depth gauge
app_queue_depth{queue="mail"} 3
`

func TestParseText(t *testing.T) {
	fams, format, err := Parse(strings.NewReader(exposition), "text/plain; version=0.0.4; charset=utf-8")
	if err != nil {
		t.Fatal(err)
	}
	if format != FormatText || len(fams) != 8 {
		t.Fatalf("format %q, %d families", format, len(fams))
	}
	var all []evidence.MetricSample
	dropped := 0
	for _, mf := range fams {
		ss, d := flatten(mf)
		dropped += d
		for _, s := range ss {
			all = append(all, s.MetricSample)
		}
	}
	if dropped != 1 {
		t.Errorf("dropped %d, want 1 (the NaN quantile)", dropped)
	}
	want := map[string]float64{
		"go_goroutines":                42,
		"go_gc_duration_seconds_count": 17,
		"http_request_duration_seconds_bucket\xffle=+Inf\xffroute=/orders": 100,
		"pgxpool_acquire_count\xffdb=shop":                                 1000,
	}
	got := map[string]float64{}
	for _, s := range all {
		got[seriesKey(s)] = s.Value
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%q = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestOpenMetrics(t *testing.T) {
	om := "# TYPE foo counter\n# HELP foo Foo.\n" +
		"foo_total{a=\"b c\",d=\"{x}\"} 17.0 # {trace_id=\"x\"} 1.0 1520879607.789\n" +
		"foo_created{a=\"b c\",d=\"{x}\"} 1520872607.123\n" +
		"# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_count 3 1520879607\nh_sum 4\nh_created 1520872607\n" +
		"# TYPE build info\nbuild_info{version=\"1.2\"} 1\n" +
		"# TYPE g gauge\n# UNIT g seconds\ng 2.5\n# EOF\nignored 1\n"
	fams, format, err := Parse(strings.NewReader(om), "application/openmetrics-text; version=1.0.0; charset=utf-8")
	if err != nil {
		t.Fatalf("%v\n%s", err, OpenMetricsToText([]byte(om)))
	}
	if format != FormatOpenMetrics {
		t.Errorf("format = %q", format)
	}
	names := map[string]string{}
	for _, mf := range fams {
		names[mf.GetName()] = mf.GetType().String()
	}
	want := map[string]string{"foo_total": "COUNTER", "h": "HISTOGRAM", "build_info": "UNTYPED", "g": "GAUGE"}
	if len(names) != len(want) {
		t.Errorf("families %v, want %v", names, want)
	}
	for n, typ := range want {
		if names[n] != typ {
			t.Errorf("family %s: %q, want %q", n, names[n], typ)
		}
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		name          string
		prev, cur, dt float64
		want          float64
		ok            bool
	}{
		{"steady", 100, 350, 1, 250, true},
		{"half second", 100, 200, 0.5, 200, true},
		{"reset", 1000, 30, 1, 30, true},
		{"unchanged", 5, 5, 1, 0, true},
		{"no time", 1, 2, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rate(tt.prev, tt.cur, tt.dt)
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("rate = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestKeep(t *testing.T) {
	p, err := New(Config{URL: "http://127.0.0.1:20000/metrics", Keep: []string{"app_queue_*", "exact_one"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"go_goroutines": true, "process_open_fds": true, "pgxpool_acquire_count": true,
		"go_sql_wait_count_total": true, "hikaricp_connections_pending": true, "db_client_connections_usage": true,
		"http_requests_total": true, "myapp_http_request_duration_seconds": true, "grpc_server_handled_total": true,
		"app_queue_depth": true, "exact_one": true, "exact_one_more": false, "app_widgets_total": false,
		"node_cpu_seconds_total": false,
	} {
		if got := p.keepFamily(name); got != want {
			t.Errorf("keep %s = %v, want %v", name, got, want)
		}
	}
}

// metricsServer serves the exposition plus a counter that grows by exactly
// perSecond per second of wall time and one that counts requests to /work.
type metricsServer struct {
	url   string
	start time.Time
	work  atomic.Int64
	// failAfter > 0: scrapes after that many answer 503.
	failAfter int64
	scrapes   atomic.Int64
}

const perSecond = 250.0

func newMetricsServer(t *testing.T, contentType string, failAfter int64) *metricsServer {
	t.Helper()
	ms := &metricsServer{start: time.Now(), failAfter: failAfter}
	mux := http.NewServeMux()
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) { ms.work.Add(1) })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if n := ms.scrapes.Add(1); ms.failAfter > 0 && n > ms.failAfter {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", contentType)
		fmt.Fprint(w, exposition)
		fmt.Fprintf(w, "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} %g\n", perSecond*time.Since(ms.start).Seconds())
		fmt.Fprintf(w, "# TYPE http_server_work_total counter\nhttp_server_work_total %d\n", ms.work.Load())
	})
	ms.url = lowport.NewServer(t, mux).URL
	return ms
}

func runProbe(t *testing.T, p *Probe, d time.Duration, during func(ctx context.Context)) ([]evidence.MetricsRecord, error) {
	t.Helper()
	dir, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, dir) }()
	if during != nil {
		during(ctx)
	}
	runErr := <-done
	var recs []evidence.MetricsRecord
	if err := run.ReadLines(dir.Join(evidence.MetricsStream), func(r evidence.MetricsRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs, runErr
}

func find(rec evidence.MetricsRecord, name string) (evidence.MetricSample, bool) {
	for _, s := range rec.Samples {
		if s.Name == name {
			return s, true
		}
	}
	return evidence.MetricSample{}, false
}

// TestScrapeRates scrapes a real endpoint five times a second and checks the
// counter rates: a time-driven counter rates at its known speed, and a
// request-driven counter's rates add up to the requests sent.
func TestScrapeRates(t *testing.T) {
	for _, ct := range []string{"text/plain; version=0.0.4; charset=utf-8", "application/openmetrics-text; version=1.0.0; charset=utf-8"} {
		t.Run(ct, func(t *testing.T) {
			ms := newMetricsServer(t, ct, 0)
			p, err := New(Config{URL: ms.url + "/metrics", Interval: 200 * time.Millisecond, Keep: []string{"app_queue_*"}})
			if err != nil {
				t.Fatal(err)
			}
			recs, err := runProbe(t, p, 1300*time.Millisecond, func(ctx context.Context) {
				client := &http.Client{Transport: &http.Transport{Proxy: nil}}
				for i := 0; i < 300 && ctx.Err() == nil; i++ {
					if resp, err := client.Get(ms.url + "/work"); err == nil {
						resp.Body.Close()
					}
					time.Sleep(2 * time.Millisecond) // pacing the load, not synchronising
				}
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(recs) < 4 {
				t.Fatalf("%d scrapes in 1.3 s at 5/s", len(recs))
			}
			var workSum, workFirst, workLast float64
			for i, r := range recs {
				if r.Error != "" || r.T == 0 || r.Families != 10 || r.Dropped != 1 {
					t.Errorf("scrape %d: %+v", i, r)
				}
				if _, ok := find(r, "app_widgets_total"); ok {
					t.Error("app_widgets_total kept without being asked for")
				}
				if _, ok := find(r, "app_queue_depth"); !ok {
					t.Error("app_queue_depth (Keep) missing")
				}
				c, ok := find(r, "http_requests_total")
				if !ok {
					t.Fatalf("scrape %d: no http_requests_total", i)
				}
				w, _ := find(r, "http_server_work_total")
				if i == 0 {
					if c.Rate != nil {
						t.Error("rate on the first scrape")
					}
					workFirst = w.Value
					continue
				}
				// Each rate uses the scrape's start time, as Prometheus does, so
				// request latency jitters single rates on a loaded machine.
				if c.Rate == nil || math.Abs(*c.Rate-perSecond)/perSecond > 0.25 {
					t.Errorf("scrape %d: rate %v, want %v ±25%%", i, c.Rate, perSecond)
				}
				if w.Rate == nil {
					t.Fatalf("scrape %d: no rate for the work counter", i)
				}
				dt := float64(r.T-recs[i-1].T) / 1000
				workSum += *w.Rate * dt
				workLast = w.Value
				if g, ok := find(r, "go_gc_duration_seconds_count"); !ok || g.Rate == nil || *g.Rate != 0 {
					t.Errorf("summary count = %+v", g)
				}
			}
			// Over the whole run the jitter averages out.
			c0, _ := find(recs[0], "http_requests_total")
			cN, _ := find(recs[len(recs)-1], "http_requests_total")
			if overall := (cN.Value - c0.Value) / (float64(recs[len(recs)-1].T-recs[0].T) / 1000); math.Abs(overall-perSecond)/perSecond > 0.05 {
				t.Errorf("overall rate %.1f, want %v ±5%%", overall, perSecond)
			}
			// The scrape times recorded are in ms, the rates use exact times:
			// the integral of the rates matches the counter within rounding.
			if inc := workLast - workFirst; inc < 10 || math.Abs(workSum-inc) > 0.02*inc+1 {
				t.Errorf("work counter: rates integrate to %.1f, counter rose %.0f", workSum, inc)
			}
			if c := p.Coverage(); c.Status != probe.StatusOK || !strings.Contains(c.Detail, "scrapes") {
				t.Errorf("coverage %+v", c)
			}
		})
	}
}

func TestDegrades(t *testing.T) {
	t.Run("no endpoint", func(t *testing.T) {
		srv := lowport.NewServer(t, http.NotFoundHandler())
		p, err := New(Config{URL: srv.URL + "/metrics", Interval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		recs, err := runProbe(t, p, time.Second, nil)
		if err == nil || len(recs) != 0 {
			t.Fatalf("Run = %v with %d records, want an error and none", err, len(recs))
		}
		if c := p.Coverage(); c.Status != probe.StatusUnavailable || !strings.Contains(c.Detail, "--metrics") {
			t.Errorf("coverage %+v", c)
		}
	})
	t.Run("fails mid-run", func(t *testing.T) {
		ms := newMetricsServer(t, "text/plain", 2)
		p, err := New(Config{URL: ms.url + "/metrics", Interval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		recs, err := runProbe(t, p, 550*time.Millisecond, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		bad := 0
		for _, r := range recs {
			if r.Error != "" {
				bad++
				if !strings.Contains(r.Error, "503") || len(r.Samples) != 0 {
					t.Errorf("error record %+v", r)
				}
			}
		}
		if bad == 0 || bad == len(recs) {
			t.Errorf("%d of %d scrapes failed, want some", bad, len(recs))
		}
		if c := p.Coverage(); c.Status != probe.StatusOK || !strings.Contains(c.Detail, "failed") {
			t.Errorf("coverage %+v", c)
		}
	})
	t.Run("too large", func(t *testing.T) {
		ms := newMetricsServer(t, "text/plain", 0)
		p, err := New(Config{URL: ms.url + "/metrics", MaxBytes: 100})
		if err != nil {
			t.Fatal(err)
		}
		if r := p.Scrape(context.Background()); !strings.Contains(r.Error, "over 100 bytes") {
			t.Errorf("record %+v", r)
		}
	})
}
