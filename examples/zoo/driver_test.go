package zoo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// loadResult is what a bounded closed-loop run measured.
type loadResult struct {
	requests int
	errors   int // transport errors and 5xx
	client   int // 4xx: a bug in the test or the zoo
	rps      float64
	goodRPS  float64 // successful responses per second
	p50, p99 time.Duration
}

func (r loadResult) errorRate() float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.errors) / float64(r.requests)
}

func (r loadResult) String() string {
	return fmt.Sprintf("%.0f req/s (good %.0f), p50 %v, p99 %v, %d requests, %.1f%% errors",
		r.rps, r.goodRPS, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.requests, 100*r.errorRate())
}

// requestTimeout bounds one request of the driver.
const requestTimeout = 2 * time.Second

// drive runs conc closed-loop workers over urls (round robin) for warm,
// then measures for dur. Bounded in time; only 127.0.0.1 targets.
func drive(t *testing.T, urls []string, conc int, warm, dur time.Duration) loadResult {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxIdleConns: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: requestTimeout}
	ctx, cancel := context.WithTimeout(t.Context(), warm+dur+requestTimeout)
	defer cancel()
	start := time.Now()
	measureFrom, end := start.Add(warm), start.Add(warm+dur)

	type workerResult struct {
		lat          []time.Duration
		errs, client int
	}
	results := make([]workerResult, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[w]
			for i := w; ; i++ {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				code, err := get(ctx, client, urls[i%len(urls)])
				if t0.Before(measureFrom) {
					continue
				}
				res.lat = append(res.lat, time.Since(t0))
				switch {
				case err != nil || code >= 500:
					res.errs++
				case code >= 400:
					res.client++
				}
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	var out loadResult
	for _, r := range results {
		all = append(all, r.lat...)
		out.errors += r.errs
		out.client += r.client
	}
	out.requests = len(all)
	elapsed := time.Since(measureFrom).Seconds()
	out.rps = float64(out.requests) / elapsed
	out.goodRPS = float64(out.requests-out.errors-out.client) / elapsed
	if len(all) > 0 {
		slices.Sort(all)
		out.p50 = all[len(all)/2]
		out.p99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return out
}

func get(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
