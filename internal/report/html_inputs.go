package report

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/google/pprof/profile"
)

// Bounds on what LoadHTMLInputs reads from a run directory, which may come
// from anywhere (a colleague's run, a CI artifact); one timeline record is
// bounded by run.MaxLine.
const (
	// maxTimelineRecords bounds the windows kept: a day of one-second
	// windows. Only the windows around the knee are charted.
	maxTimelineRecords = 86400
	// maxProfileBytes bounds a profile file and its decompressed form; Go
	// CPU profiles of a step are kilobytes to a few megabytes.
	maxProfileBytes = 64 << 20
)

// LoadHTMLInputs reads what WriteHTML needs beyond r from the run directory
// at dirPath: the timeline (timeline.jsonl) and the CPU profile of the
// saturated step (profiles/cpu-<step>.pb.gz: the first failing step, else
// the highest step with a profile). Missing or damaged files are not
// errors: they are left out and explained in HTMLOptions.Notes. The error
// is for a dirPath that cannot be read at all.
func LoadHTMLInputs(dirPath string, r *Report) (HTMLOptions, error) {
	var opt HTMLOptions
	st, err := os.Stat(dirPath)
	if err != nil {
		return opt, fmt.Errorf("read run directory: %w", err)
	}
	if !st.IsDir() {
		return opt, fmt.Errorf("read run directory: %s is not a directory", dirPath)
	}
	tl, err := readTimeline(filepath.Join(dirPath, evidence.TimelineStream))
	if err != nil {
		opt.Notes = append(opt.Notes, "timeline: "+err.Error())
	}
	opt.Timeline = tl
	if r == nil {
		return opt, nil
	}
	for _, s := range profileCandidates(r) {
		name := filepath.Join(dirPath, "profiles", fmt.Sprintf("%s-%d.pb.gz", evidence.ProfileCPU, s.Index))
		p, err := readProfile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			opt.Notes = append(opt.Notes, fmt.Sprintf("CPU profile of step %d: %v", s.Index, err))
			continue
		}
		opt.CPUProfile = p
		opt.ProfileLabel = fmt.Sprintf("CPU profile of step %d at %s req/s", s.Index, fmtNum(s.OfferedRPS))
		if !s.MetSLO {
			opt.ProfileLabel += " (objective missed)"
		}
		break
	}
	return opt, nil
}

// profileCandidates orders the steps by how well their profile shows the
// saturated target: the first failing step, then the others from the
// highest offered rate down.
func profileCandidates(r *Report) []Step {
	steps := slices.Clone(r.Steps)
	var ff float64 = math.NaN()
	if r.Capacity.FirstFailingRPS != nil {
		ff = *r.Capacity.FirstFailingRPS
	}
	slices.SortStableFunc(steps, func(a, b Step) int {
		af, bf := a.OfferedRPS == ff && !a.MetSLO, b.OfferedRPS == ff && !b.MetSLO
		switch {
		case af && !bf:
			return -1
		case bf && !af:
			return 1
		case a.OfferedRPS > b.OfferedRPS:
			return -1
		case a.OfferedRPS < b.OfferedRPS:
			return 1
		}
		return 0
	})
	return steps
}

// readTimeline reads timeline.jsonl; a missing file is no timeline, and a
// torn last line (a killed run) is ignored.
func readTimeline(path string) ([]evidence.WindowRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeTimeline(f)
}

// decodeTimeline decodes JSON lines of window records (run.DecodeLines),
// keeping at most maxTimelineRecords. A malformed line other than the last
// is an error; the records before it are returned with it.
func decodeTimeline(r io.Reader) ([]evidence.WindowRecord, error) {
	var out []evidence.WindowRecord
	err := run.DecodeLines(r, evidence.TimelineStream, func(w evidence.WindowRecord) error {
		if len(out) == maxTimelineRecords {
			return fmt.Errorf("%s: more than %d windows; the rest is not shown", evidence.TimelineStream, maxTimelineRecords)
		}
		out = append(out, w)
		return nil
	})
	return out, err
}

// readProfile reads a pprof profile (gzipped or not), bounded in size.
func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeProfile(f)
}

// decodeProfile parses a profile from untrusted bytes: the input and its
// decompressed form are bounded by maxProfileBytes, and the profile must be
// valid (consistent sample values) before the flame graph walks it.
func decodeProfile(r io.Reader) (*profile.Profile, error) {
	return profilesum.Decode(r, maxProfileBytes)
}
