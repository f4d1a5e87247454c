package load

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chokepoint/chokepoint/internal/scenario"
)

// h1Transport is chokepoint's own HTTP/1.1 client on raw connections: one
// request at a time per keep-alive connection, a request written with one
// write, the response head parsed in place and the body discarded from the
// read buffer. It exists because net/http's client costs several times more
// CPU per request (docs/performance.md), and a generator that burns the CPU
// it shares with the target measures itself.
type h1Transport struct {
	timeout time.Duration
	maxBody int64
	dialer  net.Dialer
	tlsConf *tls.Config
	ua      string

	mu      sync.Mutex
	origins map[string]*h1Origin
	conns   map[*h1Conn]struct{} // every open connection, for abort
	aborted atomic.Bool
	gate    atomic.Pointer[readGate] // set during open-model runs that may defer reads
	looped  atomic.Bool              // set during closed-model runs with event loops (closedLoop)
	poll    *poller                  // private epoll set for pollConns, made on first use (mu)
	noPoll  bool                     // no poller: never try again (mu)
	ctx     context.Context          // cancelled by abort (stops dials)
	cancel  context.CancelFunc
}

// h1Origin is one scheme://authority with its idle connections (a LIFO
// stack, so the busiest connections stay warm).
type h1Origin struct {
	key        string // scheme://authority
	addr       string // host:port to dial
	host       string // Host header
	serverName string // TLS server name, "" without TLS

	mu   sync.Mutex
	idle []*h1Conn
	ap   netip.AddrPort // the resolved address, for pollConns (mu)
	apOK bool
}

type h1Conn struct {
	nc       net.Conn
	rx       *pollConn // nc when it is one (kernel receive timestamps), else nil
	rxEnd    int64     // receive timestamp of the last exchange's end, 0: unknown
	br       *bufio.Reader
	bw       *bufio.Writer
	origin   *h1Origin
	used     bool      // has carried a complete exchange
	deadline time.Time // the deadline currently set on nc
}

func newH1Transport(cfg *Config, tlsConf *tls.Config) *h1Transport {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{"http/1.1"}
	ctx, cancel := context.WithCancel(context.Background())
	return &h1Transport{
		ctx:     ctx,
		cancel:  cancel,
		timeout: cfg.Timeout,
		maxBody: cfg.MaxBodyBytes,
		dialer:  net.Dialer{Timeout: cfg.Timeout, KeepAlive: -1},
		tlsConf: tc,
		ua:      cfg.UserAgent,
		origins: map[string]*h1Origin{},
		conns:   map[*h1Conn]struct{}{},
	}
}

// h1Client is one worker's handle on the transport (not safe for
// concurrent use).
type h1Client struct {
	t       *h1Transport
	lastKey string
	last    *h1Origin
	rxLast  int64   // see h1Conn.rxEnd, for the last do
	lastPut *h1Conn // the connection the last do left idle, nil if none
}

func (t *h1Transport) newClient() client { return &h1Client{t: t} }

// errBadRequest marks a request that cannot be written (a bad URL, a header
// with a line break): the generator's input, not the target, is at fault.
var errBadRequest = errors.New("request cannot be sent")

// splitURL splits an absolute http(s) URL without allocating.
func splitURL(u string) (key, authority, uri string, tls bool, err error) {
	var rest string
	switch {
	case strings.HasPrefix(u, "http://"):
		rest = u[len("http://"):]
	case strings.HasPrefix(u, "https://"):
		rest, tls = u[len("https://"):], true
	default:
		return "", "", "", false, fmt.Errorf("%w: url %q: want http:// or https://", errBadRequest, u)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority = rest[:end]
	if authority == "" || strings.IndexByte(authority, '@') >= 0 {
		return "", "", "", false, fmt.Errorf("%w: url %q: want scheme://host[:port]/path without user info", errBadRequest, u)
	}
	key = u[:len(u)-len(rest)+end]
	uri = rest[end:]
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	switch {
	case uri == "":
		uri = "/"
	case uri[0] == '?':
		uri = "/" + uri
	}
	if strings.ContainsAny(uri, " \r\n") {
		return "", "", "", false, fmt.Errorf("%w: url %q: space or line break in the path", errBadRequest, u)
	}
	return key, authority, uri, tls, nil
}

func (c *h1Client) origin(key, authority string, secure bool) *h1Origin {
	if c.last != nil && key == c.lastKey {
		return c.last
	}
	t := c.t
	t.mu.Lock()
	o, ok := t.origins[key]
	if !ok {
		o = &h1Origin{key: key, addr: authority, host: authority}
		host, _, err := net.SplitHostPort(authority)
		if err != nil { // no port: the scheme's
			host = strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]")
			port := "80"
			if secure {
				port = "443"
			}
			o.addr = net.JoinHostPort(host, port)
		}
		if secure {
			o.serverName = host
		}
		t.origins[key] = o
	}
	t.mu.Unlock()
	c.lastKey, c.last = o.key, o
	return o
}

func (c *h1Client) rxEnd() int64 { return c.rxLast }

// do sends r and reads its answer. A keep-alive connection that turns out
// to have been closed by the server (nothing read back) is retried once on
// a fresh one, as browsers and net/http do.
func (c *h1Client) do(r *scenario.Request) (status int, in, out int64, err error) {
	return c.attempt(r, time.Now().Add(c.t.timeout), 0)
}

// retryStale is do's second attempt, on a fresh connection within the
// first's deadline, for a request whose connection turned out stale
// elsewhere (a closed-model event loop).
func (c *h1Client) retryStale(r *scenario.Request, deadline time.Time) (status int, in, out int64, err error) {
	return c.attempt(r, deadline, 1)
}

// attempt runs do from attempt first (0, or 1 for the retry).
func (c *h1Client) attempt(r *scenario.Request, deadline time.Time, first int) (status int, in, out int64, err error) {
	key, authority, uri, secure, err := splitURL(r.URL)
	if err != nil {
		return 0, 0, 0, err
	}
	o := c.origin(key, authority, secure)
	c.rxLast = 0
	c.lastPut = nil
	for attempt := first; ; attempt++ {
		conn, err := c.t.get(o, deadline, attempt > 0)
		if err != nil {
			return 0, 0, 0, err
		}
		status, in, out, reusable, stale, err := conn.exchange(c.t, r, uri, deadline)
		c.rxLast = conn.rxEnd
		if err == nil && c.t.aborted.Load() {
			err = errAborted
		}
		if err == nil && reusable {
			c.t.put(conn)
			c.lastPut = conn
			return status, in, out, nil
		}
		c.t.closeConn(conn)
		if err == nil {
			return status, in, out, nil
		}
		if stale && conn.used && attempt == 0 && !c.t.aborted.Load() {
			continue
		}
		return status, in, out, err
	}
}

// errAborted is the error of a request cut short by Engine abort.
var errAborted = errors.New("request aborted")

// get returns an idle connection to o, or dials one (always when fresh:
// after a stale connection, the other idle ones are likely stale too).
func (t *h1Transport) get(o *h1Origin, deadline time.Time, fresh bool) (*h1Conn, error) {
	o.mu.Lock()
	if n := len(o.idle); n > 0 && !fresh {
		c := o.idle[n-1]
		o.idle[n-1] = nil
		o.idle = o.idle[:n-1]
		o.mu.Unlock()
		return c, nil
	}
	o.mu.Unlock()
	if t.aborted.Load() {
		return nil, errAborted
	}
	t.mu.Lock()
	ctx := t.ctx
	t.mu.Unlock()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var nc net.Conn
	var err error
	if p := t.pollerFor(o); p != nil {
		nc, err = t.dialPoll(dctx, p, o, deadline)
	} else {
		nc, err = t.dialer.DialContext(dctx, "tcp", o.addr)
	}
	if err != nil {
		return nil, err
	}
	if o.serverName != "" {
		tc := t.tlsConf.Clone()
		if tc.ServerName == "" {
			tc.ServerName = o.serverName
		}
		tlsConn := tls.Client(nc, tc)
		if err := tlsConn.HandshakeContext(dctx); err != nil {
			nc.Close()
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			return nil, &tlsError{err}
		}
		nc = tlsConn
	}
	c := &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, readBufSize), bw: bufio.NewWriterSize(nc, 4<<10), origin: o}
	c.rx, _ = nc.(*pollConn)
	t.mu.Lock()
	t.conns[c] = struct{}{}
	aborted := t.aborted.Load()
	t.mu.Unlock()
	if aborted {
		t.closeConn(c)
		return nil, errAborted
	}
	return c, nil
}

func (t *h1Transport) put(c *h1Conn) {
	o := c.origin
	o.mu.Lock()
	o.idle = append(o.idle, c)
	o.mu.Unlock()
}

// reclaim takes c out of its origin's idle connections; false if another
// request took it meanwhile.
func (t *h1Transport) reclaim(c *h1Conn) bool {
	o := c.origin
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.idle) - 1; i >= 0; i-- {
		if o.idle[i] == c {
			o.idle = slices.Delete(o.idle, i, i+1)
			return true
		}
	}
	return false
}

func (t *h1Transport) closeConn(c *h1Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.nc.Close()
}

// abort fails every request in flight now and every later one.
func (t *h1Transport) abort() {
	t.aborted.Store(true)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cancel()
	for c := range t.conns {
		c.nc.SetDeadline(time.Unix(1, 0))
	}
}

// reset readies an aborted transport for another run: it closes every
// connection (their deadlines were spoiled) and accepts requests again.
func (t *h1Transport) reset() {
	if !t.aborted.Load() {
		return
	}
	t.closeIdle()
	t.mu.Lock()
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.Unlock()
	t.aborted.Store(false)
}

// trimIdle closes each origin's idle connections beyond keep, the least
// recently used first.
func (t *h1Transport) trimIdle(keep int) {
	t.mu.Lock()
	origins := slices.Collect(maps.Values(t.origins))
	t.mu.Unlock()
	for _, o := range origins {
		o.mu.Lock()
		var cold []*h1Conn
		if n := len(o.idle) - keep; n > 0 {
			cold = slices.Clone(o.idle[:n]) // the bottom of the LIFO
			o.idle = slices.Delete(o.idle, 0, n)
		}
		o.mu.Unlock()
		for _, c := range cold {
			t.closeConn(c)
		}
	}
}

// closeIdle closes every idle connection.
func (t *h1Transport) closeIdle() { t.trimIdle(0) }

// deadlineSlack lets a connection keep its deadline for a while instead of
// resetting it for every request: a request's timeout is then between
// Timeout-deadlineSlack and Timeout. Resetting costs timer-heap work on every
// request; 1/64 of the timeout is invisible next to the timeout itself.
const deadlineSlackDivisor = 64

// exchange writes one request and reads its response. stale reports that
// the connection failed before any byte of a response came back.
func (c *h1Conn) exchange(t *h1Transport, r *scenario.Request, uri string, deadline time.Time) (status int, in, out int64, reusable, stale bool, err error) {
	c.rxEnd = 0
	if err := c.setDeadline(t, deadline); err != nil {
		return 0, 0, 0, false, true, err
	}
	if t.aborted.Load() {
		return 0, 0, 0, false, false, errAborted
	}
	out, err = c.writeRequest(r, uri, t.ua)
	if err != nil {
		return 0, 0, out, false, !errors.Is(err, errBadRequest), err
	}
	stamped := c.rx != nil && c.rx.gated() && c.br.Buffered() == 0 // else bytes read before are the answer's
	if stamped {
		if g := t.gate.Load(); g != nil {
			g.wait(deadline)
		}
		c.rx.rxStamp() // forget what came before
	}
	status, in, reusable, started, err := readResponse(c.br, r.Method == "HEAD", t.maxBody)
	if err != nil {
		return status, in, out, false, !started, err
	}
	c.used = true
	if stamped {
		c.rxEnd = c.rx.rxStamp()
	}
	return status, in, out, reusable, false, nil
}

// setDeadline gives the connection the request's deadline, or keeps the
// one it has when that is at most 1/deadlineSlackDivisor of the timeout
// earlier (see deadlineSlackDivisor).
func (c *h1Conn) setDeadline(t *h1Transport, deadline time.Time) error {
	if deadline.After(c.deadline.Add(t.timeout/deadlineSlackDivisor)) || deadline.Before(c.deadline) {
		if err := c.nc.SetDeadline(deadline); err != nil {
			return err
		}
		c.deadline = deadline
	}
	return nil
}

// readResponse reads one response (head and body) from br. started reports
// whether any byte of it was read.
func readResponse(br *bufio.Reader, head bool, maxBody int64) (status int, in int64, reusable, started bool, err error) {
	h, started, err := readHead(br)
	in = h.headBytes
	if err != nil {
		return 0, in, false, started, err
	}
	n, reusable, err := readBody(br, h, head, maxBody)
	return h.status, in + n, reusable && err == nil, true, err
}

// writeRequest writes r in one write. Host comes from the URL unless a Host
// header overrides it; Content-Length is always computed; Transfer-Encoding
// and Connection from the caller are dropped (the framing is ours).
func (c *h1Conn) writeRequest(r *scenario.Request, uri, ua string) (int64, error) {
	method := r.Method
	if method == "" {
		method = "GET"
	}
	if !validToken(method) {
		return 0, fmt.Errorf("%w: method %q", errBadRequest, method)
	}
	host := c.origin.host
	hasUA := false
	for i := range r.Header {
		h := &r.Header[i]
		if !validToken(h.Name) || strings.ContainsAny(h.Value, "\r\n") {
			return 0, fmt.Errorf("%w: header %q: bad name or line break in value", errBadRequest, h.Name)
		}
		switch {
		case strings.EqualFold(h.Name, "Host"):
			host = h.Value
		case strings.EqualFold(h.Name, "User-Agent"):
			hasUA = true
		}
	}
	w := c.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if !hasUA && ua != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(ua)
		w.WriteString("\r\n")
	}
	for i := range r.Header {
		h := &r.Header[i]
		if strings.EqualFold(h.Name, "Host") || strings.EqualFold(h.Name, "Content-Length") ||
			strings.EqualFold(h.Name, "Transfer-Encoding") || strings.EqualFold(h.Name, "Connection") {
			continue
		}
		w.WriteString(h.Name)
		w.WriteString(": ")
		w.WriteString(h.Value)
		w.WriteString("\r\n")
	}
	if len(r.Body) > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
		var num [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(num[:0], int64(len(r.Body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	n := int64(w.Buffered()) + int64(len(r.Body))
	if len(r.Body) > 0 {
		w.Write(r.Body)
	}
	if err := w.Flush(); err != nil {
		return n, err
	}
	return n, nil
}

// validToken reports whether s is a non-empty RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
