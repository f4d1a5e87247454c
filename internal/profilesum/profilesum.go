// Package profilesum summarises Go pprof profiles for the diagnosis: top
// functions, cost attributed to application code, the hot path and the
// request handler (entry point) a cost runs under, GC and allocation share
// of CPU, lock delay by the function taking the lock, heap by allocation
// site and its growth, and goroutines by where they wait.
//
// Function names are exactly as Go's profiles print them
// (pkg/path.(*Type).Method). Everything here is a pure function of its
// arguments.
package profilesum

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"iter"
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// DefaultMaxBytes bounds a profile read by Decode: the compressed input and,
// separately, its decompressed protobuf. Go's own profiles of large services
// are a few MiB; 64 MiB leaves an order of magnitude of room while keeping a
// hostile or broken target from exhausting memory.
const DefaultMaxBytes = 64 << 20

// ErrTooLarge is returned by Decode for a profile above its size bound.
var ErrTooLarge = errors.New("profile too large")

// NoFunction names the cost of samples that have no symbolised frame.
const NoFunction = "(unknown)"

// Decode reads a pprof profile (gzip-compressed or not, protobuf only) of at
// most maxBytes, compressed and decompressed; maxBytes <= 0 means
// DefaultMaxBytes. The profile is checked for validity.
func Decode(r io.Reader, maxBytes int64) (*profile.Profile, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("read profile: %w (over %d bytes)", ErrTooLarge, maxBytes)
	}
	return DecodeBytes(data, maxBytes)
}

// DecodeBytes is Decode over a byte slice.
func DecodeBytes(data []byte, maxBytes int64) (*profile.Profile, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("decode profile: %w (over %d bytes)", ErrTooLarge, maxBytes)
	}
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		gz, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("decompress profile: %w", err)
		}
		raw, err := io.ReadAll(io.LimitReader(gz, maxBytes+1))
		if err != nil {
			return nil, fmt.Errorf("decompress profile: %w", err)
		}
		if int64(len(raw)) > maxBytes {
			return nil, fmt.Errorf("decompress profile: %w (over %d bytes)", ErrTooLarge, maxBytes)
		}
		data = raw
	}
	p, err := profile.ParseUncompressed(data)
	if err != nil {
		return nil, fmt.Errorf("decode profile: %w", err)
	}
	if err := p.CheckValid(); err != nil {
		return nil, fmt.Errorf("decode profile: %w", err)
	}
	return p, nil
}

// Delta returns cur minus prev for cumulative profiles (allocs, mutex,
// block): what happened between the two snapshots. Stacks whose values did
// not change are dropped. The result covers prev's time to cur's time.
func Delta(prev, cur *profile.Profile) (*profile.Profile, error) {
	if prev == nil || cur == nil {
		return nil, errors.New("profile delta: missing profile")
	}
	neg := prev.Copy()
	neg.Scale(-1)
	d, err := profile.Merge([]*profile.Profile{neg, cur.Copy()})
	if err != nil {
		return nil, fmt.Errorf("profile delta: %w", err)
	}
	d.TimeNanos = cur.TimeNanos
	if cur.TimeNanos > prev.TimeNanos && prev.TimeNanos > 0 {
		d.DurationNanos = cur.TimeNanos - prev.TimeNanos
	} else {
		d.DurationNanos = 0
	}
	return d, nil
}

// SampleIndex returns the index of a sample type, named by its type ("cpu",
// "delay", "inuse_space") or type/unit ("cpu/nanoseconds"). The empty name
// selects the profile's default sample type, else its last one (as pprof
// does).
func SampleIndex(p *profile.Profile, sampleType string) (int, error) {
	if p == nil || len(p.SampleType) == 0 {
		return 0, errors.New("profile has no sample types")
	}
	if sampleType == "" {
		sampleType = p.DefaultSampleType
	}
	if sampleType == "" {
		return len(p.SampleType) - 1, nil
	}
	for i, st := range p.SampleType {
		if st.Type == sampleType || st.Type+"/"+st.Unit == sampleType {
			return i, nil
		}
	}
	have := make([]string, len(p.SampleType))
	for i, st := range p.SampleType {
		have[i] = st.Type
	}
	return 0, fmt.Errorf("profile has no sample type %q (has %s)", sampleType, strings.Join(have, ", "))
}

// Total is the sum of a sample type's values over all samples.
func Total(p *profile.Profile, sampleType string) (int64, error) {
	i, err := SampleIndex(p, sampleType)
	if err != nil {
		return 0, err
	}
	return total(p, i), nil
}

func total(p *profile.Profile, i int) int64 {
	var t int64
	for _, v := range values(p, i) {
		t += v
	}
	return t
}

// values yields each sample that has a value at index i, with that value.
func values(p *profile.Profile, i int) iter.Seq2[*profile.Sample, int64] {
	return func(yield func(*profile.Sample, int64) bool) {
		for _, s := range p.Sample {
			if i < len(s.Value) && !yield(s, s.Value[i]) {
				return
			}
		}
	}
}

// frames returns a sample's function names, leaf first, inlined frames
// expanded (the innermost first, as the profile stores them).
func frames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		if loc == nil {
			continue
		}
		if len(loc.Line) == 0 {
			out = append(out, NoFunction)
			continue
		}
		for _, ln := range loc.Line {
			if ln.Function == nil || ln.Function.Name == "" {
				out = append(out, NoFunction)
				continue
			}
			out = append(out, ln.Function.Name)
		}
	}
	return out
}

// Entry is one function's cost in a profile.
type Entry struct {
	Function  string  `json:"function"`
	Flat      int64   `json:"flat"` // in the function itself
	Cum       int64   `json:"cum"`  // in it and what it calls
	FlatShare float64 `json:"flat_share"`
	CumShare  float64 `json:"cum_share"`
}

// Table is every function's flat and cumulative cost of one sample type.
type Table struct {
	SampleType string  `json:"sample_type"`
	Total      int64   `json:"total"`
	Entries    []Entry `json:"entries"` // by Flat, highest first
}

// Functions tabulates flat and cumulative cost per function.
func Functions(p *profile.Profile, sampleType string) (Table, error) {
	i, err := SampleIndex(p, sampleType)
	if err != nil {
		return Table{}, err
	}
	byName := map[string]*Entry{}
	get := func(fn string) *Entry {
		e := byName[fn]
		if e == nil {
			e = &Entry{Function: fn}
			byName[fn] = e
		}
		return e
	}
	var tot int64
	seen := map[string]bool{}
	for s, v := range values(p, i) {
		tot += v
		fs := frames(s)
		if len(fs) == 0 {
			get(NoFunction).Flat += v
			get(NoFunction).Cum += v
			continue
		}
		get(fs[0]).Flat += v
		clear(seen)
		for _, fn := range fs {
			if !seen[fn] { // recursion counts once
				seen[fn] = true
				get(fn).Cum += v
			}
		}
	}
	t := Table{SampleType: p.SampleType[i].Type, Total: tot}
	for _, e := range byName {
		e.FlatShare = share(e.Flat, tot)
		e.CumShare = share(e.Cum, tot)
		t.Entries = append(t.Entries, *e)
	}
	sortEntries(t.Entries, func(e Entry) int64 { return e.Flat })
	return t, nil
}

// TopFlat returns the n functions with the highest flat cost (all if n <= 0).
func (t Table) TopFlat(n int) []Entry {
	out := append([]Entry(nil), t.Entries...)
	sortEntries(out, func(e Entry) int64 { return e.Flat })
	return head(out, n)
}

// TopCum returns the n functions with the highest cumulative cost.
func (t Table) TopCum(n int) []Entry {
	out := append([]Entry(nil), t.Entries...)
	sortEntries(out, func(e Entry) int64 { return e.Cum })
	return head(out, n)
}

// Lookup returns a function's entry.
func (t Table) Lookup(fn string) (Entry, bool) {
	for _, e := range t.Entries {
		if e.Function == fn {
			return e, true
		}
	}
	return Entry{}, false
}

func sortEntries(es []Entry, key func(Entry) int64) {
	sort.SliceStable(es, func(a, b int) bool {
		ka, kb := key(es[a]), key(es[b])
		if ka != kb {
			return ka > kb
		}
		return es[a].Function < es[b].Function
	})
}

func head[T any](s []T, n int) []T {
	if n > 0 && len(s) > n {
		return s[:n]
	}
	return s
}

func share(v, total int64) float64 {
	if total == 0 {
		return 0
	}
	return float64(v) / float64(total)
}
