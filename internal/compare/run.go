package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

// Kinds of run directory.
const (
	KindHunt = "hunt" // has report.json
	KindLoad = "load" // has load.json
)

// LoadFile is a load run's summary in its run directory (internal/load
// writes it; compare reads only the fields below, so that it does not
// depend on the engine).
const LoadFile = "load.json"

// Bounds on what a run directory may make compare read.
const (
	// maxDocBytes bounds manifest.json and load.json (kilobytes in practice).
	maxDocBytes = 16 << 20
	// maxWindows bounds the timeline records read per run: a day of
	// one-second windows.
	maxWindows = 86400
)

// ErrNotRun is wrapped when a directory holds neither report.json nor load.json.
var ErrNotRun = errors.New("not a run directory")

// Run is one run directory as compare reads it.
type Run struct {
	Dir      string
	Kind     string         // KindHunt or KindLoad
	Manifest *run.Manifest  // nil when the directory has none
	Report   *report.Report // hunts
	Load     *LoadSummary   // load runs
	Timeline []evidence.WindowRecord
	// TimelineNote says why the timeline is incomplete ("" when it is not).
	TimelineNote string
}

// LoadSummary is the part of load.json (chokepoint.load/v1) compare uses.
type LoadSummary struct {
	Schema      string         `json:"schema"`
	Status      string         `json:"status"`
	Model       string         `json:"model"` // open | closed
	Schedule    string         `json:"schedule"`
	Concurrency int            `json:"concurrency"`
	StartMS     int64          `json:"start_ms"`
	Requests    int64          `json:"requests"`
	OfferedRPS  *float64       `json:"offered_rps"`
	AchievedRPS float64        `json:"achieved_rps"`
	ErrorRate   float64        `json:"error_rate"`
	LatencyMS   LoadLatency    `json:"latency_ms"`
	Endpoints   []LoadEndpoint `json:"endpoints"`
}

// LoadLatency holds load.json's percentiles in milliseconds.
type LoadLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// LoadEndpoint is one endpoint of load.json.
type LoadEndpoint struct {
	Name      string      `json:"name"`
	Requests  int64       `json:"requests"`
	Errors    int64       `json:"errors"`
	LatencyMS LoadLatency `json:"latency_ms"`
}

// loadSchema identifies load.json.
const loadSchema = "chokepoint.load/v1"

// ReadRun reads the run directory at path: manifest.json when present,
// report.json (a hunt) or load.json (a load run), and timeline.jsonl.
// Errors name the path and the file.
func ReadRun(ctx context.Context, path string) (*Run, error) {
	st, err := os.Stat(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w: %w", path, ErrNotRun, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: %w: not a directory", path, ErrNotRun)
	}
	r := &Run{Dir: path}
	var m run.Manifest
	switch err := readDoc(filepath.Join(path, run.ManifestFile), &m); {
	case err == nil:
		r.Manifest = &m
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep, err := report.ReadFile(filepath.Join(path, run.ReportFile))
	switch {
	case err == nil:
		r.Kind, r.Report = KindHunt, rep
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	default:
		var ls LoadSummary
		err := readDoc(filepath.Join(path, LoadFile), &ls)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w: neither %s nor %s", path, ErrNotRun, run.ReportFile, LoadFile)
		}
		if err != nil {
			return nil, err
		}
		if ls.Schema != loadSchema {
			return nil, fmt.Errorf("%s: schema %q, want %q", filepath.Join(path, LoadFile), ls.Schema, loadSchema)
		}
		r.Kind, r.Load = KindLoad, &ls
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tl := filepath.Join(path, run.TimelineFile)
	err = run.ReadLines(tl, func(w evidence.WindowRecord) error {
		if len(r.Timeline) == maxWindows {
			return errTooMany
		}
		r.Timeline = append(r.Timeline, w)
		return nil
	})
	switch {
	case errors.Is(err, errTooMany):
		r.TimelineNote = fmt.Sprintf("only the first %d windows of %s were read", maxWindows, tl)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", tl, err)
	}
	return r, nil
}

var errTooMany = errors.New("too many records")

// readDoc decodes one JSON document of at most maxDocBytes.
func readDoc(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDocBytes+1))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxDocBytes {
		return fmt.Errorf("%s: larger than %d bytes", path, maxDocBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// status is the run's status: the report's, else load.json's, else the
// manifest's ("running" for a run that was killed).
func (r *Run) status() string {
	switch {
	case r.Report != nil && r.Report.Status != "":
		return r.Report.Status
	case r.Load != nil && r.Load.Status != "":
		return r.Load.Status
	case r.Manifest != nil && r.Manifest.Status != "":
		return r.Manifest.Status
	}
	return "complete"
}

// flags are the manifest's --name=value arguments and its positionals.
func (r *Run) flags() (map[string]string, []string) {
	fl := map[string]string{}
	var pos []string
	if r.Manifest == nil {
		return fl, nil
	}
	for _, a := range r.Manifest.Args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			k, v, _ := strings.Cut(name, "=")
			fl[k] = v
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		pos = append(pos, a)
	}
	return fl, pos
}

// urls are the targets: the report's, else the manifest's positionals.
func (r *Run) urls() []string {
	if r.Report != nil && len(r.Report.Target.URLs) > 0 {
		return r.Report.Target.URLs
	}
	_, pos := r.flags()
	var out []string
	for _, p := range pos {
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			out = append(out, p)
		}
	}
	return out
}

// scenario is the scenario file, if the run used one.
func (r *Run) scenario() string {
	if r.Report != nil && r.Report.Target.Scenario != "" {
		return r.Report.Target.Scenario
	}
	fl, _ := r.flags()
	return fl["file"]
}

func (r *Run) info() RunInfo {
	ri := RunInfo{Dir: r.Dir, Status: r.status(), URLs: r.urls()}
	switch ri.Status {
	case run.StatusRunning, run.StatusComplete, run.StatusPartial, run.StatusFailed:
	default:
		ri.Status = run.StatusPartial // an unknown status promises nothing more
	}
	if m := r.Manifest; m != nil {
		ri.Command, ri.Version, ri.StartMS = m.Command, m.Version, m.StartMS
		mc := m.Machine
		ri.Machine = &mc
	}
	if ri.Command == "" {
		ri.Command = r.Kind
	}
	if ri.StartMS == 0 {
		switch {
		case r.Report != nil:
			ri.StartMS = r.Report.StartMS
		case r.Load != nil:
			ri.StartMS = r.Load.StartMS
		}
	}
	ri.Scenario = r.scenario()
	if ri.Scenario == "" {
		ri.Scenario = strings.Join(ri.URLs, " ")
	}
	if ri.StartMS < 0 {
		ri.StartMS = 0
	}
	return ri
}
