// Package secret keeps credentials out of everything chokepoint writes:
// header values, DSN passwords and strings marked as secret redact themselves.
package secret

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted is what replaces a secret wherever it would be written.
const Redacted = "<redacted>"

// sensitiveWords are the header-name fragments whose values are never written
// (CONTRACT.md §1, -H).
var sensitiveWords = []string{"auth", "cookie", "token", "key", "secret", "session"}

// String is a value that must never be printed or serialised. Its String,
// GoString and MarshalJSON/MarshalText methods all return Redacted; use Reveal
// to get the value where it is really needed (on the wire).
type String string

// Reveal returns the secret value.
func (s String) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer so %#v redacts too.
func (s String) GoString() string { return s.String() }

// MarshalText implements encoding.TextMarshaler (and so JSON).
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// IsSensitiveHeader reports whether a header's value must be redacted.
func IsSensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, w := range sensitiveWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// HeaderLine redacts a "Name: value" header as given to -H.
func HeaderLine(line string) string {
	name, _, ok := strings.Cut(line, ":")
	if !ok {
		return line
	}
	if IsSensitiveHeader(strings.TrimSpace(name)) {
		return strings.TrimSpace(name) + ": " + Redacted
	}
	return line
}

// URL returns s with the password of its user info, if any, replaced by
// Redacted; anything else is returned as it is.
func URL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); !has {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), Redacted)
	return u.String()
}

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

// DSN returns a PostgreSQL connection string (URL or key=value form) with its
// password replaced by Redacted. Anything unparsable is redacted whole rather
// than risk leaking it.
func DSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return Redacted
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "REDACTED")
			}
		}
		q := u.Query()
		for k := range q {
			if strings.EqualFold(k, "password") {
				q.Set(k, "REDACTED")
			}
		}
		u.RawQuery = q.Encode()
		return strings.ReplaceAll(u.String(), "REDACTED", Redacted)
	}
	return kvPassword.ReplaceAllString(dsn, "${1}"+Redacted)
}

// Args redacts a command line: values of -H/--header, --postgres and any
// flag whose name is sensitive (as a header name would be: --api-token).
func Args(args []string) []string {
	out := make([]string, len(args))
	var redactNext func(string) string
	for i, a := range args {
		if redactNext != nil {
			out[i] = redactNext(a)
			redactNext = nil
			continue
		}
		out[i] = a
		if strings.HasPrefix(a, "-H") && len(a) > 2 {
			out[i] = "-H" + HeaderLine(a[2:])
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		flag := strings.TrimLeft(name, "-")
		if flag == name || flag == "" {
			out[i] = URL(a) // not a flag: a URL may carry a password
			continue
		}
		var redact func(string) string
		switch {
		case flag == "H" || flag == "header":
			redact = HeaderLine
		case flag == "postgres":
			redact = DSN
		case IsSensitiveHeader(flag):
			redact = func(string) string { return Redacted }
		default:
			continue
		}
		if hasVal {
			out[i] = name + "=" + redact(val)
		} else {
			redactNext = redact
		}
	}
	return out
}
