package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestGolden(t *testing.T) {
	reports := []struct {
		name string
		r    *Report
	}{
		{"complete", completeReport()},
		{"none-found", noneFoundReport()},
		{"loadgen-saturated", loadgenReport()},
		{"partial", partialReport()},
	}
	formats := []struct {
		ext   string
		write func(*bytes.Buffer, *Report) error
	}{
		{"txt", func(b *bytes.Buffer, r *Report) error { return WriteText(b, r) }},
		{"md", func(b *bytes.Buffer, r *Report) error { return WriteMarkdown(b, r) }},
	}
	for _, rep := range reports {
		for _, f := range formats {
			t.Run(rep.name+"."+f.ext, func(t *testing.T) {
				var b bytes.Buffer
				if err := f.write(&b, rep.r); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join("testdata", rep.name+"."+f.ext+".golden")
				if *update {
					if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if got := b.String(); got != string(want) {
					t.Errorf("output differs from %s (go test -update rewrites it):\n%s", path, lineDiff(string(want), got))
				}
			})
		}
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + "\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

// The first line of every rendering is the verdict.
func TestVerdictFirst(t *testing.T) {
	for _, r := range []*Report{completeReport(), noneFoundReport(), loadgenReport(), partialReport()} {
		var b bytes.Buffer
		if err := WriteText(&b, r); err != nil {
			t.Fatal(err)
		}
		if first, _, _ := strings.Cut(b.String(), "\n"); first != Verdict(r) {
			t.Errorf("first line %q, want the verdict %q", first, Verdict(r))
		}
	}
}
