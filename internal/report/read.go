package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxReportBytes bounds a report.json read back: a hunt's report is tens of
// kilobytes; 64 MiB leaves room for any run while keeping a hostile file
// from exhausting memory.
const MaxReportBytes = 64 << 20

// ErrNotReport is wrapped when a document is JSON but not a report.json.
var ErrNotReport = errors.New("not a chokepoint report")

// Decode reads one report.json document, at most MaxReportBytes.
func Decode(r io.Reader) (*Report, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxReportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	if len(b) > MaxReportBytes {
		return nil, fmt.Errorf("read report: larger than %d bytes", MaxReportBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var rep Report
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode report: data after the document")
	}
	if rep.Schema != Schema {
		return nil, fmt.Errorf("%w: schema %q, want %q", ErrNotReport, rep.Schema, Schema)
	}
	return &rep, nil
}

// ReadFile reads the report.json at path.
func ReadFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}
