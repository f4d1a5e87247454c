package run

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

type rec struct {
	T int64  `json:"t"`
	S string `json:"s"`
}

func TestCreateRefusesNonEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Create(non-empty) = %v, want ErrNotEmpty", err)
	}
	if _, err := Create(filepath.Join(dir, "new", "deeper")); err != nil {
		t.Fatalf("Create(new) = %v", err)
	}
}

func TestStreamConcurrentAndTornLine(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "r"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := d.Append("s.jsonl", rec{T: int64(i), S: "hello \"world\" <b>"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Simulate a killed writer: a torn last line.
	f, err := os.OpenFile(d.Join("s.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"t":1,"s":"tor`)
	f.Close()
	n := 0
	err = ReadLines(d.Join("s.jsonl"), func(r rec) error {
		if r.S != "hello \"world\" <b>" {
			t.Fatalf("record corrupted: %+v", r)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1600 {
		t.Fatalf("read %d records, want 1600", n)
	}
}

func TestMalformedMiddleLineIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.jsonl")
	os.WriteFile(p, []byte("{\"t\":1}\nnot json\n{\"t\":2}\n"), 0o644)
	err := ReadLines(p, func(rec) error { return nil })
	if err == nil {
		t.Fatal("want an error for a malformed middle line")
	}
}

func TestWriteJSONAtomic(t *testing.T) {
	d, _ := Create(filepath.Join(t.TempDir(), "r"))
	for i := 0; i < 3; i++ {
		if err := d.WriteJSON(ReportFile, rec{T: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var r rec
	if err := d.ReadJSON(ReportFile, &r); err != nil || r.T != 2 {
		t.Fatalf("ReadJSON = %+v, %v", r, err)
	}
	entries, _ := os.ReadDir(d.Path())
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestMissingStreamIsEmpty(t *testing.T) {
	if err := ReadLines(filepath.Join(t.TempDir(), "none.jsonl"), func(rec) error { t.Fatal("record from nothing"); return nil }); err != nil {
		t.Fatal(err)
	}
}
