package compare

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/chokepoint/chokepoint/internal/run"
)

// FuzzReadRun: whatever a run directory holds (report.json or load.json,
// timeline.jsonl), reading it either fails with an error or gives a run
// that compares and renders without panicking.
func FuzzReadRun(f *testing.F) {
	f.Add([]byte(`{"schema":"chokepoint.report/v1","status":"complete","capacity":{"max_rps":800,"first_failing_rps":900}}`),
		[]byte(`{"t":1,"step":1,"offered_rps":100,"endpoints":[{"name":"GET /","requests":5,"latency_ms":{"p50":1,"p99":2}}]}`+"\n"), false)
	f.Add([]byte(`{"schema":"chokepoint.load/v1","model":"open","offered_rps":-1,"endpoints":[{"name":"","requests":-5}]}`),
		[]byte(`{"t":1,"offered_rps":null}`+"\n"+`{"t":`), true)
	f.Add([]byte(`{"schema":"chokepoint.report/v1","capacity":{"max_rps":0,"first_failing_rps":-3},"findings":[{"kind":"x","locus":{"columns":["b","a"]}},{"kind":"x","locus":{"columns":["a","b"]}}]}`),
		[]byte("{}\n{}\n"), false)
	f.Fuzz(func(t *testing.T, doc, timeline []byte, isLoad bool) {
		dir := t.TempDir()
		name := run.ReportFile
		if isLoad {
			name = LoadFile
		}
		if err := os.WriteFile(filepath.Join(dir, name), doc, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, run.TimelineFile), timeline, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := ReadRun(t.Context(), dir)
		if err != nil {
			return
		}
		for _, pair := range [][2]*Run{{r, r}, {r, &Run{Dir: "empty", Kind: KindLoad, Load: &LoadSummary{}}}} {
			res := Compare(pair[0], pair[1], Options{})
			for _, w := range []func(io.Writer, *Result) error{WriteText, WriteMarkdown, WriteJSON} {
				if err := w(io.Discard, res); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
