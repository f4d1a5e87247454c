package zoo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Pricing latencies. pricingLatency is a healthy dependency on the same
// network (a few ms, like an internal service with its own database);
// pricingSlowLatency is one that has become the slowest part of every
// request (an order of magnitude above the zoo's own work).
const (
	pricingLatency     = 3 * time.Millisecond
	pricingSlowLatency = 40 * time.Millisecond
	// pricingJitter spreads latencies by up to ±20%, as real ones are.
	pricingJitter = 0.2
)

// carrierLatency is how long pricing takes to estimate an order's delivery:
// it asks the carrier's tracking API, a third party across the internet (a
// continental round trip plus the carrier's own lookup: tens of ms, often
// more). Long enough that a connection held across it is held for the
// whole request.
const carrierLatency = 80 * time.Millisecond

// Shipping's concurrency caps: the small one makes the endpoint shed load
// at 4 calls in flight; the large one is the fixed twin's.
const (
	shippingCapSmall = 4
	shippingCapLarge = 256
)

// pricingServer is the downstream "pricing" service: prices and shipping
// estimates, each answered after the latency of its own (simulated) backend.
type pricingServer struct {
	latency     time.Duration
	shippingCap int64 // 0 = unlimited
	inflight    atomic.Int64
	srv         *http.Server
	ln          net.Listener
}

func startPricing(ln net.Listener, latency time.Duration, shippingCap int, tracer trace.Tracer, log *slog.Logger) *pricingServer {
	p := &pricingServer{latency: latency, shippingCap: int64(shippingCap), ln: ln}
	mux := http.NewServeMux()
	mux.Handle("GET /price", instrument(tracer, nil, "/price", http.HandlerFunc(p.price)))
	mux.Handle("GET /shipping", instrument(tracer, nil, "/shipping", http.HandlerFunc(p.shipping)))
	mux.Handle("GET /delivery", instrument(tracer, nil, "/delivery", http.HandlerFunc(p.delivery)))
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pricing server", "err", err)
		}
	}()
	return p
}

func (p *pricingServer) addr() string { return p.ln.Addr().String() }

func (p *pricingServer) close(ctx context.Context) error { return p.srv.Shutdown(ctx) }

// backend waits as long as the service's own backend takes.
func (p *pricingServer) backend(ctx context.Context) error { return wait(ctx, p.latency) }

// wait waits about latency (with pricingJitter), or until ctx ends.
func wait(ctx context.Context, latency time.Duration) error {
	d := time.Duration(float64(latency) * (1 + pricingJitter*(2*rand.Float64()-1)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type priceReply struct {
	SKU        string `json:"sku"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}

// listPrice is a SKU's deterministic list price.
func listPrice(sku string) int64 {
	h := fnv.New32a()
	h.Write([]byte(sku))
	return 499 + int64(h.Sum32()%200000)
}

func (p *pricingServer) price(w http.ResponseWriter, r *http.Request) {
	sku := r.URL.Query().Get("sku")
	if sku == "" {
		http.Error(w, "sku required", http.StatusBadRequest)
		return
	}
	if err := p.backend(r.Context()); err != nil {
		return
	}
	writeJSON(w, priceReply{SKU: sku, PriceCents: listPrice(sku), Currency: "EUR"})
}

type shippingReply struct {
	SKU        string `json:"sku"`
	Region     string `json:"region"`
	Days       int    `json:"days"`
	PriceCents int64  `json:"price_cents"`
}

func (p *pricingServer) shipping(w http.ResponseWriter, r *http.Request) {
	n := p.inflight.Add(1)
	defer p.inflight.Add(-1)
	if p.shippingCap > 0 && n > p.shippingCap {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	sku, region := q.Get("sku"), q.Get("region")
	if sku == "" || region == "" {
		http.Error(w, "sku and region required", http.StatusBadRequest)
		return
	}
	if err := p.backend(r.Context()); err != nil {
		return
	}
	days := 2 + int(listPrice(sku+region)%5)
	writeJSON(w, shippingReply{SKU: sku, Region: region, Days: days, PriceCents: 490 + 100*int64(days)})
}

type deliveryReply struct {
	OrderID int64 `json:"order_id"`
	Days    int   `json:"days"`
}

// delivery estimates when an order arrives, from the carrier.
func (p *pricingServer) delivery(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.URL.Query().Get("order"), 10, 64)
	if err != nil || id < 1 {
		http.Error(w, "order required", http.StatusBadRequest)
		return
	}
	if err := wait(r.Context(), carrierLatency); err != nil {
		return
	}
	writeJSON(w, deliveryReply{OrderID: id, Days: 1 + int(id%5)})
}

// errUnavailable is a downstream answer of 503.
var errUnavailable = errors.New("pricing: service unavailable")

// pricingClient calls the pricing service.
type pricingClient struct {
	base   string // http://host:port
	client *http.Client
}

// downstreamTimeout bounds one pricing call: well above its latency, below
// the load generator's request timeout.
const downstreamTimeout = 2 * time.Second

func newPricingClient(addr string, tracer trace.Tracer) *pricingClient {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	return &pricingClient{
		base:   "http://" + addr,
		client: &http.Client{Transport: &tracingTransport{base: tr, tracer: tracer}, Timeout: downstreamTimeout},
	}
}

func (c *pricingClient) close() { c.client.CloseIdleConnections() }

// get calls route with query and decodes the JSON answer into v.
func (c *pricingClient) get(ctx context.Context, route string, query url.Values, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+route+"?"+query.Encode(), nil)
	if err != nil {
		return fmt.Errorf("pricing %s: %w", route, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("pricing %s: %w", route, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("pricing %s: %w", route, err)
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("pricing %s: %w", route, errUnavailable)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("pricing %s: status %d", route, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("pricing %s: %w", route, err)
	}
	return nil
}

// price returns the current price of sku.
func (c *pricingClient) price(ctx context.Context, sku string) (int64, error) {
	var r priceReply
	if err := c.get(ctx, "/price", url.Values{"sku": {sku}}, &r); err != nil {
		return 0, err
	}
	return r.PriceCents, nil
}

// shipping returns the shipping estimate of sku to region.
func (c *pricingClient) shipping(ctx context.Context, sku, region string) (shippingReply, error) {
	var r shippingReply
	err := c.get(ctx, "/shipping", url.Values{"sku": {sku}, "region": {region}}, &r)
	return r, err
}

// delivery returns the carrier's delivery estimate of order id.
func (c *pricingClient) delivery(ctx context.Context, id int64) (deliveryReply, error) {
	var r deliveryReply
	err := c.get(ctx, "/delivery", url.Values{"order": {strconv.FormatInt(id, 10)}}, &r)
	return r, err
}

// Retries of a shed shipping call (the fixed twin of errors.under-load):
// up to shippingRetries more attempts, waiting a random time up to
// retryBase·2^attempt (full jitter, as in AWS's "Exponential Backoff and
// Jitter").
const (
	shippingRetries = 4
	retryBase       = 2 * time.Millisecond
)

func (c *pricingClient) shippingWithRetry(ctx context.Context, sku, region string) (shippingReply, error) {
	for attempt := 0; ; attempt++ {
		r, err := c.shipping(ctx, sku, region)
		if err == nil || !errors.Is(err, errUnavailable) || attempt == shippingRetries {
			return r, err
		}
		wait := time.Duration(rand.Int64N(int64(retryBase) << attempt))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return r, ctx.Err()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.Write(append(b, '\n'))
}
