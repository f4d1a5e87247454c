package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/schemas"
)

// runCLI runs chokepoint in-process and returns its exit status and output.
func runCLI(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(ctx, args, Env{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func TestLoadCommand(t *testing.T) {
	var (
		mu   sync.Mutex
		auth []string
	)
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path == "/missing" {
			w.WriteHeader(404)
		}
		w.Write([]byte("ok"))
	}))
	dir := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := runCLI(context.Background(), "load", srv.URL+"/fast", srv.URL+"/missing",
		"--rate", "200", "--duration", "500ms", "-H", "Authorization: Bearer s3cr3t-t0ken",
		"--slo-p99", "10s", "--slo-errors", "1%", "--out", dir, "--format", "json")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if err := schemas.Validate(load.SummarySchema, []byte(stdout)); err != nil {
		t.Errorf("stdout does not match the schema: %v", err)
	}
	var sum load.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Requests != 100 || sum.Errors != 0 || sum.StatusCodes["404"] == 0 || len(sum.Thresholds) != 2 || sum.RunDir != dir {
		t.Errorf("summary %+v", sum)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) != 100 || auth[0] != "Bearer s3cr3t-t0ken" {
		t.Errorf("the header was not sent: %d requests, first %q", len(auth), auth[0])
	}

	// The run directory: manifest complete, load.json as printed, a
	// timeline and latency histograms; the header's value nowhere.
	d, err := run.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var m run.Manifest
	if err := d.ReadJSON(run.ManifestFile, &m); err != nil || m.Status != run.StatusComplete || m.Command != "load" {
		t.Errorf("manifest %+v, %v", m, err)
	}
	mb, _ := os.ReadFile(d.Join(run.ManifestFile))
	if err := schemas.Validate("manifest.v1.json", mb); err != nil {
		t.Errorf("manifest: %v", err)
	}
	lb, err := os.ReadFile(d.Join(load.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate(load.SummarySchema, lb); err != nil {
		t.Errorf("load.json: %v", err)
	}
	var windows int
	run.ReadLines(d.Join(run.TimelineFile), func(evidence.WindowRecord) error { windows++; return nil })
	if windows == 0 {
		t.Error("no timeline")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if bytes.Contains(b, []byte("s3cr3t")) {
			t.Errorf("%s holds the Authorization header's value", e.Name())
		}
		if e.Name() == run.LatencyFile && !bytes.Contains(b, []byte("Tag=GET%20/fast,")) {
			t.Errorf("latency.hlog has no histogram tagged GET /fast")
		}
	}
	if strings.Contains(stdout+stderr, "s3cr3t") {
		t.Error("the header's value was printed")
	}
}

func TestLoadTextOutput(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	code, stdout, stderr := runCLI(context.Background(), "load", srv.URL+"/x", "--concurrency", "2",
		"--duration", "200ms", "--out", filepath.Join(t.TempDir(), "r"))
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"closed 2 users", "latency", "service time", "GET /x", "run directory"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr on a non-terminal: %q", stderr)
	}
}

func TestLoadProgressOnTerminal(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"load", srv.URL, "--rate", "100", "--duration", "1500ms",
		"--out", filepath.Join(t.TempDir(), "r")}, Env{Stdout: &out, Stderr: &errb, Interactive: true})
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	line := errb.String()
	for _, want := range []string{"offered 100/s", "achieved", "p99", "errors 0", "left"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress %q lacks %q", line, want)
		}
	}
	if !strings.HasSuffix(line, "\r\033[K") {
		t.Errorf("progress line not cleared at the end: %q", line)
	}
}

func TestLoadExitStatus(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
	}))
	refused, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o644)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrequests:\n  - url: http://127.0.0.1:20000/\n    wieght: 3\n"), 0o644)

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // substring of stderr
	}{
		{"no schedule", []string{srv.URL}, ExitUsage, "one of --rate, --ramp, --steps or --concurrency"},
		{"two schedules", []string{srv.URL, "--rate", "10", "--concurrency", "2"}, ExitUsage, "--rate, --concurrency"},
		{"bad ramp", []string{srv.URL, "--ramp", "0-100/10s"}, ExitUsage, "--ramp"},
		{"bad rate", []string{srv.URL, "--rate", "fast"}, ExitUsage, "--rate"},
		{"bad steps", []string{srv.URL, "--steps", "1,2"}, ExitUsage, "--steps"},
		{"bad arrivals", []string{srv.URL, "--rate", "10", "--arrivals", "bursty"}, ExitUsage, "--arrivals"},
		{"bad slo-errors", []string{srv.URL, "--rate", "10", "--slo-errors", "lots"}, ExitUsage, "--slo-errors"},
		{"bad format", []string{srv.URL, "--rate", "10", "--format", "xml"}, ExitUsage, "--format"},
		{"abort without slo", []string{srv.URL, "--rate", "10", "--abort-on-slo"}, ExitUsage, "--abort-on-slo"},
		{"no target", []string{"--rate", "10"}, ExitUsage, "give the URLs"},
		{"bad url", []string{"ftp://x/", "--rate", "10"}, ExitUsage, "URL 1"},
		{"bad header", []string{srv.URL, "--rate", "10", "-H", "NoColon"}, ExitUsage, "--header"},
		{"bad scenario", []string{"-f", bad, "--rate", "10"}, ExitUsage, "bad.yaml:4"},
		{"unknown flag", []string{srv.URL, "--rate", "10", "--frobnicate"}, ExitUsage, "frobnicate"},
		{"out not empty", []string{srv.URL, "--rate", "10", "--out", full}, ExitUsage, "--out"},
		{"unreachable", []string{"http://" + refused + "/", "--rate", "10", "--duration", "200ms"}, ExitUnreachable, "unreachable"},
		{"p99 missed", []string{srv.URL, "--rate", "50", "--duration", "200ms", "--slo-p99", "1us"}, ExitThreshold, ""},
		{"errors missed", []string{srv.URL + "/fail", "--rate", "50", "--duration", "200ms", "--slo-errors", "1%"}, ExitThreshold, ""},
		{"errors met", []string{srv.URL + "/fail", "--rate", "50", "--duration", "200ms"}, ExitOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"load"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--out") {
				args = append(args, "--out", filepath.Join(t.TempDir(), "run"))
			}
			code, _, stderr := runCLI(context.Background(), args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.stderr)
			}
			if tc.code == ExitUsage && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("usage error on more than one line: %q", stderr)
			}
		})
	}
}

// TestLoadInterrupted: Ctrl-C (ctx cancelled) mid-run leaves a readable
// partial run and exits 130.
func TestLoadInterrupted(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-arrived
		cancel()
	}()
	dir := filepath.Join(t.TempDir(), "run")
	start := time.Now()
	code, stdout, stderr := runCLI(ctx, "load", srv.URL, "--rate", "100", "--duration", "1m", "--out", dir, "--format", "json")
	if code != ExitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitInterrupted, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to stop", d)
	}
	var sum load.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Status != "partial" {
		t.Errorf("summary status %q, %v", sum.Status, err)
	}
	d, _ := run.Open(dir)
	var m run.Manifest
	if err := d.ReadJSON(run.ManifestFile, &m); err != nil || m.Status != run.StatusPartial {
		t.Errorf("manifest status %q, %v", m.Status, err)
	}
	lb, err := os.ReadFile(d.Join(load.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate(load.SummarySchema, lb); err != nil {
		t.Error(err)
	}
	var windows int
	if err := run.ReadLines(d.Join(run.TimelineFile), func(evidence.WindowRecord) error { windows++; return nil }); err != nil || windows == 0 {
		t.Errorf("timeline: %d windows, %v", windows, err)
	}
}

func TestLoadAbortOnSLO(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
	}))
	start := time.Now()
	code, stdout, stderr := runCLI(context.Background(), "load", srv.URL, "--rate", "100", "--duration", "1m",
		"--slo-errors", "1%", "--abort-on-slo", "--abort-grace", "0s", "--format", "json",
		"--out", filepath.Join(t.TempDir(), "run"))
	if code != ExitThreshold {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitThreshold, stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("aborted only after %v", d)
	}
	var sum load.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Status != "aborted" {
		t.Errorf("summary status %q, %v", sum.Status, err)
	}
}

func TestParsePercent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{{"1%", 0.01, true}, {"0.5%", 0.005, true}, {"2", 0.02, true}, {"100%", 1, true}, {"101%", 0, false}, {"-1%", 0, false}, {"x", 0, false}} {
		got, err := parsePercent(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parsePercent(%q) = %v, %v", tc.in, got, err)
		}
	}
}
