package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/google/pprof/profile"
)

// Bounds on what LoadHTMLInputs reads from a run directory, which may come
// from anywhere (a colleague's run, a CI artifact).
const (
	// maxTimelineLine bounds one timeline.jsonl record; a window of a
	// scenario with hundreds of endpoints is a few hundred kilobytes.
	maxTimelineLine = 16 << 20
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

// decodeTimeline decodes JSON lines of window records, keeping at most
// maxTimelineRecords. A malformed line other than the last is an error;
// the records before it are returned with it.
func decodeTimeline(r io.Reader) ([]evidence.WindowRecord, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTimelineLine)
	var out []evidence.WindowRecord
	line, bad := 0, 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if bad > 0 {
			return out, fmt.Errorf("%s:%d: malformed record", evidence.TimelineStream, bad)
		}
		var w evidence.WindowRecord
		if err := json.Unmarshal(b, &w); err != nil {
			bad = line
			continue
		}
		if len(out) == maxTimelineRecords {
			return out, fmt.Errorf("%s: more than %d windows; the rest is not shown", evidence.TimelineStream, maxTimelineRecords)
		}
		out = append(out, w)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s:%d: %w", evidence.TimelineStream, line+1, err)
	}
	return out, nil
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
// decompressed form are bounded by maxProfileBytes.
func decodeProfile(r io.Reader) (*profile.Profile, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxProfileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxProfileBytes {
		return nil, fmt.Errorf("profile larger than %d bytes", maxProfileBytes)
	}
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decompress profile: %w", err)
		}
		raw, err = io.ReadAll(io.LimitReader(zr, maxProfileBytes+1))
		if err != nil {
			return nil, fmt.Errorf("decompress profile: %w", err)
		}
		if len(raw) > maxProfileBytes {
			return nil, fmt.Errorf("profile larger than %d bytes decompressed", maxProfileBytes)
		}
	}
	p, err := profile.ParseUncompressed(raw)
	if err != nil {
		return nil, fmt.Errorf("parse profile: %w", err)
	}
	return p, nil
}
