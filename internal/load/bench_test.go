package load

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// BenchmarkCollect measures closing a window: the cost paid once a second.
func BenchmarkCollect(b *testing.B) {
	r := newRecorder([]string{"a", "b", "c"}, 2)
	w := r.newWindow()
	res := newResult(r.names[:3])
	o := outcome{intended: 0, sent: time.Microsecond, done: 300 * time.Microsecond, status: 200}
	for b.Loop() {
		for i := range 3000 {
			o.endpoint = i % 3
			o.done = time.Duration(100+i) * time.Microsecond
			r.record(i, &o)
		}
		r.collect(w)
		res.addWindow(w)
	}
}

// BenchmarkRecord measures recording one request.
func BenchmarkRecord(b *testing.B) {
	r := newRecorder([]string{"a"}, 2)
	o := outcome{sent: time.Microsecond, done: 300 * time.Microsecond, status: 200}
	for b.Loop() {
		r.record(0, &o)
	}
}

// benchTarget is the server the engine benchmarks load: $CHOKEPOINT_BENCH_URL
// (a server in another process, pinned apart, as bench/load/run.sh runs),
// else one in this process.
func benchTarget(b *testing.B) string {
	if u := os.Getenv("CHOKEPOINT_BENCH_URL"); u != "" {
		return u
	}
	return lowport.NewServer(b, http.HandlerFunc(okHandler)).URL + "/"
}

// BenchmarkClosedLoop reports the generator's CPU per request with 50
// users, for the built-in HTTP/1.1 client and net/http's.
func BenchmarkClosedLoop(b *testing.B) {
	target := benchTarget(b)
	for _, nethttp := range []bool{false, true} {
		name := "builtin"
		if nethttp {
			name = "nethttp"
		}
		b.Run(name, func(b *testing.B) {
			e := newEngine(b, Config{Source: urls(b, target), NetHTTP: nethttp})
			b.ResetTimer()
			res, err := e.Run(context.Background(), Closed(50), Bound{Duration: time.Hour, MaxRequests: int64(b.N)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors() > 0 {
				b.Fatalf("errors: %v", res.Total().ErrorsByClass())
			}
			b.ReportMetric(res.CPUSeconds*1e6/float64(res.Requests()), "cpu-µs/req")
		})
	}
}

// BenchmarkOpen10k reports the generator's CPU per request at 10,000
// requests/s (b.N requests).
func BenchmarkOpen10k(b *testing.B) {
	target := benchTarget(b)
	e := newEngine(b, Config{Source: urls(b, target)})
	b.ResetTimer()
	d := time.Duration(b.N) * time.Second / 10000
	res, err := e.Run(context.Background(), Constant(10000), Bound{Duration: d + time.Millisecond, MaxRequests: int64(b.N)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.CPUSeconds*1e6/float64(max(res.Requests(), 1)), "cpu-µs/req")
	b.ReportMetric(float64(res.Late), "late")
}
