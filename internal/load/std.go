package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/chokepoint/chokepoint/internal/scenario"
)

// stdTransport sends requests through net/http: HTTP/2 over TLS (ALPN h2)
// and cleartext (h2c, prior knowledge), and HTTP/1.1 when asked for (to
// compare with h1Transport).
type stdTransport struct {
	tr      *http.Transport
	client  *http.Client
	timeout time.Duration
	maxBody int64
	ua      string

	mu     sync.Mutex
	ctx    context.Context // cancelled by abort
	cancel context.CancelFunc
}

func newStdTransport(cfg *Config, tlsConf *tls.Config, http2 bool) *stdTransport {
	protos := new(http.Protocols)
	if http2 {
		protos.SetHTTP2(true)
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: -1}).DialContext,
		TLSClientConfig:       tlsConf.Clone(),
		TLSHandshakeTimeout:   cfg.Timeout,
		DisableCompression:    true,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   cfg.MaxInflight,
		IdleConnTimeout:       0,
		ResponseHeaderTimeout: 0,
		Protocols:             protos,
	}
	t := &stdTransport{
		tr:      tr,
		timeout: cfg.Timeout,
		maxBody: cfg.MaxBodyBytes,
		ua:      cfg.UserAgent,
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

type stdClient struct {
	t    *stdTransport
	body bytes.Reader
}

func (t *stdTransport) newClient() client { return &stdClient{t: t} }

// rxEnd: net/http does not expose receive timestamps.
func (c *stdClient) rxEnd() int64 { return 0 }

func (c *stdClient) do(r *scenario.Request) (status int, in, out int64, err error) {
	t := c.t
	t.mu.Lock()
	actx := t.ctx
	t.mu.Unlock()
	if actx.Err() != nil {
		return 0, 0, 0, errAborted
	}
	rctx, cancel := context.WithTimeout(actx, t.timeout)
	defer cancel()
	var body io.Reader
	if len(r.Body) > 0 {
		c.body.Reset(r.Body)
		body = &c.body
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(rctx, method, r.URL, body)
	if err != nil {
		return 0, 0, 0, errors.Join(errBadRequest, err)
	}
	for _, h := range r.Header {
		if http.CanonicalHeaderKey(h.Name) == "Host" {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	if t.ua != "" && req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", t.ua)
	}
	out = int64(len(r.Body))
	resp, err := t.client.Do(req)
	if err != nil {
		if actx.Err() != nil {
			return 0, 0, out, errAborted
		}
		return 0, 0, out, err
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, t.maxBody))
	resp.Body.Close()
	if err != nil && actx.Err() != nil {
		err = errAborted
	}
	return resp.StatusCode, n, out, err
}

func (t *stdTransport) abort() {
	t.mu.Lock()
	t.cancel()
	t.mu.Unlock()
}

func (t *stdTransport) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		t.ctx, t.cancel = context.WithCancel(context.Background())
	}
}

func (t *stdTransport) closeIdle() { t.tr.CloseIdleConnections() }
