package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Bounds on hostile input.
const (
	// MaxFileBytes bounds a scenario file. A scenario is a few kilobytes;
	// 1 MiB leaves room for large literal bodies while bounding the parse:
	// goccy/go-yaml took 1.4 s on a 1 MiB flow list when measured.
	MaxFileBytes = 1 << 20
	// maxItems bounds the entries (lines and comma-separated flow items
	// outside block scalars) of a file: goccy/go-yaml's time grows with the
	// square of a mapping's keys (37,000 keys took 3 s when measured), and
	// a scenario has tens of entries.
	maxItems = 10000
	// maxHeaders bounds the headers of one request: servers refuse far
	// fewer (Apache's LimitRequestFields defaults to 100), and each request
	// keeps its own merged copy.
	maxHeaders = 100
	// maxNesting bounds how deep the YAML nests. The format needs 5 levels
	// (vars.x.int.min); goccy/go-yaml's parse time grows with the square of
	// the depth (100,000 '[' took 40 s when measured), so deeper input is
	// refused before it is parsed.
	maxNesting = 64
	// maxWeight bounds a request's weight so that the sum of weights stays
	// exact in a float64 (2^53) for any number of requests a file can hold.
	maxWeight = 1 << 30
)

// Version is the only scenario file version there is.
const Version = 1

// Load reads a scenario file and parses it (see Parse). Relative CSV paths
// resolve against the file's directory. Errors name the file as given.
func Load(path string, headers []Header) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + pathErr(err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + pathErr(err)}
	}
	if len(data) > MaxFileBytes {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d MiB", MaxFileBytes>>20)}
	}
	return Parse(path, data, filepath.Dir(path), headers)
}

// pathErr returns the reason of a file-system error without repeating the path.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse parses and validates a scenario file's content. name is how errors
// name the file; dir is where relative CSV paths resolve ("" for the current
// directory); headers are the defaults (-H) that the file's headers override.
// Every error is an *Error naming file, line and field.
func Parse(name string, data []byte, dir string, headers []Header) (*Scenario, error) {
	if len(data) > MaxFileBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d MiB", MaxFileBytes>>20)}
	}
	if line, msg := prescan(data); line > 0 {
		return nil, &Error{File: name, Line: line, Msg: msg}
	}
	p := &fileParser{file: name, dir: dir, s: &Scenario{file: name}, defaults: literalHeaders(headers)}
	f, err := parseYAML(data)
	if err != nil {
		return nil, p.syntaxError(err)
	}
	var root ast.Node
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if root != nil {
			return nil, &Error{File: name, Line: line(d.Body), Msg: "more than one YAML document"}
		}
		root = d.Body
	}
	if root == nil {
		return nil, &Error{File: name, Msg: "empty: want version: 1 and requests:"}
	}
	p.parse(root)
	if p.err != nil {
		return nil, p.err
	}
	return p.s, nil
}

// parseYAML parses data into a tree. A panic in the YAML library on hostile
// input becomes an error rather than a crash.
func parseYAML(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, errors.New("the YAML parser could not read this file")
		}
	}()
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

// fileParser walks the YAML tree of a scenario file. The first error sticks;
// every step after it is a no-op.
type fileParser struct {
	file     string
	dir      string
	s        *Scenario
	defaults []header
	headers  []header // the file's headers:
	base     string   // base_url, without a trailing slash
	varIndex map[string]int
	err      *Error
}

// field is one key of a mapping.
type field struct {
	key  string
	line int
	val  ast.Node // nil when the value is null
}

var (
	topFields     = []string{"version", "base_url", "headers", "vars", "requests"}
	requestFields = []string{"name", "weight", "method", "url", "headers", "body"}
	// loadFields are keys people put in scenario files of other tools;
	// CONTRACT.md §6 keeps rates and durations on the command line.
	loadFields = map[string]bool{
		"rate": true, "rps": true, "qps": true, "duration": true, "ramp": true, "steps": true,
		"concurrency": true, "vus": true, "iterations": true, "max_rate": true, "max_duration": true,
		"stages": true, "think_time": true, "sleep": true, "pause": true,
	}
	methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
)

func (p *fileParser) fail(line int, fieldPath, format string, args ...any) {
	if p.err == nil {
		p.err = &Error{File: p.file, Line: line, Field: fieldPath, Msg: fmt.Sprintf(format, args...)}
	}
}

func (p *fileParser) parse(root ast.Node) {
	fields, ok := p.mapping(root, "", topFields)
	if !ok {
		return
	}
	get := func(k string) *field {
		for i := range fields {
			if fields[i].key == k {
				return &fields[i]
			}
		}
		return nil
	}
	if f := get("version"); f == nil || f.val == nil {
		p.fail(line(root), "version", "required: the first line is version: 1")
		return
	} else if n, ok := p.integer(f.val, "version"); ok && n != Version {
		p.fail(line(f.val), "version", "unsupported version %d (this chokepoint reads version %d)", n, Version)
		return
	}
	if f := get("base_url"); f != nil && f.val != nil {
		p.baseURL(f.val)
	}
	if f := get("vars"); f != nil && f.val != nil {
		p.vars(f.val)
	}
	if f := get("headers"); f != nil && f.val != nil {
		p.headers = p.headerMap(f.val, "headers")
	}
	f := get("requests")
	if f == nil || f.val == nil {
		p.fail(line(root), "requests", "required: at least one request")
		return
	}
	p.requests(f.val)
}

func (p *fileParser) baseURL(n ast.Node) {
	raw, ok := p.str(n, "base_url")
	if !ok {
		return
	}
	if strings.Contains(raw, "{{") {
		p.fail(line(n), "base_url", "variables are not allowed here")
		return
	}
	u, msg := checkURL(raw)
	if msg != "" {
		p.fail(line(n), "base_url", "%s", msg)
		return
	}
	if u.RawQuery != "" || u.Fragment != "" {
		p.fail(line(n), "base_url", "must not have a query or fragment")
		return
	}
	p.base = strings.TrimSuffix(raw, "/")
}

func (p *fileParser) requests(n ast.Node) {
	seq, ok := p.sequence(n, "requests")
	if !ok {
		return
	}
	if len(seq) == 0 {
		p.fail(line(n), "requests", "required: at least one request")
		return
	}
	names := map[string]int{}
	common := mergeHeaders(p.defaults, p.headers)
	var total float64
	for i, rn := range seq {
		path := fmt.Sprintf("requests[%d]", i)
		fields, ok := p.mapping(rn, path, requestFields)
		if !ok {
			return
		}
		r := request{method: "GET"}
		weight := 1.0
		var name string
		var nameLine int
		var urlField *field
		var own []header
		for fi := range fields {
			f := &fields[fi]
			fp := path + "." + f.key
			if f.val == nil {
				continue
			}
			switch f.key {
			case "name":
				name, _ = p.str(f.val, fp)
				nameLine = line(f.val)
				if p.err == nil && strings.TrimSpace(name) == "" {
					p.fail(nameLine, fp, "empty")
				}
			case "weight":
				w, ok := p.number(f.val, fp)
				if ok && !(w > 0 && w <= maxWeight) {
					p.fail(line(f.val), fp, "must be a number above 0 and at most %d", maxWeight)
				}
				weight = w
			case "method":
				m, ok := p.str(f.val, fp)
				if !ok {
					break
				}
				r.method = strings.ToUpper(m)
				if !contains(methods, r.method) {
					p.fail(line(f.val), fp, "unknown method %q (want one of %s)", m, strings.Join(methods, ", "))
				}
			case "url":
				urlField = f
			case "headers":
				own = p.headerMap(f.val, fp)
			case "body":
				b, ok := p.str(f.val, fp)
				if ok {
					r.body = p.template(b, line(f.val), fp)
				}
			}
		}
		if p.err != nil {
			return
		}
		if urlField == nil {
			p.fail(line(rn), path+".url", "required")
			return
		}
		path0 := p.requestURL(&r, urlField, path+".url")
		if p.err != nil {
			return
		}
		if name == "" {
			name = r.method + " " + path0
			nameLine = line(rn)
		}
		if j, dup := names[name]; dup {
			p.fail(nameLine, path+".name", "duplicate endpoint name %q (requests[%d] has it too): give each request its own name", name, j)
			return
		}
		names[name] = i
		r.endpoint = p.s.endpoint(name)
		r.headers = mergeHeaders(common, own)
		if len(r.headers) > maxHeaders {
			p.fail(line(rn), path+".headers", "more than %d headers with those of the file and -H", maxHeaders)
			return
		}
		r.vars = r.url.vars(r.vars)
		for _, h := range r.headers {
			r.vars = h.value.vars(r.vars)
		}
		r.vars = r.body.vars(r.vars)
		for _, v := range r.vars {
			if p.s.vars[v].kind == varCSV && !containsInt(r.groups, p.s.vars[v].group) {
				r.groups = append(r.groups, p.s.vars[v].group)
			}
		}
		total += weight
		p.s.reqs = append(p.s.reqs, r)
		p.s.cum = append(p.s.cum, total)
	}
}

// requestURL sets r.url from the url field (joined to base_url when it is a
// path) and returns the path for the default endpoint name.
func (p *fileParser) requestURL(r *request, f *field, fp string) string {
	raw, ok := p.str(f.val, fp)
	if !ok {
		return ""
	}
	ln := line(f.val)
	full := raw
	switch {
	case strings.HasPrefix(raw, "/"):
		if p.base == "" {
			p.fail(ln, fp, "a path needs base_url at the top of the file (or write the absolute URL)")
			return ""
		}
		full = p.base + raw
	case hasHTTPScheme(raw):
	default:
		p.fail(ln, fp, "want an absolute http(s) URL, or a path starting with / and base_url")
		return ""
	}
	full = escapeURLText(full)
	// The origin must be fixed: the target is what the hunt probes.
	rest := full[strings.Index(full, "://")+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if strings.Contains(rest[:end], "{{") {
		p.fail(ln, fp, "variables are not allowed in the scheme, host or port")
		return ""
	}
	t := p.template(full, ln, fp)
	if p.err != nil {
		return ""
	}
	// Check the URL with every variable replaced by a plain sample value.
	u, msg := checkURL(sampleTemplate.ReplaceAllString(full, "1"))
	if msg != "" {
		p.fail(ln, fp, "%s", msg)
		return ""
	}
	r.url = t
	p.s.addOrigin(u)
	pathPart := rest[end:]
	if i := strings.IndexAny(pathPart, "?#"); i >= 0 {
		pathPart = pathPart[:i]
	}
	if pathPart == "" {
		pathPart = "/"
	}
	return pathPart
}

var sampleTemplate = regexp.MustCompile(`\{\{[^}]*\}\}`)

func hasHTTPScheme(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// template parses a templated value at line ln of field fp.
func (p *fileParser) template(s string, ln int, fp string) template {
	t, msg := parseTemplate(s, p.lookupVar)
	if msg != "" {
		p.fail(ln, fp, "%s", msg)
	}
	return t
}

func (p *fileParser) lookupVar(name string) (int, bool) {
	i, ok := p.varIndex[name]
	return i, ok
}

// headerMap reads a mapping of header names to (templated) values. Values
// never appear in errors.
func (p *fileParser) headerMap(n ast.Node, path string) []header {
	fields, ok := p.mapping(n, path, nil)
	if !ok {
		return nil
	}
	var out []header
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		fp := path + "." + f.key
		if msg := checkHeaderName(f.key); msg != "" {
			p.fail(f.line, path, "%s", msg)
			return nil
		}
		if f.val == nil {
			p.fail(f.line, fp, "missing value")
			return nil
		}
		v, ok := p.str(f.val, fp)
		if !ok {
			return nil
		}
		if msg := checkHeaderValue(v); msg != "" {
			p.fail(line(f.val), fp, "%s", msg)
			return nil
		}
		t := p.template(v, line(f.val), fp)
		if p.err != nil {
			return nil
		}
		for _, vi := range t.vars(nil) {
			if v := &p.s.vars[vi]; v.ctl >= 0 {
				p.fail(line(f.val), fp, "variable %q has a value with a control character (%s value %d), which a header cannot carry", v.name, v.kind, v.ctl+1)
				return nil
			}
		}
		if seen[strings.ToLower(f.key)] {
			p.fail(f.line, fp, "header given twice (names are case-insensitive)")
			return nil
		}
		seen[strings.ToLower(f.key)] = true
		out = append(out, header{Name: f.key, value: t})
	}
	return out
}

func (p *fileParser) vars(n ast.Node) {
	fields, ok := p.mapping(n, "vars", nil)
	if !ok {
		return
	}
	files := map[string]int{} // CSV path -> group
	var csvs []csvColumn
	for _, f := range fields {
		fp := "vars." + f.key
		if !validVarName(f.key) {
			p.fail(f.line, fp, "not a variable name (letters, digits and _, not starting with a digit)")
			return
		}
		if f.val == nil {
			p.fail(f.line, fp, "missing value: want one of int, seq, pick, csv")
			return
		}
		kinds, ok := p.mapping(f.val, fp, []string{"int", "seq", "pick", "csv"})
		if !ok {
			return
		}
		if len(kinds) != 1 {
			p.fail(line(f.val), fp, "want exactly one of int, seq, pick, csv")
			return
		}
		k := kinds[0]
		kp := fp + "." + k.key
		v := variable{name: f.key, ctl: -1}
		if k.val == nil && k.key != "seq" {
			p.fail(k.line, kp, "missing value")
			return
		}
		switch k.key {
		case "int":
			v.kind = varInt
			mm, ok := p.mapping(k.val, kp, []string{"min", "max"})
			if !ok {
				return
			}
			var haveMin, haveMax bool
			for _, m := range mm {
				if m.val == nil {
					continue
				}
				x, ok := p.integer(m.val, kp+"."+m.key)
				if !ok {
					return
				}
				if m.key == "min" {
					v.min, haveMin = x, true
				} else {
					v.max, haveMax = x, true
				}
			}
			switch {
			case !haveMin:
				p.fail(line(k.val), kp+".min", "required")
			case !haveMax:
				p.fail(line(k.val), kp+".max", "required")
			case v.min > v.max:
				p.fail(line(k.val), kp, "min %d is above max %d", v.min, v.max)
			}
		case "seq":
			v.kind, v.start = varSeq, 1
			v.next = new(atomic.Int64)
			if k.val != nil {
				mm, ok := p.mapping(k.val, kp, []string{"start"})
				if !ok {
					return
				}
				for _, m := range mm {
					if m.val != nil {
						v.start, _ = p.integer(m.val, kp+".start")
					}
				}
			}
		case "pick":
			v.kind = varPick
			items, ok := p.sequence(k.val, kp)
			if !ok {
				return
			}
			if len(items) == 0 {
				p.fail(line(k.val), kp, "empty: want at least one value")
				return
			}
			for i, it := range items {
				s, ok := p.str(it, fmt.Sprintf("%s[%d]", kp, i))
				if !ok {
					return
				}
				if v.ctl < 0 && ctlIndex(s) >= 0 {
					v.ctl = i
				}
				v.values = append(v.values, s)
			}
		case "csv":
			v.kind = varCSV
			mm, ok := p.mapping(k.val, kp, []string{"file", "column"})
			if !ok {
				return
			}
			c := csvColumn{line: line(k.val), path: kp, vari: len(p.s.vars)}
			for _, m := range mm {
				if m.val == nil {
					continue
				}
				s, ok := p.str(m.val, kp+"."+m.key)
				if !ok {
					return
				}
				if m.key == "file" {
					c.file, c.fileLine = s, line(m.val)
				} else {
					c.column, c.colLine = s, line(m.val)
				}
			}
			switch {
			case c.file == "":
				p.fail(c.line, kp+".file", "required")
			case c.column == "":
				p.fail(c.line, kp+".column", "required")
			}
			resolved := c.file
			if !filepath.IsAbs(resolved) {
				resolved = filepath.Join(p.dir, resolved)
			}
			c.resolved = filepath.Clean(resolved)
			g, seen := files[c.resolved]
			if !seen {
				g = len(files)
				files[c.resolved] = g
			}
			v.group = g
			csvs = append(csvs, c)
		}
		if p.err != nil {
			return
		}
		if v.next != nil {
			v.next.Store(v.start)
		}
		if p.varIndex == nil {
			p.varIndex = map[string]int{}
		}
		p.varIndex[v.name] = len(p.s.vars)
		p.s.vars = append(p.s.vars, v)
	}
	p.s.groupRows = make([]int, len(files))
	p.readCSVs(csvs)
}

// mapping returns the fields of a mapping node. allowed lists the keys it
// may have (nil: any). Duplicate keys, unknown keys, rates and durations
// are errors.
func (p *fileParser) mapping(n ast.Node, path string, allowed []string) ([]field, bool) {
	n, ok := p.unwrap(n, path)
	if !ok {
		return nil, false
	}
	m, isMap := n.(*ast.MappingNode)
	if !isMap {
		p.fail(line(n), path, "want a mapping (key: value lines), found %s", describe(n))
		return nil, false
	}
	out := make([]field, 0, len(m.Values))
	seen := make(map[string]int, len(m.Values))
	for _, mv := range m.Values {
		ln := line(mv.Key)
		if _, merge := mv.Key.(*ast.MergeKeyNode); merge {
			p.fail(ln, join(path, "<<"), "merge keys are not supported")
			return nil, false
		}
		k, ok := scalarText(mv.Key)
		if !ok {
			p.fail(ln, path, "keys must be plain names")
			return nil, false
		}
		fp := join(path, k)
		if allowed != nil && !contains(allowed, k) {
			if loadFields[strings.ToLower(k)] {
				p.fail(ln, fp, "rates and durations are not part of a scenario file: give them as flags (--rate, --ramp, --steps, --concurrency, --duration, --max-rate)")
			} else if s := suggest(k, allowed); s != "" {
				p.fail(ln, fp, "unknown field (did you mean %q?)", s)
			} else {
				p.fail(ln, fp, "unknown field (want one of %s)", strings.Join(allowed, ", "))
			}
			return nil, false
		}
		if prev, dup := seen[k]; dup {
			p.fail(ln, fp, "given twice (also on line %d)", prev)
			return nil, false
		}
		seen[k] = ln
		v := mv.Value
		if _, null := v.(*ast.NullNode); null {
			v = nil
		}
		out = append(out, field{key: k, line: ln, val: v})
	}
	return out, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (p *fileParser) sequence(n ast.Node, path string) ([]ast.Node, bool) {
	n, ok := p.unwrap(n, path)
	if !ok {
		return nil, false
	}
	s, isSeq := n.(*ast.SequenceNode)
	if !isSeq {
		p.fail(line(n), path, "want a list, found %s", describe(n))
		return nil, false
	}
	return s.Values, true
}

// unwrap removes an anchor and refuses aliases and tags.
func (p *fileParser) unwrap(n ast.Node, path string) (ast.Node, bool) {
	switch v := n.(type) {
	case *ast.AnchorNode:
		return p.unwrap(v.Value, path)
	case *ast.AliasNode:
		p.fail(line(n), path, "aliases (*name) are not supported")
		return nil, false
	case *ast.TagNode:
		p.fail(line(n), path, "tags (!name) are not supported")
		return nil, false
	case nil:
		p.fail(0, path, "missing value")
		return nil, false
	}
	return n, true
}

// str returns a scalar as text: strings as written, numbers and booleans as
// their source text.
func (p *fileParser) str(n ast.Node, path string) (string, bool) {
	n, ok := p.unwrap(n, path)
	if !ok {
		return "", false
	}
	s, ok := scalarText(n)
	if !ok {
		p.fail(line(n), path, "want a string, found %s", describe(n))
		return "", false
	}
	return s, true
}

func (p *fileParser) integer(n ast.Node, path string) (int64, bool) {
	n, ok := p.unwrap(n, path)
	if !ok {
		return 0, false
	}
	in, isInt := n.(*ast.IntegerNode)
	if sn, isStr := n.(*ast.StringNode); isStr && sn.Token != nil && sn.Token.Type != token.DoubleQuoteType && sn.Token.Type != token.SingleQuoteType && allDigits(strings.TrimPrefix(sn.Value, "-")) {
		p.fail(line(n), path, "integer out of range")
		return 0, false
	}
	if !isInt {
		p.fail(line(n), path, "want an integer, found %s", describe(n))
		return 0, false
	}
	switch x := in.Value.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	p.fail(line(n), path, "integer out of range")
	return 0, false
}

func (p *fileParser) number(n ast.Node, path string) (float64, bool) {
	n, ok := p.unwrap(n, path)
	if !ok {
		return 0, false
	}
	switch x := n.(type) {
	case *ast.IntegerNode:
		switch v := x.Value.(type) {
		case int64:
			return float64(v), true
		case uint64:
			return float64(v), true
		}
	case *ast.FloatNode:
		return x.Value, true
	case *ast.InfinityNode, *ast.NanNode:
		p.fail(line(n), path, "want a finite number")
		return 0, false
	}
	p.fail(line(n), path, "want a number, found %s", describe(n))
	return 0, false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// scalarText returns the text of a scalar node.
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// describe names a node's kind for messages, never its content.
func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "nothing"
	}
	return "something else"
}

func line(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsInt(list []int, x int) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}

// suggest returns the allowed key within edit distance 2 of k, or "".
func suggest(k string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if len(k) >= 3 && strings.HasPrefix(a, strings.ToLower(k)) {
			return a
		}
		if d := editDistance(strings.ToLower(k), a); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// syntaxError turns a YAML parse error into an *Error with its line. The
// library's own formatting quotes the source, which may hold a header
// value, so only its message is kept, with quoted parts removed.
func (p *fileParser) syntaxError(err error) *Error {
	e := &Error{File: p.file, Msg: "not valid YAML"}
	var ye interface {
		GetMessage() string
		GetToken() *token.Token
	}
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line = tk.Position.Line
		}
		msg := ye.GetMessage()
		if !strings.HasPrefix(msg, "mapping key ") { // keys are names, not values
			msg = quoted.ReplaceAllString(msg, `"…"`)
		}
		if strings.Contains(msg, "character") { // "found unknown escape character 'x'"
			msg = quotedRune.ReplaceAllString(msg, `'…'`)
		}
		e.Msg = "not valid YAML: " + msg
	}
	return e
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	quotedRune = regexp.MustCompile(`'(?:[^'\\]|\\[^']*)'`)
)

// prescan bounds the work the YAML parser will do before it runs: it
// returns the first line at which data nests deeper than maxNesting or
// holds more than maxItems entries, with the message, or 0. It
// over-estimates — indentation levels, "- " entries, flow brackets and
// commas outside quotes all count — which only matters for input no
// scenario needs. The content of block scalars (body: |) is not counted.
func prescan(data []byte) (int, string) {
	var indents []int // open indentation levels
	flow, items := 0, 0
	block := -1 // indentation of the line that opened a block scalar, or -1
	ln := 0
	for len(data) > 0 {
		ln++
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		ind := 0
		for ind < len(l) && (l[ind] == ' ' || l[ind] == '\t') {
			ind++
		}
		if ind == len(l) || l[ind] == '#' {
			continue
		}
		if block >= 0 && ind > block {
			continue // block scalar content
		}
		block = -1
		for len(indents) > 0 && indents[len(indents)-1] >= ind {
			indents = indents[:len(indents)-1]
		}
		indents = append(indents, ind)
		items++
		dashes := 0
		for i := ind; i+1 < len(l) && (l[i] == '-' || l[i] == '?') && (l[i+1] == ' ' || l[i+1] == '\t'); {
			dashes++
			i += 2
			for i < len(l) && (l[i] == ' ' || l[i] == '\t') {
				i++
			}
		}
		var q byte
		for i := ind; i < len(l); i++ {
			c := l[i]
			switch {
			case q != 0:
				if c == q {
					q = 0
				}
			case c == '"' || c == '\'':
				q = c
			case c == '[' || c == '{':
				flow++
				items++
			case c == ']' || c == '}':
				if flow > 0 {
					flow--
				}
			case c == ',':
				items++
			}
			if len(indents)+dashes+flow > maxNesting {
				return ln, fmt.Sprintf("nested deeper than %d levels", maxNesting)
			}
		}
		if items > maxItems {
			return ln, fmt.Sprintf("more than %d entries (put long lists of values in a CSV file)", maxItems)
		}
		if blockScalarStart.Match(l) {
			block = ind
		}
	}
	return 0, ""
}

// blockScalarStart matches a line whose value is a block scalar (| or >,
// with optional chomping and indentation indicators and a comment).
var blockScalarStart = regexp.MustCompile(`(?:^|[\s:-])[|>][-+1-9]*[ \t]*(?:#.*)?$`)
