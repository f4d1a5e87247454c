package zoo

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"
)

// quote is a price promise for one product.
type quote struct {
	ID         int64     `json:"id"`
	ProductID  int64     `json:"product_id"`
	SKU        string    `json:"sku"`
	PriceCents int64     `json:"price_cents"`
	ValidUntil time.Time `json:"valid_until"`
}

// quoteValidity is how long a quote holds.
const quoteValidity = 15 * time.Minute

// quoteBook numbers quotes and remembers the last one per product.
type quoteBook struct {
	pricing *pricingClient
	mu      sync.Mutex
	seq     int64
	last    map[int64]quote
}

func newQuoteBook(p *pricingClient) *quoteBook {
	return &quoteBook{pricing: p, last: map[int64]quote{}}
}

// quote prices p and records the quote, holding the book's lock throughout.
func (b *quoteBook) quote(ctx context.Context, p *product) (quote, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	price, err := b.pricing.price(ctx, p.SKU)
	if err != nil {
		return quote{}, err
	}
	b.seq++
	q := quote{ID: b.seq, ProductID: p.ID, SKU: p.SKU, PriceCents: price, ValidUntil: time.Now().Add(quoteValidity)}
	b.last[p.ID] = q
	return q, nil
}

// issue prices p first and takes the lock only to number and record it.
func (b *quoteBook) issue(ctx context.Context, p *product) (quote, error) {
	price, err := b.pricing.price(ctx, p.SKU)
	if err != nil {
		return quote{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	q := quote{ID: b.seq, ProductID: p.ID, SKU: p.SKU, PriceCents: price, ValidUntil: time.Now().Add(quoteValidity)}
	b.last[p.ID] = q
	return q, nil
}

// Worker pool sizes for order quotes: 2 is the broken twin's (a value left
// from development), 64 covers the zoo's load at a few ms per job.
const (
	quoteWorkersSmall = 2
	quoteWorkersLarge = 64
)

// workerPool runs jobs on a fixed number of goroutines; submitters wait for
// a free worker.
type workerPool struct {
	jobs chan func()
	wg   sync.WaitGroup
	once sync.Once
}

func newWorkerPool(n int) *workerPool {
	p := &workerPool{jobs: make(chan func())}
	for range n {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for job := range p.jobs {
				job()
			}
		}()
	}
	return p
}

// do runs f on a worker and waits for it.
func (p *workerPool) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case p.jobs <- func() { defer close(done); f() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func (p *workerPool) close() {
	p.once.Do(func() { close(p.jobs) })
	p.wg.Wait()
}

// replayLogSize bounds the fixed replay log: enough for the last second of
// a busy endpoint.
const replayLogSize = 1024

// replayLog keeps recent responses by request id, for support to replay.
type replayLog struct {
	mu      sync.Mutex
	bounded bool
	entries map[string]*list.Element
	order   *list.List // front = most recent; values are *replayEntry
}

type replayEntry struct {
	id   string
	at   time.Time
	body []byte
}

func newReplayLog(bounded bool) *replayLog {
	return &replayLog{bounded: bounded, entries: map[string]*list.Element{}, order: list.New()}
}

// replayRenderHint sizes the buffer an entry is rendered into: room for the
// request line, its headers and a typical response.
const replayRenderHint = 4096

// record keeps the exchange (request line, headers, response body) under
// id, rendered the way support reads it.
func (l *replayLog) record(id string, r *http.Request, body []byte) {
	buf := bytes.NewBuffer(make([]byte, 0, replayRenderHint))
	fmt.Fprintf(buf, "%s %s\n", r.Method, r.URL.RequestURI())
	for name, values := range r.Header {
		for _, v := range values {
			fmt.Fprintf(buf, "%s: %s\n", name, v)
		}
	}
	buf.WriteByte('\n')
	buf.Write(body)
	e := &replayEntry{id: id, at: time.Now(), body: buf.Bytes()}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.entries[id]; ok {
		l.order.Remove(old)
	}
	l.entries[id] = l.order.PushFront(e)
	if l.bounded {
		for l.order.Len() > replayLogSize {
			last := l.order.Back()
			l.order.Remove(last)
			delete(l.entries, last.Value.(*replayEntry).id)
		}
	}
}

func (l *replayLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

// Price cache of the fixed twin of downstream.slow: prices change rarely,
// so 30 s of staleness is acceptable; a call gets priceBudget before the
// last known price is used instead.
const (
	priceTTL    = 30 * time.Second
	priceBudget = 100 * time.Millisecond
)

type cachedPrice struct {
	cents int64
	at    time.Time
}

// priceCache caches prices per SKU with request coalescing.
type priceCache struct {
	pricing *pricingClient
	group   singleflight.Group
	mu      sync.RWMutex
	m       map[string]cachedPrice
}

func newPriceCache(p *pricingClient) *priceCache {
	return &priceCache{pricing: p, m: map[string]cachedPrice{}}
}

func (c *priceCache) price(ctx context.Context, sku string) (int64, error) {
	c.mu.RLock()
	cp, ok := c.m[sku]
	c.mu.RUnlock()
	if ok && time.Since(cp.at) < priceTTL {
		return cp.cents, nil
	}
	v, err, _ := c.group.Do(sku, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), priceBudget)
		defer cancel()
		cents, err := c.pricing.price(cctx, sku)
		if err != nil {
			return int64(0), err
		}
		c.mu.Lock()
		c.m[sku] = cachedPrice{cents: cents, at: time.Now()}
		c.mu.Unlock()
		return cents, nil
	})
	if err != nil {
		if ok { // stale beats nothing
			return cp.cents, nil
		}
		return 0, err
	}
	return v.(int64), nil
}

// summaryTTL is how long the fixed twin of cache.opportunity serves a
// catalogue summary: products change a few times a day.
const summaryTTL = 5 * time.Second

// summaryCache holds the catalogue summary with request coalescing.
type summaryCache struct {
	group singleflight.Group
	mu    sync.Mutex
	body  []byte
	at    time.Time
}

func (c *summaryCache) get(ctx context.Context, load func(context.Context) ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	body, at := c.body, c.at
	c.mu.Unlock()
	if body != nil && time.Since(at) < summaryTTL {
		return body, nil
	}
	v, err, _ := c.group.Do("summary", func() (any, error) {
		b, err := load(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.body, c.at = b, time.Now()
		c.mu.Unlock()
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// outbox makes tracked events durable before they are acknowledged.
// Per-event (the broken twin): each event is its own file, written,
// fsync'd, renamed into place and its directory fsync'd. Grouped (the fix):
// one writer appends every waiting event to a segment and fsyncs once per
// batch.
type outbox struct {
	dir      string
	perEvent bool
	seq      atomic.Int64
	dirFile  *os.File

	reqs chan outboxReq
	done chan struct{}
	seg  *os.File
}

type outboxReq struct {
	rec []byte
	err chan error
}

// outboxBatch bounds one group commit.
const outboxBatch = 512

func openOutbox(dir string, perEvent bool) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &outbox{dir: dir, perEvent: perEvent, dirFile: d}
	if perEvent {
		return o, nil
	}
	o.seg, err = os.OpenFile(filepath.Join(dir, fmt.Sprintf("segment-%d.jsonl", time.Now().UnixNano())),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o.reqs, o.done = make(chan outboxReq), make(chan struct{})
	go o.writer()
	return o, nil
}

// write makes rec durable.
func (o *outbox) write(ctx context.Context, rec []byte) error {
	if o.perEvent {
		return o.writeFile(rec)
	}
	r := outboxReq{rec: rec, err: make(chan error, 1)}
	select {
	case o.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-o.done:
		return errors.New("outbox: closed")
	}
	return <-r.err
}

func (o *outbox) writeFile(rec []byte) error {
	name := filepath.Join(o.dir, "event-"+strconv.FormatInt(o.seq.Add(1), 10)+".json")
	f, err := os.OpenFile(name+".tmp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	_, werr := f.Write(rec)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := o.dirFile.Sync(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

func (o *outbox) writer() {
	defer close(o.done)
	batch := make([]outboxReq, 0, outboxBatch)
	var buf []byte
	for first := range o.reqs {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < outboxBatch {
			select {
			case r, ok := <-o.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		buf = buf[:0]
		for _, r := range batch {
			buf = append(buf, r.rec...)
		}
		_, err := o.seg.Write(buf)
		if err == nil {
			err = o.seg.Sync()
		}
		if err != nil {
			err = fmt.Errorf("outbox: %w", err)
		}
		for _, r := range batch {
			r.err <- err
		}
	}
}

func (o *outbox) close() error {
	var errs []error
	if o.reqs != nil {
		close(o.reqs)
		<-o.done
		errs = append(errs, o.seg.Close())
	}
	errs = append(errs, o.dirFile.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Connection caps: the broken twin of net.connection-limit accepts at most
// connCapSmall connections with a listen backlog of backlogSmall (a
// "max connections" setting copied from a tiny VM); the fix allows
// connCapLarge and the system's backlog.
const (
	connCapSmall = 8
	backlogSmall = 4
	connCapLarge = 4096
)

// limitListener caps the connections open at once: Accept waits until one
// closes. With small, the kernel's listen backlog is shrunk too, so
// connections beyond it are dropped.
func limitListener(ln net.Listener, small bool) (net.Listener, error) {
	n := connCapLarge
	if small {
		n = connCapSmall
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			ln.Close()
			return nil, fmt.Errorf("listen: backlog needs a TCP listener")
		}
		rc, err := tl.SyscallConn()
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen: %w", err)
		}
		var lerr error
		if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), backlogSmall) }); err != nil || lerr != nil {
			ln.Close()
			return nil, fmt.Errorf("listen backlog: %w", errors.Join(err, lerr))
		}
	}
	return &capListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}, nil
}

type capListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func (l *capListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &capConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *capListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
