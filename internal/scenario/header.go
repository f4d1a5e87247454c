package scenario

import (
	"fmt"
	"strings"
)

// Header is one HTTP request header.
type Header struct{ Name, Value string }

// ParseHeader parses "Name: value" as given to -H. The error names what is
// wrong and never repeats the value (it may be a credential).
func ParseHeader(s string) (Header, error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return Header{}, &Error{Field: "header", Msg: "want 'Name: value', found no ':'"}
	}
	name = strings.TrimSpace(name)
	value = strings.TrimSpace(value)
	if msg := checkHeaderName(name); msg != "" {
		return Header{}, &Error{Field: "header", Msg: msg}
	}
	if msg := checkHeaderValue(value); msg != "" {
		return Header{}, &Error{Field: "header " + name, Msg: msg}
	}
	return Header{Name: name, Value: value}, nil
}

// checkHeaderName returns what is wrong with a header name, or "". The
// message names the position of a bad character, never the name itself.
func checkHeaderName(name string) string {
	if name == "" {
		return "header name is empty"
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Sprintf("header name has an invalid character at position %d (want letters, digits and !#$%%&'*+-.^_`|~)", i+1)
		}
	}
	return ""
}

// checkHeaderValue returns what is wrong with a header value, or "".
func checkHeaderValue(v string) string {
	if i := ctlIndex(v); i >= 0 {
		return fmt.Sprintf("header value has a control character at position %d", i+1)
	}
	return ""
}

// ctlIndex returns the index of the first control byte other than tab (the
// bytes net/http refuses in a header value), or -1.
func ctlIndex(v string) int {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return i
		}
	}
	return -1
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// mergeHeaders returns base with each header of over replacing the one of
// the same name (case-insensitive) in place, or appended when new.
func mergeHeaders[H interface{ name() string }](base, over []H) []H {
	out := append([]H(nil), base...)
	at := make(map[string]int, len(out)+len(over))
	for i, h := range out {
		at[strings.ToLower(h.name())] = i
	}
	for _, h := range over {
		k := strings.ToLower(h.name())
		if i, ok := at[k]; ok {
			out[i] = h
			continue
		}
		at[k] = len(out)
		out = append(out, h)
	}
	return out
}
