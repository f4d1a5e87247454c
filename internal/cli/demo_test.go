package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/testpg"
)

func TestMain(m *testing.M) {
	// `chokepoint demo` re-executes its own binary as the zoo; in tests
	// that binary is this test binary.
	if os.Getenv(DemoChildEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := zoo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestDemo runs README's first command, shortened: a throwaway PostgreSQL,
// the zoo in a process of its own, a hunt, a report.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and hunts for seconds")
	}
	if err := testpg.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("PostgreSQL binaries missing: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "demo")
	code, stdout, stderr := runCLI(context.Background(), "demo", "--bottleneck", zoo.DBMissingIndex, "--max-duration", "15s", "--out", dir, "--format", "json")
	if code != ExitOK {
		t.Fatalf("demo exited %d: %s", code, stderr)
	}
	for _, want := range []string{"starting a throwaway PostgreSQL", "starting the zoo", "hunting"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr)
		}
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("demo printed no report: %v", err)
	}
	if rep.Status != run.StatusComplete || len(rep.Steps) == 0 {
		t.Errorf("report status %q with %d steps", rep.Status, len(rep.Steps))
	}
	covered := map[string]string{}
	for _, c := range rep.Coverage {
		covered[c.Source] = c.Status
	}
	for _, src := range []string{"loadgen", "proc", "pprof", "metrics", "postgres"} {
		if covered[src] != "ok" {
			t.Errorf("coverage of %s is %q: the demo should reach every probe (%+v)", src, covered[src], rep.Coverage)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, run.HTMLFile)); err != nil {
		t.Errorf("no report.html: %v", err)
	}
}
