package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/schemas"
)

// shortHunt are flags that keep a hunt to seconds: short steps, probes off
// where they would reach outside the test.
var shortHunt = []string{"--min-step", "1s", "--max-step", "2s", "--otlp-listen", "off", "--otlp-grpc-listen", "off"}

func TestHuntHealthyTargetReachesMaxRate(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	dir := filepath.Join(t.TempDir(), "run")
	args := append([]string{"hunt", srv.URL + "/ok", "--max-rate", "80", "--max-duration", "40s", "--out", dir, "--format", "json",
		"-H", "Authorization: Bearer hunt-s3cr3t", "--postgres", "postgres://u:pg-s3cr3t@127.0.0.1:1/db"}, shortHunt...)
	code, stdout, stderr := runCLI(context.Background(), args...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if err := schemas.Validate("report.v1.json", []byte(stdout)); err != nil {
		t.Errorf("stdout is not a valid report: %v", err)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Capacity.LimitedBy != report.LimitedNoneFound || rep.Status != run.StatusComplete {
		t.Errorf("limited_by %q status %q, want none-found complete", rep.Capacity.LimitedBy, rep.Status)
	}
	for _, f := range rep.Findings {
		if f.Severity == report.SeverityCritical || f.Severity == report.SeverityMajor {
			t.Errorf("healthy target has a %s finding: %s", f.Severity, f.Title)
		}
	}
	if len(rep.Steps) == 0 || rep.Capacity.MaxRPS == nil || *rep.Capacity.MaxRPS < 40 {
		t.Errorf("steps %d, max_rps %v", len(rep.Steps), rep.Capacity.MaxRPS)
	}
	// The run directory holds the contract's files, and no secret.
	for _, f := range []string{run.ManifestFile, run.ReportFile, run.HTMLFile, run.TimelineFile, run.LatencyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("run directory: %v", err)
		}
	}
	var m run.Manifest
	if b, err := os.ReadFile(filepath.Join(dir, run.ManifestFile)); err != nil || json.Unmarshal(b, &m) != nil || m.Status != run.StatusComplete {
		t.Errorf("manifest %+v (%v)", m, err)
	}
	assertNoSecret(t, dir, stdout+stderr, "hunt-s3cr3t", "pg-s3cr3t")
}

// assertNoSecret fails when a secret appears in any file of dir or in out.
func assertNoSecret(t *testing.T, dir, out string, secrets ...string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains the secret %q", p, s)
			}
		}
		return nil
	})
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("output contains the secret %q", s)
		}
	}
}

func TestHuntInterruptedKeepsPartialRun(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		w.Write([]byte("ok"))
	}))
	dir := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started // the first request arrived: the hunt is under way
		time.AfterFunc(1500*time.Millisecond, cancel)
	}()
	args := append([]string{"hunt", srv.URL + "/", "--max-rate", "1000", "--out", dir, "--format", "json"}, shortHunt...)
	code, stdout, stderr := runCLI(ctx, args...)
	if code != ExitInterrupted {
		t.Fatalf("exit %d, want %d: %s", code, ExitInterrupted, stderr)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("no report printed: %v", err)
	}
	d, err := run.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk report.Report
	if err := d.ReadJSON(run.ReportFile, &onDisk); err != nil {
		t.Fatal(err)
	}
	var m run.Manifest
	if err := d.ReadJSON(run.ManifestFile, &m); err != nil {
		t.Fatal(err)
	}
	if onDisk.Status != run.StatusPartial || m.Status != run.StatusPartial {
		t.Errorf("status: report %q manifest %q, want partial", onDisk.Status, m.Status)
	}
	if onDisk.Capacity.LimitedBy != report.LimitedNotReached {
		t.Errorf("limited_by %q, want not-reached", onDisk.Capacity.LimitedBy)
	}
}

func TestHuntUsageErrors(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no target", []string{"hunt"}, ExitUsage, "give the URLs"},
		{"remote without max-rate", []string{"hunt", "http://192.0.2.1/x"}, ExitUsage, "--max-rate"},
		{"bad format", []string{"hunt", srv.URL, "--format", "xml"}, ExitUsage, "--format"},
		{"bad slo", []string{"hunt", srv.URL, "--slo-errors", "200%"}, ExitUsage, "--slo-errors"},
		{"out not empty", []string{"hunt", srv.URL, "--out", full}, ExitUsage, "--out"},
		{"unreachable", []string{"hunt", "http://127.0.0.1:1/"}, ExitUnreachable, "unreachable"},
		{"bad scenario file", []string{"hunt", "-f", filepath.Join(full, "missing.yaml")}, ExitUsage, "missing.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(context.Background(), tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 {
				t.Errorf("error is %d lines, want one: %q", n+1, stderr)
			}
		})
	}
}

func TestHuntDryRunSendsNothing(t *testing.T) {
	var hits atomic.Int64
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/orders" {
			hits.Add(1)
		}
		w.WriteHeader(404)
	}))
	code, stdout, stderr := runCLI(context.Background(), "hunt", srv.URL+"/orders", "--dry-run", "--max-rate", "500")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"dry run", "GET /orders", "500 req/s", "probe pprof"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, stdout)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("dry run sent %d requests to the target", n)
	}
}

// TestHuntRunDirectoryMatchesSchemas validates the records a real hunt
// writes: every timeline line and the manifest.
func TestHuntRunDirectoryMatchesSchemas(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		w.Write([]byte("ok"))
	}))
	dir := filepath.Join(t.TempDir(), "run")
	args := append([]string{"hunt", srv.URL + "/ok", srv.URL + "/fail", "--max-rate", "40", "--max-duration", "20s", "--slo-errors", "60%", "--out", dir}, shortHunt...)
	if code, _, stderr := runCLI(context.Background(), args...); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, run.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate("manifest.v1.json", b); err != nil {
		t.Errorf("manifest: %v", err)
	}
	tl, err := os.ReadFile(filepath.Join(dir, run.TimelineFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(tl)), "\n")
	if len(lines) < 3 {
		t.Fatalf("timeline has %d lines", len(lines))
	}
	for i, l := range lines {
		if err := schemas.Validate("timeline.v1.json", []byte(l)); err != nil {
			t.Fatalf("timeline line %d: %v", i+1, err)
		}
	}
	if !strings.Contains(string(tl), `"5xx"`) {
		t.Error("the timeline does not classify the 500s")
	}
}
