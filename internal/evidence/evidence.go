// Package evidence defines the records that probes and the load engine write
// into a run directory and that the analysis reads back. Every record carries
// the wall-clock time in Unix milliseconds (field "t"), the one clock of a run.
//
// Each source owns one file of this package (proc.go, pprof.go, ...), and the
// diagnosis reads only these types, never a probe.
package evidence

// Stream file names in the run directory, one per source.
const (
	ProcStream     = "proc.jsonl"
	MetricsStream  = "metrics.jsonl"
	PostgresStream = "postgres.jsonl"
	SpansStream    = "spans.jsonl"
	ProfilesStream = "profiles.jsonl" // index of profiles/*.pb.gz
	TimelineStream = "timeline.jsonl"
)
