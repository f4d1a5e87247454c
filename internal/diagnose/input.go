package diagnose

import (
	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/google/pprof/profile"
)

// Input is everything a run recorded, read back from its directory.
type Input struct {
	SLO       report.SLO
	Steps     []report.Step // in the order they ran, with StartMS/EndMS
	Capacity  report.Capacity
	Endpoints []report.Endpoint
	Coverage  []report.Coverage
	Cores     int // the machine's CPUs

	Windows  []evidence.WindowRecord
	Proc     []evidence.ProcRecord
	Metrics  []evidence.MetricsRecord
	Postgres []evidence.PG
	Spans    []evidence.Span
	Profiles []evidence.ProfileRecord

	// OpenProfile decodes a profile file named by a ProfileRecord; nil when
	// profiles cannot be read.
	OpenProfile func(file string) (*profile.Profile, error)
}

// Breached reports whether some step missed the objective.
func (in *Input) Breached() bool {
	for _, s := range in.Steps {
		if !s.MetSLO {
			return true
		}
	}
	return false
}

// FocusStep is the index of the step the rules examine as "at the knee":
// the first step that missed the objective, else the highest offered rate.
// It is -1 when there are no steps.
func (in *Input) FocusStep() int {
	best := -1
	for i, s := range in.Steps {
		if !s.MetSLO {
			return i
		}
		if best < 0 || s.OfferedRPS > in.Steps[best].OfferedRPS {
			best = i
		}
	}
	return best
}

// BaselineStep is the index of the lowest-rate step that met the objective
// (low load), or -1.
func (in *Input) BaselineStep() int {
	best := -1
	for i, s := range in.Steps {
		if s.MetSLO && s.Requests > 0 && (best < 0 || s.OfferedRPS < in.Steps[best].OfferedRPS) {
			best = i
		}
	}
	return best
}

// StepSpan returns a step's time bounds (Unix ms).
func (in *Input) StepSpan(i int) (start, end int64) {
	if i < 0 || i >= len(in.Steps) {
		return 0, 0
	}
	return in.Steps[i].StartMS, in.Steps[i].EndMS
}

// ProcIn returns the process samples of a role within [start, end].
func (in *Input) ProcIn(role string, start, end int64) []evidence.ProcRecord {
	var out []evidence.ProcRecord
	for _, r := range in.Proc {
		if r.Role == role && r.T >= start && r.T <= end {
			out = append(out, r)
		}
	}
	return out
}

// PostgresIn returns the postgres records of a kind within [start, end].
func (in *Input) PostgresIn(kind string, start, end int64) []evidence.PG {
	var out []evidence.PG
	for _, r := range in.Postgres {
		if r.Kind == kind && r.T >= start && r.T <= end {
			out = append(out, r)
		}
	}
	return out
}

// ProfileFor returns the index record of a profile of type typ (and kind
// kind, "" for any) for a step (an index into Steps); ok is false when there
// is none.
func (in *Input) ProfileFor(typ, kind string, step int) (evidence.ProfileRecord, bool) {
	if step < 0 || step >= len(in.Steps) {
		return evidence.ProfileRecord{}, false
	}
	run := in.Steps[step].Index
	for _, r := range in.Profiles {
		if r.Type == typ && r.Step == run && (kind == "" || r.Kind == kind) {
			return r, true
		}
	}
	return evidence.ProfileRecord{}, false
}

// Covered reports whether a source collected evidence (coverage status ok).
func (in *Input) Covered(source string) bool {
	for _, c := range in.Coverage {
		if c.Source == source {
			return c.Status == "ok"
		}
	}
	return false
}

// WindowsIn returns the load windows of a step (an index into Steps).
func (in *Input) WindowsIn(step int) []evidence.WindowRecord {
	if step < 0 || step >= len(in.Steps) {
		return nil
	}
	var out []evidence.WindowRecord
	for _, w := range in.Windows {
		if w.Step == in.Steps[step].Index {
			out = append(out, w)
		}
	}
	return out
}

// meanProc averages the process samples of a role over a step: CPU in cores,
// the cgroup's quota (0 when unlimited) and throttled share of periods.
type procStats struct {
	N              int
	CPUCores       float64
	QuotaCores     float64
	ThrottledShare float64
	ThrottledSec   float64
	RSS            float64
	FDs, FDLimit   float64
	RunQueueWait   float64
	Name           string
}

func (in *Input) procStats(role string, step int) procStats {
	start, end := in.StepSpan(step)
	var ps procStats
	var periods, throttled uint64
	for _, r := range in.ProcIn(role, start, end) {
		p := r.Process
		if p == nil {
			continue
		}
		ps.N++
		ps.Name = p.Name
		ps.CPUCores += p.CPUCores
		ps.RSS += float64(p.RSSBytes)
		ps.FDs += float64(p.FDs)
		ps.FDLimit = float64(p.FDLimit)
		if p.RunQueueWaitPerSec != nil {
			ps.RunQueueWait += *p.RunQueueWaitPerSec
		}
		if c := p.Cgroup; c != nil {
			if c.QuotaCores != nil {
				ps.QuotaCores = *c.QuotaCores
			}
			periods += c.Periods
			throttled += c.ThrottledPeriods
			ps.ThrottledSec += c.ThrottledSeconds
		}
	}
	if ps.N > 0 {
		n := float64(ps.N)
		ps.CPUCores /= n
		ps.RSS /= n
		ps.FDs /= n
		ps.RunQueueWait /= n
	}
	if periods > 0 {
		ps.ThrottledShare = float64(throttled) / float64(periods)
	}
	return ps
}

// machineBusy is the machine's mean busy share (0..1) over a step, and
// whether it was measured.
func (in *Input) machineBusy(step int) (float64, bool) {
	start, end := in.StepSpan(step)
	var sum float64
	n := 0
	for _, r := range in.ProcIn("machine", start, end) {
		if r.Machine != nil {
			sum += r.Machine.CPUBusy
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}
