package scenario

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse: it must not panic or hang, must
// reject with an *Error, and what it accepts must generate valid requests.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"version: 1\nbase_url: http://127.0.0.1:8080\nheaders: {Accept: application/json}\nvars:\n  account: {int: {min: 1, max: 5000}}\n  order: {seq: {start: 1}}\n  sku: {pick: [AB-12, CD-34]}\n  user: {csv: {file: users.csv, column: email}}\nrequests:\n  - name: list orders\n    weight: 3\n    method: GET\n    url: /orders?account={{account}}&u={{user}}\n    headers: {X-Request-Source: chokepoint}\n  - name: create order\n    method: POST\n    url: /orders\n    body: '{\"sku\": \"{{sku}}\", \"seq\": {{order}}}'\n",
		"version: 1\nrequests:\n  - url: http://[::1]:9/a b?x=%zz\n",
		"version: 1\nvars:\n  a: &x {seq: {}}\n  b: *x\n",
		"version: 1\nrequests: [[[[[[",
		"- - - - - x",
		"version: 1\nrequests:\n  - {url: 'http://h/{{a}}', weight: 1e308}\nvars: {a: {pick: ['%', '\\u0000']}}\n",
		"version: 1\nrequests:\n  - url: http://h/\n    body: |\n      {\"a\": [1, 2]}\n",
		"%YAML 1.2\n---\nversion: !!int 1\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	dir := writeFiles(f, map[string]string{"users.csv": "email\na b@example.com\n%41@x\n"})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data, dir, []Header{{"Authorization", "Bearer s3cret"}})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q leaks a header value", err)
			}
			return
		}
		if len(s.Endpoints()) == 0 || len(s.URLs()) == 0 {
			t.Fatalf("accepted a scenario with %d endpoints and %d URLs", len(s.Endpoints()), len(s.URLs()))
		}
		g := s.NewGenerator(1)
		var r Request
		for range 20 {
			g.Next(&r)
			if r.Endpoint < 0 || r.Endpoint >= len(s.Endpoints()) {
				t.Fatalf("endpoint %d out of range", r.Endpoint)
			}
			u, err := url.Parse(r.URL)
			if err != nil || u.Host == "" {
				t.Fatalf("generated URL %q: %v", r.URL, err)
			}
			for _, h := range r.Header {
				if checkHeaderName(h.Name) != "" || checkHeaderValue(h.Value) != "" {
					t.Fatalf("generated invalid header %q", h.Name)
				}
			}
		}
	})
}
