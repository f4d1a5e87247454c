package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/report"
)

// foreignServer is a target in another language with no pprof and no
// metrics: Python's threading HTTP server, one thread per connection, where
// a semaphore lets only `workers` requests do their work (a fixed sleep,
// as a handler waiting on I/O would) at a time. Everything else queues on
// the semaphore: a concurrency limit of exactly `workers`.
const foreignServer = `
import sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

port, workers, service = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
slots = threading.BoundedSemaphore(workers)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY the
    # body waits for the client's delayed ACK (40 ms) on a kept-alive
    # connection.
    disable_nagle_algorithm = True

    def do_GET(self):
        if not self.path.startswith("/work"):
            self.send_error(404)
            return
        with slots:
            time.sleep(service)
        body = b'{"ok": true}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

srv = Server(("127.0.0.1", port), Handler)
print("ready", flush=True)
srv.serve_forever()
`

// Shape of the foreign target: 4 workers of 20 ms each serve at most
// 200 req/s, well within what the generator and Python's interpreter do on
// a shared 2-core machine (Python's own cost is about 1 ms per request).
const (
	foreignWorkers = 4
	foreignService = 20 * time.Millisecond
	// foreignReady bounds the interpreter's start.
	foreignReady = 20 * time.Second
	// foreignCapacitySlack: the measured capacity may exceed workers /
	// service time by this factor (one-second windows, refinement steps of
	// 5%) but no more: a target cannot serve beyond its limit.
	foreignCapacitySlack = 1.2
)

// TestForeignTargetConcurrencyLimit hunts a Python service with no pprof
// and no metrics endpoint: the diagnosis must come from client-side and
// /proc evidence alone (issue 6), and name the concurrency limit with its N.
func TestForeignTargetConcurrencyLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end hunts are not short; run without -short")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is needed for the foreign-target test in CI: %v", err)
		}
		t.Skipf("python3 not installed: %v", err)
	}
	machineLock(t)
	url := startForeign(t, py, foreignWorkers, foreignService)

	rep := hunt(t, []string{url + "/work?item=1", url + "/work?item=2"}, huntOpts{maxRate: 1000})
	t.Logf("limited_by %s; findings %s", rep.Capacity.LimitedBy, kinds(rep.Findings))
	for _, c := range rep.Coverage {
		switch c.Source {
		case "pprof", "metrics":
			if c.Status == "ok" {
				t.Errorf("coverage %s is %s (%s): the foreign target has none", c.Source, c.Status, c.Detail)
			}
		case "proc":
			if c.Status != "ok" {
				t.Errorf("coverage proc is %s (%s): the target's process should be found by its port", c.Status, c.Detail)
			}
		}
	}
	if len(rep.Findings) == 0 {
		t.Fatalf("no finding (limited_by %s); ruled out: %v", rep.Capacity.LimitedBy, rep.RuledOut)
	}
	f := rep.Findings[0]
	if f.Kind != "concurrency.limit" {
		t.Fatalf("first finding %s (%s), want concurrency.limit; ruled out: %v", f.Kind, f.Title, rep.RuledOut)
	}
	if ok, why := locusMatches(report.Locus{Resource: "concurrency", Limit: foreignWorkers}, f.Locus); !ok {
		t.Errorf("locus: %s (title %q)", why, f.Title)
	}
	if f.Locus.Function != "" {
		t.Errorf("locus.function %q without any profile", f.Locus.Function)
	}
	if rep.Capacity.LimitedBy != "concurrency.limit" {
		t.Errorf("limited_by %s, want concurrency.limit", rep.Capacity.LimitedBy)
	}
	for _, e := range f.Evidence {
		if e.Source == "pprof" || e.Source == "metrics" {
			t.Errorf("evidence from %s without that source: %+v", e.Source, e)
		}
	}
	// Capacity is about workers / service time; allow for Python's own cost
	// and a loaded machine, but a capacity far off would mean the hunt
	// measured something else.
	if mx := rep.Capacity.MaxRPS; mx != nil {
		limit := float64(foreignWorkers) / foreignService.Seconds()
		if *mx > foreignCapacitySlack*limit {
			t.Errorf("max_rps %.0f above the target's %.0f req/s limit", *mx, limit)
		}
	}
}

// startForeign runs the Python server on a low port and returns its base
// URL; it is stopped when the test ends.
func startForeign(t *testing.T, py string, workers int, service time.Duration) string {
	t.Helper()
	addr, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "server.py")
	if err := os.WriteFile(script, []byte(foreignServer), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, py, "-u", script, port, fmt.Sprint(workers), fmt.Sprint(service.Seconds()))
	stderr := &lockedWriter{w: new(bytes.Buffer)}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start python: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "ready" {
				ready <- nil
				return
			}
		}
		ready <- fmt.Errorf("python exited before it was ready: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\n%s", err, stderrText(stderr))
		}
	case <-time.After(foreignReady):
		t.Fatalf("python server not ready after %v\n%s", foreignReady, stderrText(stderr))
	}
	return "http://" + addr
}

func stderrText(l *lockedWriter) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
