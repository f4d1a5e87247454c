package evidence

// Profile types fetched from a Go target's net/http/pprof handlers; they name
// the files profiles/<type>-<step>.pb.gz.
const (
	ProfileCPU       = "cpu"
	ProfileHeap      = "heap"
	ProfileAllocs    = "allocs"
	ProfileMutex     = "mutex"
	ProfileBlock     = "block"
	ProfileGoroutine = "goroutine"
)

// Profile kinds: what a file under profiles/ holds.
const (
	// ProfileFetched is a profile as the target served it: a CPU profile
	// over a window of the step, or a snapshot taken as the step ended
	// (cumulative since the process started for allocs, mutex and block).
	ProfileFetched = "fetched"
	// ProfileBaseline is a snapshot of a cumulative profile taken as the
	// first profiled step started, the base of that step's delta.
	ProfileBaseline = "baseline"
	// ProfileDelta is a cumulative profile minus the previous snapshot of
	// the same type: what happened during the step alone. Written for
	// allocs, mutex and block as profiles/<type>-delta-<step>.pb.gz.
	ProfileDelta = "delta"
	// ProfileMidStep is a snapshot taken while the step's load runs,
	// halfway through it (or as it ended, when it ended sooner): the
	// goroutine profile with the step's queues still full. Written as
	// profiles/<type>-mid-<step>.pb.gz; the snapshot as the step ended is
	// still written as ProfileFetched.
	ProfileMidStep = "mid-step"
)

// ProfileRecord indexes one profile file in ProfilesStream (profiles.jsonl).
type ProfileRecord struct {
	T    int64  `json:"t"`    // when the file was written
	Type string `json:"type"` // ProfileCPU, ProfileHeap, ...
	Kind string `json:"kind"` // ProfileFetched, ProfileBaseline, ProfileDelta, ProfileMidStep
	Step int    `json:"step"` // the step's index
	File string `json:"file"` // path inside the run directory, e.g. profiles/cpu-3.pb.gz
	// StartMS and EndMS bound the time the profile covers: the CPU profile's
	// sampling window, or for a delta the two snapshots it subtracts. A
	// snapshot covers the process's life up to EndMS (StartMS is then 0).
	StartMS int64 `json:"start_ms"`
	EndMS   int64 `json:"end_ms"`
	// SampleTypes and Totals are parallel: each sample type ("cpu/nanoseconds",
	// "alloc_space/bytes", "delay/nanoseconds", ...) and the sum of its values
	// over all samples.
	SampleTypes []string `json:"sample_types"`
	Totals      []int64  `json:"totals"`
	Samples     int      `json:"samples"` // number of distinct stacks
	Bytes       int      `json:"bytes"`   // size of the file
}

// Total returns the sum of the named sample type ("cpu", "delay",
// "alloc_space", or with its unit "cpu/nanoseconds") and whether the
// profile has it.
func (r ProfileRecord) Total(sampleType string) (int64, bool) {
	for i, st := range r.SampleTypes {
		if i >= len(r.Totals) {
			break
		}
		if st == sampleType || (len(st) > len(sampleType) && st[:len(sampleType)] == sampleType && st[len(sampleType)] == '/') {
			return r.Totals[i], true
		}
	}
	return 0, false
}
