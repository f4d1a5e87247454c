package hunt

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/capacity"
	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/scenario"
)

// A target that serves slots requests at a time, each taking work: its
// capacity is slots/work requests per second, whatever the load.
func limitedTarget(t *testing.T, slots int, work time.Duration) string {
	t.Helper()
	sem := make(chan struct{}, slots)
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		time.Sleep(work) // the service's work, not synchronisation
		<-sem
		w.Write([]byte("ok"))
	}))
	return srv.URL + "/work"
}

func huntConfig(t *testing.T, url string, progress func(Progress)) Config {
	t.Helper()
	src, err := scenario.FromURLs([]string{url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Load: load.Config{Source: src, Timeout: 5 * time.Second},
		Search: capacity.SearchConfig{
			SLOP99: 100 * time.Millisecond, SLOErrorRate: 0.01,
			StartRPS: 20, MaxRPS: 1000, MaxDuration: 30 * time.Second,
			MinStep: time.Second, MaxStep: 2 * time.Second,
		},
		URLs:     []string{url},
		Dir:      dir,
		Progress: progress,
	}
}

func TestHuntFindsTheCapacityOfALimitedTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("a hunt takes seconds")
	}
	const slots, work = 2, 10 * time.Millisecond // 200 req/s at most
	url := limitedTarget(t, slots, work)
	// When a step begins, the report on disk lists the measured step
	// before it: a hunt cut short by anything still leaves a report of what
	// it measured. (Warm-up and back-off steps are not listed.)
	var mu sync.Mutex
	var cfg Config
	lastStep, checked, behind := -1, 0, 0
	var lastPhase capacity.Phase
	cfg = huntConfig(t, url, func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Step == lastStep {
			return
		}
		if lastPhase == capacity.PhaseProbe || lastPhase == capacity.PhaseRefine {
			checked++
			var rep report.Report
			if err := cfg.Dir.ReadJSON(run.ReportFile, &rep); err != nil ||
				!slices.ContainsFunc(rep.Steps, func(s report.Step) bool { return s.Index == lastStep }) {
				behind++
			}
		}
		lastStep, lastPhase = p.Step, p.Phase
	})
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != run.StatusComplete || rep.Capacity.MaxRPS == nil {
		t.Fatalf("status %q, capacity %+v", rep.Status, rep.Capacity)
	}
	limit := float64(slots) / work.Seconds()
	t.Logf("capacity %.0f req/s (target's limit %.0f), limited_by %s", *rep.Capacity.MaxRPS, limit, rep.Capacity.LimitedBy)
	if got := *rep.Capacity.MaxRPS; got < limit/3 || got > limit*1.1 {
		t.Errorf("capacity %.0f req/s; the target serves at most %.0f", got, limit)
	}
	if rep.Capacity.LimitedBy == report.LimitedNoneFound || rep.Capacity.LimitedBy == "loadgen.saturated" {
		t.Errorf("limited_by %q: the target's limit is well below the generator's", rep.Capacity.LimitedBy)
	}
	mu.Lock()
	if checked < 2 || behind > 0 {
		t.Errorf("%d measured steps checked; report.json lagged behind a finished step %d times", checked, behind)
	}
	mu.Unlock()
	var onDisk report.Report
	if err := cfg.Dir.ReadJSON(run.ReportFile, &onDisk); err != nil || len(onDisk.Steps) != len(rep.Steps) || onDisk.Status != rep.Status {
		t.Errorf("report.json on disk: %d steps, status %q (%v); returned %d, %q", len(onDisk.Steps), onDisk.Status, err, len(rep.Steps), rep.Status)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir.Path(), run.HTMLFile)); err != nil {
		t.Errorf("report.html: %v", err)
	}
}

func TestHuntUnreachableTarget(t *testing.T) {
	addr, err := lowport.Addr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	cfg := huntConfig(t, "http://"+addr+"/", nil)
	cfg.Search.MaxDuration = 10 * time.Second
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v, want ErrUnreachable", err)
	}
	// The report still says what was tried: the requests, all failed.
	if rep == nil || len(rep.Endpoints) != 1 || rep.Endpoints[0].Requests == 0 || rep.Endpoints[0].ErrorRate != 1 {
		t.Errorf("no report of the attempt: %+v", rep)
	}
}
