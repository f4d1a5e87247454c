package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes name → content into a fresh directory and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: v, ", i)
	}
	return b.String()
}

func TestParseErrors(t *testing.T) {
	const head = "version: 1\nbase_url: http://127.0.0.1:8080\n"
	csvFiles := map[string]string{
		"users.csv":  "id,email\n1,a@example.com\n2,b@example.com\n",
		"empty.csv":  "",
		"head.csv":   "id,email\n",
		"ragged.csv": "id,email\n1,a\n2\n",
	}
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", "orders.yaml: empty: want version: 1 and requests:"},
		{"comment only", "# nothing\n", "orders.yaml: empty: want version: 1 and requests:"},
		{"not a mapping", "- a\n- b\n", "orders.yaml:1: want a mapping (key: value lines), found a list"},
		{"syntax", "version: 1\nrequests: [\n", "orders.yaml:2: not valid YAML: sequence end token ']' not found"},
		{"two documents", "version: 1\n---\nversion: 1\n", "orders.yaml:3: more than one YAML document"},
		{"missing version", "requests:\n  - url: http://h/\n", "orders.yaml:1: version: required: the first line is version: 1"},
		{"version 2", "version: 2\nrequests:\n  - url: http://h/\n", "orders.yaml:1: version: unsupported version 2 (this chokepoint reads version 1)"},
		{"version string", "version: one\n", "orders.yaml:1: version: want an integer, found a string"},
		{"missing requests", "version: 1\n", "orders.yaml:1: requests: required: at least one request"},
		{"empty requests", "version: 1\nrequests: []\n", "orders.yaml:2: requests: required: at least one request"},
		{"requests not a list", "version: 1\nrequests: {url: /}\n", "orders.yaml:2: requests: want a list, found a mapping"},
		{"unknown top field", "version: 1\nbase: http://h\n", "orders.yaml:2: base: unknown field (did you mean \"base_url\"?)"},
		{"unknown field far", "version: 1\nzzzzzz: 1\n", "orders.yaml:2: zzzzzz: unknown field (want one of version, base_url, headers, vars, requests)"},
		{"rate in file", "version: 1\nrate: 100\n", "orders.yaml:2: rate: rates and durations are not part of a scenario file: give them as flags (--rate, --ramp, --steps, --concurrency, --duration, --max-rate)"},
		{"duration in request", head + "requests:\n  - url: /\n    duration: 10s\n", "orders.yaml:5: requests[0].duration: rates and durations are not part of a scenario file: give them as flags (--rate, --ramp, --steps, --concurrency, --duration, --max-rate)"},
		{"misspelt weight", head + "requests:\n  - url: /a\n  - url: /b\n    weght: 2\n", "orders.yaml:6: requests[1].weght: unknown field (did you mean \"weight\"?)"},
		{"duplicate key", "version: 1\nversion: 1\n", "orders.yaml:2: version: given twice (also on line 1)"},
		{"bad escape", "version: 1\nheaders: {Authorization: \"s3cret\\q\"}\n", "orders.yaml:2: not valid YAML: found unknown escape character '…'"},
		{"weight zero", head + "requests:\n  - url: /\n    weight: 0\n", "orders.yaml:5: requests[0].weight: must be a number above 0 and at most 1073741824"},
		{"weight negative", head + "requests:\n  - url: /\n    weight: -1.5\n", "orders.yaml:5: requests[0].weight: must be a number above 0 and at most 1073741824"},
		{"weight infinite", head + "requests:\n  - url: /\n    weight: .inf\n", "orders.yaml:5: requests[0].weight: want a finite number"},
		{"weight string", head + "requests:\n  - url: /\n    weight: heavy\n", "orders.yaml:5: requests[0].weight: want a number, found a string"},
		{"bad method", head + "requests:\n  - url: /\n    method: FETCH\n", "orders.yaml:5: requests[0].method: unknown method \"FETCH\" (want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE)"},
		{"missing url", head + "requests:\n  - name: x\n", "orders.yaml:4: requests[0].url: required"},
		{"path without base", "version: 1\nrequests:\n  - url: /orders\n", "orders.yaml:3: requests[0].url: a path needs base_url at the top of the file (or write the absolute URL)"},
		{"relative url", head + "requests:\n  - url: orders\n", "orders.yaml:4: requests[0].url: want an absolute http(s) URL, or a path starting with / and base_url"},
		{"ftp url", "version: 1\nrequests:\n  - url: ftp://h/x\n", "orders.yaml:3: requests[0].url: want an absolute http(s) URL, or a path starting with / and base_url"},
		{"no host", "version: 1\nrequests:\n  - url: http:///x\n", "orders.yaml:3: requests[0].url: no host"},
		{"var in host", "version: 1\nvars:\n  h: {pick: [a, b]}\nrequests:\n  - url: http://{{h}}/x\n", "orders.yaml:5: requests[0].url: variables are not allowed in the scheme, host or port"},
		{"bad base_url", "version: 1\nbase_url: 127.0.0.1:8080\n", "orders.yaml:2: base_url: not a URL: first path segment in URL cannot contain colon"},
		{"base_url scheme", "version: 1\nbase_url: file:///etc\n", "orders.yaml:2: base_url: scheme must be http or https"},
		{"base_url query", "version: 1\nbase_url: http://h/?a=1\n", "orders.yaml:2: base_url: must not have a query or fragment"},
		{"undefined var", head + "vars:\n  account: {int: {min: 1, max: 9}}\nrequests:\n  - url: /orders?account={{acount}}\n", "orders.yaml:6: requests[0].url: undefined variable \"acount\""},
		{"undefined var in body", head + "requests:\n  - url: /\n    body: '{{x}}'\n", "orders.yaml:5: requests[0].body: undefined variable \"x\""},
		{"unclosed template", head + "requests:\n  - url: /\n    body: 'a {{x'\n", "orders.yaml:5: requests[0].body: unclosed {{ (a variable is written {{name}})"},
		{"bad template name", head + "requests:\n  - url: /\n    body: 'a {{x-y}}'\n", "orders.yaml:5: requests[0].body: {{…}} holds something that is not a variable name (letters, digits and _, not starting with a digit)"},
		{"duplicate names", head + "requests:\n  - name: a\n    url: /x\n  - name: a\n    url: /y\n", "orders.yaml:6: requests[1].name: duplicate endpoint name \"a\" (requests[0] has it too): give each request its own name"},
		{"duplicate default names", head + "requests:\n  - url: /x?a=1\n  - url: /x?a=2\n", "orders.yaml:5: requests[1].name: duplicate endpoint name \"GET /x\" (requests[0] has it too): give each request its own name"},
		{"empty name", head + "requests:\n  - name: ''\n    url: /\n", "orders.yaml:4: requests[0].name: empty"},
		{"body mapping", head + "requests:\n  - url: /\n    body: {a: 1}\n", "orders.yaml:5: requests[0].body: want a string, found a mapping"},
		{"var two kinds", head + "vars:\n  x: {int: {min: 1, max: 2}, seq: {}}\n", "orders.yaml:4: vars.x: want exactly one of int, seq, pick, csv"},
		{"var unknown kind", head + "vars:\n  x: {float: {}}\n", "orders.yaml:4: vars.x.float: unknown field (want one of int, seq, pick, csv)"},
		{"var bad name", head + "vars:\n  1x: {seq: {}}\n", "orders.yaml:4: vars.1x: not a variable name (letters, digits and _, not starting with a digit)"},
		{"int min above max", head + "vars:\n  x: {int: {min: 5, max: 1}}\n", "orders.yaml:4: vars.x.int: min 5 is above max 1"},
		{"int missing max", head + "vars:\n  x: {int: {min: 5}}\n", "orders.yaml:4: vars.x.int.max: required"},
		{"int not int", head + "vars:\n  x: {int: {min: 1.5, max: 3}}\n", "orders.yaml:4: vars.x.int.min: want an integer, found a number"},
		{"int overflow", head + "vars:\n  x:\n    int:\n      min: 1\n      max: 99999999999999999999\n", "orders.yaml:7: vars.x.int.max: integer out of range"},
		{"seq start string", head + "vars:\n  x: {seq: {start: a}}\n", "orders.yaml:4: vars.x.seq.start: want an integer, found a string"},
		{"pick empty", head + "vars:\n  x: {pick: []}\n", "orders.yaml:4: vars.x.pick: empty: want at least one value"},
		{"pick nested", head + "vars:\n  x: {pick: [[a]]}\n", "orders.yaml:4: vars.x.pick[0]: want a string, found a list"},
		{"csv missing file", head + "vars:\n  u: {csv: {file: nope.csv, column: email}}\n", "orders.yaml:4: vars.u.csv.file: cannot read nope.csv: no such file or directory"},
		{"csv missing column", head + "vars:\n  u: {csv: {file: users.csv, column: mail}}\n", "orders.yaml:4: vars.u.csv.column: users.csv has no column \"mail\" (it has id, email)"},
		{"csv no column field", head + "vars:\n  u: {csv: {file: users.csv}}\n", "orders.yaml:4: vars.u.csv.column: required"},
		{"csv empty", head + "vars:\n  u: {csv: {file: empty.csv, column: id}}\n", "orders.yaml:4: vars.u.csv.file: empty.csv is empty: want a header row naming the columns"},
		{"csv header only", head + "vars:\n  u: {csv: {file: head.csv, column: id}}\n", "orders.yaml:4: vars.u.csv.file: head.csv has a header row but no values"},
		{"csv ragged", head + "vars:\n  u: {csv: {file: ragged.csv, column: id}}\n", "orders.yaml:4: vars.u.csv.file: ragged.csv: line 3: wrong number of fields"},
		{"header name", head + "headers: {'X Bad': v}\nrequests:\n  - url: /\n", "orders.yaml:3: headers: header name has an invalid character at position 2 (want letters, digits and !#$%&'*+-.^_`|~)"},
		{"header twice", head + "headers:\n  Accept: a\n  accept: b\n", "orders.yaml:5: headers.accept: header given twice (names are case-insensitive)"},
		{"header value ctl", head + "requests:\n  - url: /\n    headers: {Authorization: \"Bearer s3cret\\n\"}\n", "orders.yaml:5: requests[0].headers.Authorization: header value has a control character at position 14"},
		{"header var ctl", head + "vars:\n  t: {pick: [\"ok\", \"s3cret\\r\\n\"]}\nrequests:\n  - url: /\n    headers: {X-Token: '{{t}}'}\n", "orders.yaml:7: requests[0].headers.X-Token: variable \"t\" has a value with a control character (pick value 2), which a header cannot carry"},
		{"header value list", head + "headers: {Authorization: [s3cret]}\n", "orders.yaml:3: headers.Authorization: want a string, found a list"},
		{"alias", head + "vars:\n  a: &x {seq: {}}\n  b: *x\n", "orders.yaml:5: vars.b: aliases (*name) are not supported"},
		{"merge key", head + "vars:\n  a: {seq: {}}\n  <<: {b: {seq: {}}}\n", "orders.yaml:5: vars.<<: merge keys are not supported"},
		{"too deep", "version: 1\nrequests: " + strings.Repeat("[", 100) + "\n", "orders.yaml:2: nested deeper than 64 levels"},
		{"too many headers", "version: 1\nheaders: {" + manyHeaders(101) + "}\nrequests:\n  - url: http://h/\n", "orders.yaml:4: requests[0].headers: more than 100 headers with those of the file and -H"},
		{"too many entries", "version: 1\nrequests:\n" + strings.Repeat("  - url: http://h/\n", 10001), "orders.yaml:10001: more than 10000 entries (put long lists of values in a CSV file)"},
		{"too many flow entries", "version: 1\nvars:\n  x: {pick: [" + strings.Repeat("a,", 10000) + "]}\n", "orders.yaml:3: more than 10000 entries (put long lists of values in a CSV file)"},
		{"too large", "version: 1\nrequests:\n  - url: http://h/\n    body: '" + strings.Repeat("x", MaxFileBytes) + "'\n", "orders.yaml: larger than 1 MiB"},
		{"too deep dashes", "version: 1\nrequests:\n  " + strings.Repeat("- ", 100) + "x\n", "orders.yaml:3: nested deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, csvFiles)
			_, err := Parse("orders.yaml", []byte(tt.src), dir, nil)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got %s\nwant %s", got, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks a header value", err)
			}
		})
	}
}

func TestLimitsAccepted(t *testing.T) {
	// Just inside the limits, files parse (and quickly: see prescan).
	var many strings.Builder
	many.WriteString("version: 1\nrequests:\n")
	for i := range maxItems - 10 {
		fmt.Fprintf(&many, "  - url: http://127.0.0.1:1/%d\n", i)
	}
	line := `      {"a": [1, 2, {"b": "c"}]}` + "\n"
	big := "version: 1\nrequests:\n  - url: http://127.0.0.1:1/\n    body: |\n" + strings.Repeat(line, (MaxFileBytes-100)/len(line))
	for name, src := range map[string]string{"many requests": many.String(), "large body": big} {
		t.Run(name, func(t *testing.T) {
			s, err := Parse("big.yaml", []byte(src), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			var r Request
			s.NewGenerator(0).Next(&r)
			if name == "large body" && len(r.Body) < MaxFileBytes/2 {
				t.Errorf("body of %d bytes, want the whole block", len(r.Body))
			}
		})
	}
}
