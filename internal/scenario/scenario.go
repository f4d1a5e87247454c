// Package scenario reads what chokepoint requests — plain URLs or a scenario
// file (CONTRACT.md §6) — and generates the requests, with their variables
// drawn, for the load engine.
package scenario

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// Request is one request to send, as Generator.Next fills it.
type Request struct {
	Endpoint int    // index into Scenario.Endpoints()
	Method   string // upper case
	URL      string // absolute, expanded
	// Header is merged: defaults (-H) overridden by the file's headers,
	// overridden by the request's headers (names compare case-insensitively).
	Header []Header
	Body   []byte // nil or empty when the request has no body
}

// Scenario is a validated set of weighted request templates. It is safe for
// concurrent use; each user of it draws requests from its own Generator.
// Its only changing state is the seq counters, which all its generators
// share so that a seq value is never drawn twice in a run.
type Scenario struct {
	file      string     // as named to Load or Parse; "" for FromURLs
	vars      []variable // in file order
	reqs      []request
	cum       []float64 // cumulative weights of reqs
	endpoints []string
	origins   []string
	groupRows []int // rows of each CSV file, by group
}

// variable is one entry of vars:, drawn per request.
type variable struct {
	name     string
	kind     varKind
	min, max int64         // int
	start    int64         // seq
	next     *atomic.Int64 // seq: the next value, shared by all generators
	values   []string      // pick, csv (the column)
	group    int           // csv: the file; one row is drawn per file per request
	ctl      int           // index into values of the first one with a control character, or -1
}

type varKind uint8

const (
	varInt varKind = iota + 1
	varSeq
	varPick
	varCSV
)

func (k varKind) String() string {
	switch k {
	case varInt:
		return "int"
	case varSeq:
		return "seq"
	case varPick:
		return "pick"
	case varCSV:
		return "csv"
	}
	return "?"
}

// request is one entry of requests:, ready to expand.
type request struct {
	endpoint int
	method   string
	url      template
	headers  []header
	body     template
	vars     []int // variables it uses, drawn once per request
	groups   []int // CSV files it uses
}

// header is a header whose value may hold variables.
type header struct {
	Name  string
	value template
}

func (h header) name() string { return h.Name }

// FromURLs makes a scenario of plain URLs: a GET of each, equal weights,
// endpoint names "GET /path". Each URL must be absolute http or https with a
// host. URLs with the same path share an endpoint.
func FromURLs(urls []string, headers []Header) (*Scenario, error) {
	if len(urls) == 0 {
		return nil, &Error{Msg: "no URL given"}
	}
	s := &Scenario{}
	def := literalHeaders(headers)
	for i, raw := range urls {
		u, msg := checkURL(raw)
		if msg != "" {
			return nil, &Error{Field: fmt.Sprintf("URL %d (%s)", i+1, redactURL(raw)), Msg: msg}
		}
		r := request{
			endpoint: s.endpoint("GET " + pathOf(u)),
			method:   "GET",
			url:      template{text: u.String()},
			headers:  def,
		}
		s.addOrigin(u)
		s.reqs = append(s.reqs, r)
		s.cum = append(s.cum, float64(i+1))
	}
	return s, nil
}

// Endpoints returns the endpoint names; Request.Endpoint indexes it.
func (s *Scenario) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// URLs returns the distinct origins (scheme://host:port) the scenario
// targets, in order of first appearance.
func (s *Scenario) URLs() []string { return append([]string(nil), s.origins...) }

// endpoint returns the index of name in s.endpoints, adding it when new.
func (s *Scenario) endpoint(name string) int {
	for i, e := range s.endpoints {
		if e == name {
			return i
		}
	}
	s.endpoints = append(s.endpoints, name)
	return len(s.endpoints) - 1
}

func (s *Scenario) addOrigin(u *url.URL) {
	o := origin(u)
	for _, have := range s.origins {
		if have == o {
			return
		}
	}
	s.origins = append(s.origins, o)
}

// literalHeaders turns -H headers into templates that expand to themselves,
// merged so that a later header replaces an earlier one of the same name.
func literalHeaders(hs []Header) []header {
	out := make([]header, 0, len(hs))
	for _, h := range hs {
		out = append(out, header{Name: h.Name, value: template{text: h.Value}})
	}
	return mergeHeaders[header](nil, out)
}

// checkURL parses an absolute http(s) URL; the message says what is wrong.
func checkURL(raw string) (*url.URL, string) {
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, "not a URL: " + err.Error()
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "":
		return nil, "not absolute: want http://host[:port]/path"
	default:
		return nil, "scheme must be http or https"
	}
	if u.Host == "" {
		return nil, "no host"
	}
	if u.Hostname() == "" {
		return nil, "no host name"
	}
	if u.User != nil {
		// The engine sends no user info; a password here would only end up
		// in the run's files.
		return nil, "user info is not sent: give credentials as a header (-H 'Authorization: Basic ...')"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, "port out of range"
		}
	}
	return u, ""
}

// redactURL returns raw with any password hidden, for messages.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if strings.Contains(raw, "@") {
		return "URL with credentials"
	}
	return raw
}

// origin returns scheme://host:port with the default port made explicit.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port
}

// pathOf returns u's path as written (escaped), "/" when empty.
func pathOf(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}
