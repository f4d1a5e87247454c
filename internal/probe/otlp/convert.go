package otlp

import (
	"encoding/hex"
	"hash/fnv"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/secret"
	"github.com/chokepoint/chokepoint/internal/sqlnorm"
)

// Bounds on the strings a span keeps, so one hostile span cannot make a
// record (or the reservoir holding it) large. A normalised statement is
// kept longer than the raw one because it is the key that must match
// pg_stat_statements; 4 KiB covers ORM-generated statements we have seen,
// and pg_stat_statements' own default track_activity_query_size is 1 KiB.
const (
	maxNameBytes      = 256
	maxURLBytes       = 1024
	maxStatementBytes = 1024
	maxQueryBytes     = 4096
	maxParams         = 64 // db.query.parameter.* attributes fingerprinted per span
)

// convertSpan turns one OTLP span into the project's span record. service
// is the resource's service.name. ok is false for a span without valid
// trace and span ids, which cannot be placed in any trace.
func convertSpan(service string, sp ptrace.Span) (evidence.Span, bool) {
	tid, sid := sp.TraceID(), sp.SpanID()
	if tid.IsEmpty() || sid.IsEmpty() {
		return evidence.Span{}, false
	}
	out := evidence.Span{
		TraceID: hex.EncodeToString(tid[:]),
		SpanID:  hex.EncodeToString(sid[:]),
		Service: bound(service, maxNameBytes),
		Name:    bound(sp.Name(), maxNameBytes),
		Kind:    kindName(sp.Kind()),
		StartNS: clampNS(uint64(sp.StartTimestamp())),
		EndNS:   clampNS(uint64(sp.EndTimestamp())),
	}
	if pid := sp.ParentSpanID(); !pid.IsEmpty() {
		out.ParentID = hex.EncodeToString(pid[:])
	}
	out.T = out.StartNS / 1e6
	switch sp.Status().Code() {
	case ptrace.StatusCodeOk:
		out.Status = evidence.SpanStatusOK
	case ptrace.StatusCodeError:
		out.Status = evidence.SpanStatusError
	}
	out.StatusMessage = bound(sp.Status().Message(), maxNameBytes)

	var a attrs
	sp.Attributes().Range(func(k string, v pcommon.Value) bool {
		a.set(k, v)
		return true
	})
	a.fill(&out)
	return out, true
}

// attrs collects the attributes that matter, under both the current and
// the older OpenTelemetry semantic conventions (the first non-empty wins,
// current names listed first).
type attrs struct {
	method, route, urlTemplate, urlFull, httpURL       string
	scheme, httpScheme, urlPath, urlQuery, httpTarget  string
	httpHost, serverAddr, serverPort, netPeerName      string
	netPeerPort, netHostName, netHostPort, peerService string
	netPeerAddr, netPeerAddrPort                       string
	status                                             int
	dbSystem, dbStatement                              string
	params                                             []string // "key=value"
}

func (a *attrs) set(k string, v pcommon.Value) {
	str := func() string { return v.AsString() }
	switch k {
	case "http.request.method":
		a.method = str()
	case "http.method":
		if a.method == "" {
			a.method = str()
		}
	case "http.route":
		a.route = str()
	case "url.template":
		a.urlTemplate = str()
	case "url.full":
		a.urlFull = str()
	case "http.url":
		a.httpURL = str()
	case "url.scheme":
		a.scheme = str()
	case "http.scheme":
		a.httpScheme = str()
	case "url.path":
		a.urlPath = str()
	case "url.query":
		a.urlQuery = str()
	case "http.target":
		a.httpTarget = str()
	case "http.host":
		a.httpHost = str()
	case "server.address":
		a.serverAddr = str()
	case "server.port":
		a.serverPort = str()
	case "net.peer.name":
		a.netPeerName = str()
	case "net.peer.port":
		a.netPeerPort = str()
	case "net.host.name":
		a.netHostName = str()
	case "net.host.port":
		a.netHostPort = str()
	case "network.peer.address", "net.sock.peer.addr":
		a.netPeerAddr = str()
	case "network.peer.port", "net.sock.peer.port":
		a.netPeerAddrPort = str()
	case "peer.service":
		a.peerService = str()
	case "http.response.status_code", "http.status_code":
		if v.Type() == pcommon.ValueTypeInt {
			a.status = int(min(max(v.Int(), 0), 999))
		} else if n, err := strconv.Atoi(v.AsString()); err == nil && n > 0 && n < 1000 {
			a.status = n
		}
	case "db.system.name":
		a.dbSystem = str()
	case "db.system":
		if a.dbSystem == "" {
			a.dbSystem = str()
		}
	case "db.query.text":
		a.dbStatement = str()
	case "db.statement":
		if a.dbStatement == "" {
			a.dbStatement = str()
		}
	default:
		if name, ok := strings.CutPrefix(k, "db.query.parameter."); ok && len(a.params) < maxParams {
			a.params = append(a.params, name+"="+v.AsString())
		}
	}
}

func (a *attrs) fill(out *evidence.Span) {
	out.HTTPMethod = bound(strings.ToUpper(a.method), 16)
	out.HTTPRoute = bound(first(a.route, a.urlTemplate), maxURLBytes)
	out.HTTPStatus = a.status
	rawURL := first(a.urlFull, a.httpURL)
	if rawURL == "" && (a.urlPath != "" || a.httpTarget != "") {
		// A server span: rebuild what was requested from its parts.
		target := a.httpTarget
		if target == "" {
			target = a.urlPath
			if a.urlQuery != "" {
				target += "?" + a.urlQuery
			}
		}
		host := first(a.httpHost, hostPort(first(a.serverAddr, a.netHostName), first(a.serverPort, a.netHostPort)))
		if scheme := first(a.scheme, a.httpScheme); scheme != "" && host != "" {
			rawURL = scheme + "://" + host + target
		} else {
			rawURL = target
		}
	}
	out.HTTPURL = bound(cleanURL(rawURL), maxURLBytes)

	if out.Kind == evidence.SpanKindClient || out.Kind == evidence.SpanKindProducer || a.dbSystem != "" {
		peer := hostPort(first(a.serverAddr, a.netPeerName), first(a.serverPort, a.netPeerPort))
		if peer == "" && a.urlFull+a.httpURL != "" {
			if u, err := url.Parse(first(a.urlFull, a.httpURL)); err == nil {
				peer = u.Host
			}
		}
		if peer == "" {
			peer = hostPort(a.netPeerAddr, a.netPeerAddrPort)
		}
		if peer == "" {
			peer = a.peerService
		}
		out.Peer = bound(peer, maxNameBytes)
	}

	out.DBSystem = bound(a.dbSystem, maxNameBytes)
	if a.dbStatement != "" {
		st := sqlnorm.Parse(a.dbStatement)
		out.DBQuery = bound(st.Query, maxQueryBytes)
		if !sqlnorm.MayHoldSecret(a.dbStatement) {
			out.DBStatement = bound(a.dbStatement, maxStatementBytes)
		}
		switch {
		case st.Params == 0:
			out.DBArgs = fingerprint(st.Consts)
		case len(a.params) > 0:
			slices.Sort(a.params)
			out.DBArgs = fingerprint(a.params)
		}
	}
}

// fingerprint hashes a list of values (FNV-1a 64, hex). The values
// themselves are never written: they may be personal data.
func fingerprint(vals []string) string {
	h := fnv.New64a()
	for _, v := range vals {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cleanURL removes user info and redacts the values of query parameters
// whose names look sensitive (token, key, session, ...).
func cleanURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Keep what cannot leak: the part before any query or user info.
		raw, _, _ = strings.Cut(raw, "?")
		if _, after, ok := strings.Cut(raw, "@"); ok {
			return after
		}
		return raw
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		redacted := false
		for k := range q {
			if secret.IsSensitiveHeader(k) {
				q[k] = []string{secret.Redacted}
				redacted = true
			}
		}
		if redacted {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

func hostPort(host, port string) string {
	switch {
	case host == "":
		return ""
	case port == "":
		return host
	}
	return net.JoinHostPort(host, port)
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// bound returns s cut to at most n bytes on a UTF-8 boundary, as a fresh
// string, so the record never pins the (large) request it came from.
func bound(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.Clone(s)
}

func clampNS(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}

func kindName(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindInternal:
		return evidence.SpanKindInternal
	case ptrace.SpanKindServer:
		return evidence.SpanKindServer
	case ptrace.SpanKindClient:
		return evidence.SpanKindClient
	case ptrace.SpanKindProducer:
		return evidence.SpanKindProducer
	case ptrace.SpanKindConsumer:
		return evidence.SpanKindConsumer
	}
	return evidence.SpanKindUnspecified
}
