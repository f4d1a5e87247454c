// Package probe defines how evidence sources plug into a run: a Probe collects
// one source while load runs and appends time-stamped records to the run
// directory; it degrades alone and never aborts the run.
package probe

import (
	"context"
	"time"
)

// Coverage statuses (CONTRACT.md §4 coverage.status).
const (
	StatusOK          = "ok"
	StatusUnavailable = "unavailable"
	StatusError       = "error"
)

// Coverage says what a source could and could not see, and how to enable
// what was missing. It becomes one entry of report.json's coverage.
type Coverage struct {
	Source string `json:"source"` // loadgen, proc, pprof, metrics, postgres, otlp
	Status string `json:"status"` // StatusOK, StatusUnavailable, StatusError
	Detail string `json:"detail"`
}

// Sink receives a probe's records. stream is the run directory's file name
// (e.g. "proc.jsonl"); v is encoded as one JSON line. *run.Dir satisfies it
// through its Append method. Files (profiles) go through WriteFile.
type Sink interface {
	Append(stream string, v any) error
	WriteFile(name string, data []byte) error
}

// Probe collects one source of evidence.
//
// Run collects until ctx is done and then returns nil; it returns an error
// only when the source cannot be used at all (the hunt then records the
// error in coverage and carries on without it). Coverage may be called after
// Run returns.
type Probe interface {
	Source() string
	Run(ctx context.Context, sink Sink) error
	Coverage() Coverage
}

// Step describes one step of a hunt (one offered rate held for a while), or
// the whole of a plain load run (Index 0).
type Step struct {
	Index      int           // 0-based
	OfferedRPS float64       // 0 for closed-model runs
	Start      time.Time     // when the step's load began
	Planned    time.Duration // how long the step is expected to last
}

// StepObserver is implemented by probes that collect per step (pprof takes
// a CPU profile per step). The hunt calls StepStarted as each step begins and
// StepEnded as it ends; implementations must not block for long.
type StepObserver interface {
	StepStarted(ctx context.Context, s Step)
	StepEnded(ctx context.Context, s Step)
}
