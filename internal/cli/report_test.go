package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

func TestReportCommand(t *testing.T) {
	idx := report.Finding{Kind: "db.missing-index", Title: "Sequential scan of <orders>", Severity: report.SeverityCritical,
		Locus: report.Locus{Table: "orders"}, Recommendation: "CREATE INDEX ON orders (customer_id);"}
	dir := writeSyntheticHunt(t, 800, 40, idx)
	out := filepath.Join(t.TempDir(), "r.html")
	loadDir := filepath.Join(t.TempDir(), "load")
	if err := os.MkdirAll(loadDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(loadDir, "load.json"), []byte(`{"schema":"chokepoint.load/v1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, run.ReportFile), []byte(`{"schema": "chokepoint.report/v1", "steps": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"text", []string{"report", dir}, ExitOK, "Capacity 800 req/s; the objective broke at 1600 req/s", ""},
		{"markdown", []string{"report", dir, "--format", "markdown"}, ExitOK, "Sequential scan of &lt;orders&gt;", ""},
		{"json", []string{"report", dir, "--format", "json"}, ExitOK, `"schema": "chokepoint.report/v1"`, ""},
		{"html to stdout", []string{"report", dir, "--format", "html"}, ExitOK, "Sequential scan of &lt;orders&gt;", ""},
		{"html to a file", []string{"report", dir, "--format", "html", "--out", out}, ExitOK, "", ""},
		{"missing", []string{"report", filepath.Join(dir, "nope")}, ExitUsage, "", filepath.Join(dir, "nope")},
		{"a load run", []string{"report", loadDir}, ExitUsage, "", "a load run has no report"},
		{"broken report.json", []string{"report", broken}, ExitUsage, "", filepath.Join(broken, run.ReportFile)},
		{"bad format", []string{"report", dir, "--format", "pdf"}, ExitUsage, "", "--format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := chokepoint(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.code, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%.2000s", tt.stdout, stdout)
			}
			if !strings.Contains(stderr, tt.stderr) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("stderr %q, want one line with %q", stderr, tt.stderr)
			}
		})
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"Content-Security-Policy", "chart-timeline-p99", "Sequential scan of &lt;orders&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}
