package diagnose

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/google/pprof/profile"
)

// Load reads a run directory's evidence into an Input. rep supplies what the
// hunt decided (steps, objective, capacity, coverage); the evidence streams
// come from the directory. Missing streams are not errors: the rules say
// what they could not check.
func Load(dir *run.Dir, rep *report.Report, cores int) (*Input, error) {
	in := &Input{
		SLO:       rep.SLO,
		Steps:     rep.Steps,
		Capacity:  rep.Capacity,
		Endpoints: rep.Endpoints,
		Coverage:  rep.Coverage,
		Cores:     cores,
	}
	if err := readAll(dir, evidence.TimelineStream, &in.Windows); err != nil {
		return nil, err
	}
	if err := readAll(dir, evidence.ProcStream, &in.Proc); err != nil {
		return nil, err
	}
	if err := readAll(dir, evidence.MetricsStream, &in.Metrics); err != nil {
		return nil, err
	}
	if err := readAll(dir, evidence.PostgresStream, &in.Postgres); err != nil {
		return nil, err
	}
	if err := readAll(dir, evidence.SpansStream, &in.Spans); err != nil {
		return nil, err
	}
	if err := readAll(dir, evidence.ProfilesStream, &in.Profiles); err != nil {
		return nil, err
	}
	root := dir.Path()
	in.OpenProfile = func(file string) (*profile.Profile, error) {
		p := filepath.Join(root, filepath.FromSlash(file))
		if rel, err := filepath.Rel(root, p); err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("profile %q is outside the run directory", file)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open profile: %w", err)
		}
		defer f.Close()
		return profilesum.Decode(f, profilesum.DefaultMaxBytes)
	}
	return in, nil
}

func readAll[T any](dir *run.Dir, stream string, into *[]T) error {
	return run.ReadLines(dir.Join(stream), func(v T) error {
		*into = append(*into, v)
		return nil
	})
}
