// Package run owns the run directory (CONTRACT.md §2): append-only JSON-lines
// streams written through line by line, and whole-file JSON documents replaced
// atomically, so a run that is killed still leaves everything it had.
package run

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Well-known file names inside a run directory.
const (
	ManifestFile = "manifest.json"
	ReportFile   = "report.json"
	HTMLFile     = "report.html"
	TimelineFile = "timeline.jsonl"
	LatencyFile  = "latency.hlog"
	ProfilesDir  = "profiles"
)

// ErrNotEmpty is returned by Create for an existing, non-empty directory.
var ErrNotEmpty = errors.New("run directory exists and is not empty")

// Dir is an open run directory. It is safe for concurrent use.
type Dir struct {
	path string

	mu      sync.Mutex
	streams map[string]*Stream
}

// Create makes a new run directory at path. An existing empty directory is
// accepted; an existing non-empty one is refused with ErrNotEmpty.
func Create(path string) (*Dir, error) {
	if entries, err := os.ReadDir(path); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNotEmpty)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	return &Dir{path: path, streams: map[string]*Stream{}}, nil
}

// Open opens an existing run directory for reading (and appending).
func Open(path string) (*Dir, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open run directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open run directory: %s is not a directory", path)
	}
	return &Dir{path: path, streams: map[string]*Stream{}}, nil
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// Join returns the path of name inside the directory.
func (d *Dir) Join(name ...string) string {
	return filepath.Join(append([]string{d.path}, name...)...)
}

// Stream returns the append-only JSON-lines stream of that file name,
// opening it on first use. All callers share one Stream per name.
func (d *Dir) Stream(name string) (*Stream, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.streams[name]; ok {
		return s, nil
	}
	p := d.Join(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	s := &Stream{f: f}
	d.streams[name] = s
	return s, nil
}

// Append writes v as one JSON line to the named stream.
func (d *Dir) Append(name string, v any) error {
	s, err := d.Stream(name)
	if err != nil {
		return err
	}
	return s.Write(v)
}

// WriteJSON replaces the named file with v, indented, atomically.
func (d *Dir) WriteJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return d.WriteFile(name, append(b, '\n'))
}

// WriteFile replaces the named file with data atomically (see WriteFileAtomic).
func (d *Dir) WriteFile(name string, data []byte) error {
	p := d.Join(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := WriteFileAtomic(p, data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// WriteFileAtomic replaces the file at path with data through a temporary
// file in the same directory and a rename, so that a reader never sees half
// a file. The file is readable by all (0644), like the streams.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadJSON decodes the named whole-file JSON document into v.
func (d *Dir) ReadJSON(name string, v any) error {
	b, err := os.ReadFile(d.Join(name))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

// Close closes every open stream.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for name, s := range d.streams {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", name, err))
		}
		delete(d.streams, name)
	}
	return errors.Join(errs...)
}

// Stream is one append-only JSON-lines file. Each Write is one whole line
// handed to the kernel at once, so a killed process leaves complete lines.
type Stream struct {
	mu  sync.Mutex
	f   *os.File
	buf bytes.Buffer
}

// Write appends v as one JSON line.
func (s *Stream) Write(v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("stream closed")
	}
	s.buf.Reset()
	enc := json.NewEncoder(&s.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("append record: %w", err)
	}
	return nil
}

// WriteRaw appends a line that is already encoded (without its newline).
func (s *Stream) WriteRaw(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("stream closed")
	}
	s.buf.Reset()
	s.buf.Write(line)
	s.buf.WriteByte('\n')
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("append record: %w", err)
	}
	return nil
}

// Close closes the file.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// MaxLine bounds one JSON line read back from a run directory.
const MaxLine = 64 << 20

// ReadLines calls fn with each record of a JSON-lines file decoded into a
// fresh T. A missing file yields no records and no error (a probe that never
// ran); a truncated last line (a killed run) is ignored.
func ReadLines[T any](path string, fn func(T) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	return DecodeLines(f, filepath.Base(path), fn)
}

// DecodeLines is ReadLines over any reader; name is used in errors.
func DecodeLines[T any](r io.Reader, name string, fn func(T) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	line := 0
	var pending []byte
	for sc.Scan() {
		line++
		if pending != nil {
			// The previous line was bad and was not the last: a real error.
			return fmt.Errorf("%s:%d: malformed record", name, line-1)
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			pending = b
			continue
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return nil // a bad last line is a torn write of a killed run
}
