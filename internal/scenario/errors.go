package scenario

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error that rejects a scenario, a URL or a
// header, so callers can map it to "bad usage or input" (exit status 2).
var ErrInvalid = errors.New("invalid scenario")

// Error is a problem in a scenario file, located by file, line and field.
// Its message never contains a header value.
type Error struct {
	File  string // the file as named to Load or Parse; "" for URLs and -H
	Line  int    // 1-based; 0 when the problem has no line (a missing file, a URL)
	Field string // the field's path, e.g. "requests[1].weight"; "" for the whole file
	Msg   string // what is wrong, lowercase
}

// Error formats "file:line: field: msg", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }
