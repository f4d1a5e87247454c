package scenario

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Bounds on a CSV file read for a csv variable.
const (
	// maxCSVRows bounds the rows kept: a million distinct values is more
	// than any load test draws from, and keeps a column's memory bounded.
	maxCSVRows = 1 << 20
	// maxCSVBytes bounds the bytes read from one CSV file.
	maxCSVBytes = 64 << 20
)

// csvColumn is one csv variable waiting for its file to be read.
type csvColumn struct {
	vari              int // index into Scenario.vars
	file, resolved    string
	column            string
	path              string // the field path, vars.x.csv
	line              int
	fileLine, colLine int
}

// readCSVs reads each file once and fills the values of its variables; the
// variables of one file share its rows.
func (p *fileParser) readCSVs(cols []csvColumn) {
	done := map[string]bool{}
	for i, c := range cols {
		if p.err != nil || done[c.resolved] {
			continue
		}
		done[c.resolved] = true
		var same []csvColumn
		for _, o := range cols[i:] {
			if o.resolved == c.resolved {
				same = append(same, o)
			}
		}
		p.readCSV(same)
	}
}

// readCSV reads one file for the columns that use it.
func (p *fileParser) readCSV(cols []csvColumn) {
	c0 := cols[0]
	fileField := c0.path + ".file"
	f, err := os.Open(c0.resolved)
	if err != nil {
		p.fail(c0.fileLine, fileField, "cannot read %s: %s", c0.file, pathErr(err))
		return
	}
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: maxCSVBytes + 1}
	r := csv.NewReader(lr)
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			p.fail(c0.fileLine, fileField, "%s is empty: want a header row naming the columns", c0.file)
		} else {
			p.fail(c0.fileLine, fileField, "%s: %s", c0.file, csvErr(err))
		}
		return
	}
	names := make([]string, len(head))
	for i, h := range head {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		names[i] = strings.TrimSpace(h)
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = -1
		for j, n := range names {
			if n == strings.TrimSpace(c.column) {
				idx[i] = j
				break
			}
		}
		if idx[i] < 0 {
			p.fail(c.colLine, c.path+".column", "%s has no column %q (it has %s)", c.file, c.column, listNames(names))
			return
		}
	}
	rows := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if lr.N <= 0 {
			p.fail(c0.fileLine, fileField, "%s is larger than %d MiB", c0.file, maxCSVBytes>>20)
			return
		}
		if err != nil {
			p.fail(c0.fileLine, fileField, "%s: %s", c0.file, csvErr(err))
			return
		}
		if rows == maxCSVRows {
			p.fail(c0.fileLine, fileField, "%s has more than %d rows", c0.file, maxCSVRows)
			return
		}
		rows++
		for i, c := range cols {
			v := &p.s.vars[c.vari]
			val := rec[idx[i]]
			if v.ctl < 0 && ctlIndex(val) >= 0 {
				v.ctl = len(v.values)
			}
			v.values = append(v.values, val)
		}
	}
	if lr.N <= 0 {
		p.fail(c0.fileLine, fileField, "%s is larger than %d MiB", c0.file, maxCSVBytes>>20)
		return
	}
	if rows == 0 {
		p.fail(c0.fileLine, fileField, "%s has a header row but no values", c0.file)
		return
	}
	p.s.groupRows[p.s.vars[c0.vari].group] = rows
}

// csvErr describes a CSV error by line, without quoting the file's content.
func csvErr(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("line %d: %v", pe.Line, pe.Err)
	}
	return pathErr(err)
}

func listNames(names []string) string {
	const maxListed = 10 // enough to spot a typo without flooding the terminal
	if len(names) > maxListed {
		return strings.Join(names[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(names)-maxListed)
	}
	return strings.Join(names, ", ")
}
