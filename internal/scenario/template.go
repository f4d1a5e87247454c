package scenario

import (
	"fmt"
	"strings"
)

// A template is text with {{var}} placeholders, split once at parse time so
// that expanding it is a walk over its parts.
type template struct {
	text  string // the source; the whole value when there are no parts
	parts []part // nil when the text has no placeholder
}

// part is a literal (v < 0) or the value of variable v.
type part struct {
	lit string
	v   int
}

func (t *template) static() bool { return t.parts == nil }

// parseTemplate splits s at its {{name}} placeholders (spaces inside the
// braces are allowed). lookup maps a name to its variable index. The error
// message names the variable, never the surrounding text.
func parseTemplate(s string, lookup func(string) (int, bool)) (template, string) {
	t := template{text: s}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return template{}, "unclosed {{ (a variable is written {{name}})"
		}
		name := strings.TrimSpace(rest[i+2 : i+2+j])
		if !validVarName(name) {
			return template{}, "{{…}} holds something that is not a variable name (letters, digits and _, not starting with a digit)"
		}
		v, ok := lookup(name)
		if !ok {
			return template{}, fmt.Sprintf("undefined variable %q", name)
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i], v: -1})
		}
		t.parts = append(t.parts, part{v: v})
		rest = rest[i+2+j+2:]
	}
	if t.parts != nil && rest != "" {
		t.parts = append(t.parts, part{lit: rest, v: -1})
	}
	return t, ""
}

// vars appends the variables t uses to dst, without duplicates.
func (t *template) vars(dst []int) []int {
next:
	for _, p := range t.parts {
		if p.v < 0 {
			continue
		}
		for _, v := range dst {
			if v == p.v {
				continue next
			}
		}
		dst = append(dst, p.v)
	}
	return dst
}

// validVarName reports whether s is a variable name: [A-Za-z_][A-Za-z0-9_]*.
func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// urlUnsafe reports whether c cannot appear literally in a URL and is
// percent-encoded when a variable's value is put into one. Reserved
// characters (/ ? & = : @ and so on) and %XX escapes pass through, so values
// may carry path segments, query parts or already-encoded text.
func urlUnsafe(c byte) bool {
	return c <= ' ' || c >= 0x7f || strings.IndexByte("\"#<>\\^`{|}", c) >= 0
}

// appendURLValue appends s to dst, percent-encoding the bytes urlUnsafe names
// and a % that does not start an escape.
func appendURLValue(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if urlUnsafe(c) || c == '%' && !(i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2])) {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// escapeURLText percent-encodes the bytes of a URL as written that cannot
// appear in a URL (spaces, quotes, non-ASCII…), leaving {{var}} placeholders,
// '#' and '%' as they are: the URL keeps its meaning and goes on the wire
// as written.
func escapeURLText(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '{' && strings.HasPrefix(s[i:], "{{") {
			if j := strings.Index(s[i:], "}}"); j >= 0 {
				if b != nil {
					b = append(b, s[i:i+j+2]...)
				}
				i += j + 1
				continue
			}
		}
		if urlUnsafe(c) && c != '#' {
			if b == nil {
				b = append(make([]byte, 0, len(s)+8), s[:i]...)
			}
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		if b != nil {
			b = append(b, c)
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}
