package trace

import (
	"net"
	"net/url"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// Resource kinds.
const (
	KindSelf = "self" // time in the service's own code (no span of a call covers it)
	KindDB   = "db"   // a database statement
	KindHTTP = "http" // a downstream HTTP endpoint
	KindCall = "call" // any other outgoing call (gRPC, cache, queue, ...)
)

// Resource is where a request spends time: its own code or one downstream
// thing. Name is, by kind: "self"; the normalised statement (as
// pg_stat_statements writes it); "METHOD scheme://host:port/route"; or
// "span name peer".
type Resource struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Self is the resource of a request's own time.
var Self = Resource{Kind: KindSelf, Name: KindSelf}

func (r Resource) String() string {
	if r.Kind == KindSelf {
		return KindSelf
	}
	return r.Kind + " " + r.Name
}

// ResourceOf returns the downstream resource a span calls, and false for a
// span that is not a call out of the service (server and internal spans).
func ResourceOf(s evidence.Span) (Resource, bool) {
	switch {
	case s.DBSystem != "" || s.DBQuery != "":
		name := s.DBQuery
		if name == "" {
			name = s.Name
		}
		return Resource{Kind: KindDB, Name: name}, true
	case s.Kind != evidence.SpanKindClient && s.Kind != evidence.SpanKindProducer:
		return Resource{}, false
	case s.HTTPURL != "" || s.HTTPMethod != "":
		return Resource{Kind: KindHTTP, Name: downstreamName(s)}, true
	}
	name := s.Name
	if s.Peer != "" {
		name += " " + s.Peer
	}
	return Resource{Kind: KindCall, Name: name}, true
}

// downstreamName is "METHOD scheme://host:port/route" (CONTRACT.md §4
// locus.downstream). Without a route template, path segments that look
// like identifiers (numbers, UUIDs, long hex) become {id}, so that
// /price/17 and /price/18 are one downstream.
func downstreamName(s evidence.Span) string {
	method := s.HTTPMethod
	if method == "" {
		method = "HTTP"
	}
	u, err := url.Parse(s.HTTPURL)
	if err != nil || s.HTTPURL == "" {
		u = &url.URL{}
	}
	host := u.Host
	if host == "" {
		host = s.Peer
	}
	if host != "" {
		if _, _, err := net.SplitHostPort(host); err != nil {
			switch u.Scheme {
			case "https":
				host += ":443"
			case "http", "":
				host += ":80"
			}
		}
	}
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	route := s.HTTPRoute
	if route == "" {
		route = templatePath(u.Path)
	}
	if route == "" {
		route = "/"
	}
	if host == "" {
		return method + " " + route
	}
	return method + " " + scheme + "://" + host + route
}

// Endpoint names the request a root span served: "METHOD route" (the
// route template, else the path), or the span name when it is not HTTP.
func Endpoint(root evidence.Span) string {
	if root.HTTPMethod == "" {
		return root.Name
	}
	route := root.HTTPRoute
	if route == "" && root.HTTPURL != "" {
		if u, err := url.Parse(root.HTTPURL); err == nil {
			route = u.Path
		}
	}
	if route == "" {
		return root.Name
	}
	return root.HTTPMethod + " " + route
}

// templatePath replaces identifier-like path segments with {id}.
func templatePath(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if looksLikeID(s) {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// minHexIDLen is the shortest all-hex segment taken for an identifier: a
// 64-bit id in hex has 16 digits; shorter hex-only words ("cafe", "add")
// are more likely names.
const minHexIDLen = 16

func looksLikeID(s string) bool {
	if s == "" {
		return false
	}
	digits, hex := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		isDigit := c >= '0' && c <= '9'
		isHex := isDigit || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-'
		digits = digits && isDigit
		hex = hex && isHex
	}
	return digits || hex && len(s) >= minHexIDLen
}
