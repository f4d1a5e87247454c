package zoo

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// Input bounds: requests are untrusted.
const (
	maxQueryLen = 64 // search terms
	maxCartSize = 20 // items in one cart quote
	historyRows = 50 // orders per history page
	recentRows  = 50 // orders per recent page
	pageSize    = 50 // products per catalogue page (the fix of payload.large)
	reportRows  = 10 // products in a sales report
)

// errNoDB answers database routes of a zoo started without a DSN.
var errNoDB = errors.New("no database configured")

type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

func notFound(what string) error {
	return &httpError{code: http.StatusNotFound, err: errors.New(what + " not found")}
}

// fail answers err: its own status for an httpError, 502 for a failed
// downstream, 503 without a database, else 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var he *httpError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, errUnavailable):
		code = http.StatusBadGateway
	case errors.Is(err, errNoDB):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away
	}
	if code >= 500 {
		s.log.Warn("request failed", "path", r.URL.Path, "status", code, "err", err)
	}
	http.Error(w, err.Error(), code)
}

func intParam(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, badRequest("%s: want a positive integer, got %q", name, v)
	}
	return n, nil
}

func (s *Server) db() error {
	if s.pool == nil {
		return errNoDB
	}
	return nil
}

func (s *Server) productParam(r *http.Request, name string) (*product, error) {
	id, err := intParam(r, name)
	if err != nil {
		return nil, err
	}
	p := s.cat.byID(id)
	if p == nil {
		return nil, notFound("product")
	}
	return p, nil
}

func categoryParam(r *http.Request) (string, error) {
	c := r.URL.Query().Get("category")
	for _, k := range categories {
		if k == c {
			return c, nil
		}
	}
	return "", badRequest("category: unknown %q", c)
}

// Parsers of the routes' parameters, for fetchFor: a database route checks
// for the database before its parameters.

// dbID parses the positive integer parameter name of a database route.
func (s *Server) dbID(name string) func(*http.Request) (int64, error) {
	return func(r *http.Request) (int64, error) {
		if err := s.db(); err != nil {
			return 0, err
		}
		return intParam(r, name)
	}
}

// dbCategory parses the category parameter of a database route.
func (s *Server) dbCategory(r *http.Request) (string, error) {
	if err := s.db(); err != nil {
		return "", err
	}
	return categoryParam(r)
}

// productArg parses the parameter name as a product of the catalogue.
func (s *Server) productArg(name string) func(*http.Request) (*product, error) {
	return func(r *http.Request) (*product, error) { return s.productParam(r, name) }
}

// fetchFor is the shape of a route's work: parse the request's parameters,
// then fetch the answer for them. Routes pass their fetch functions by name
// (not wrapped in closures), so profiles and traces show those names.
func fetchFor[P, T any](r *http.Request, parse func(*http.Request) (P, error), fetch func(context.Context, P) (T, error)) (T, error) {
	p, err := parse(r)
	if err != nil {
		var zero T
		return zero, err
	}
	return fetch(r.Context(), p)
}

// serveJSON answers a route with fetchFor's result as JSON, or with its
// error.
func serveJSON[P, T any](s *Server, w http.ResponseWriter, r *http.Request, parse func(*http.Request) (P, error), fetch func(context.Context, P) (T, error)) {
	v, err := fetchFor(r, parse, fetch)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, v)
}

// collect runs sql on db and scans each row of its result with scan.
func collect[T any](ctx context.Context, db *pgxpool.Pool, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

type order struct {
	ID         int64     `json:"id"`
	CustomerID int64     `json:"customer_id"`
	ProductID  int64     `json:"product_id"`
	Quantity   int32     `json:"quantity"`
	TotalCents int64     `json:"total_cents"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	Product    string    `json:"product,omitempty"`
	Customer   *customer `json:"customer,omitempty"`
}

type customer struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Region string `json:"region"`
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Server) orderByID(ctx context.Context, q querier, id int64) (order, error) {
	var o order
	err := q.QueryRow(ctx, queryOrderByID, id).Scan(&o.ID, &o.CustomerID, &o.ProductID, &o.Quantity,
		&o.TotalCents, &o.Status, &o.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, notFound("order")
	}
	if err != nil {
		return o, fmt.Errorf("order %d: %w", id, err)
	}
	if p := s.cat.byID(o.ProductID); p != nil {
		o.Product = p.Name
	}
	return o, nil
}

func customerByID(ctx context.Context, q querier, id int64) (customer, error) {
	var c customer
	err := q.QueryRow(ctx, queryCustomerByID, id).Scan(&c.ID, &c.Name, &c.Email, &c.Region)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, notFound("customer")
	}
	if err != nil {
		return c, fmt.Errorf("customer %d: %w", id, err)
	}
	return c, nil
}

// requestID is the caller's X-Request-Id, or a new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		return id
	}
	var b [16]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// GET /orders?id=N
func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	body, err := fetchFor(r, s.dbID("id"), s.orderJSON)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.on(MemoryLeak) {
		s.replay.record(requestID(r), r, body)
	}
	writeBody(w, body)
}

// orderJSON is order id as the JSON its page answers.
func (s *Server) orderJSON(ctx context.Context, id int64) ([]byte, error) {
	o, err := s.orderByID(ctx, s.pool, id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

func writeBody(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// GET /orders/history?customer=N
func (s *Server) orderHistory(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbID("customer"), s.historyPage)
}

// historyPage is customer cid's latest orders.
func (s *Server) historyPage(ctx context.Context, cid int64) (map[string]any, error) {
	orders, err := collect(ctx, s.pool, func(row pgx.CollectableRow) (order, error) {
		o := order{CustomerID: cid}
		err := row.Scan(&o.ID, &o.ProductID, &o.Quantity, &o.TotalCents, &o.Status, &o.CreatedAt)
		if p := s.cat.byID(o.ProductID); p != nil {
			o.Product = p.Name
		}
		return o, err
	}, queryOrderHistory, cid, historyRows)
	if err != nil {
		return nil, err
	}
	return map[string]any{"customer_id": cid, "orders": orders}, nil
}

// GET /orders/recent?before=N
func (s *Server) recentOrders(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbID("before"), s.recentPage)
}

// recentPage is the page of orders before an id, with their customers.
func (s *Server) recentPage(ctx context.Context, before int64) (map[string]any, error) {
	load := s.recentJoined
	if s.broken(DBNPlusOne) {
		load = s.recentWithCustomers
	}
	orders, err := load(ctx, before)
	if err != nil {
		return nil, err
	}
	return map[string]any{"orders": orders}, nil
}

// recentWithCustomers loads a page of orders, then each order's customer.
func (s *Server) recentWithCustomers(ctx context.Context, before int64) ([]order, error) {
	orders, err := collect(ctx, s.pool, func(row pgx.CollectableRow) (order, error) {
		var o order
		err := row.Scan(&o.ID, &o.CustomerID, &o.ProductID, &o.Quantity, &o.TotalCents, &o.Status, &o.CreatedAt)
		return o, err
	}, queryRecentOrders, before, recentRows)
	if err != nil {
		return nil, err
	}
	for i := range orders {
		c, err := customerByID(ctx, s.pool, orders[i].CustomerID)
		if err != nil {
			return nil, err
		}
		orders[i].Customer = &c
		if p := s.cat.byID(orders[i].ProductID); p != nil {
			orders[i].Product = p.Name
		}
	}
	return orders, nil
}

// recentJoined loads a page of orders with their customers in one query.
func (s *Server) recentJoined(ctx context.Context, before int64) ([]order, error) {
	return collect(ctx, s.pool, func(row pgx.CollectableRow) (order, error) {
		var o order
		c := &customer{}
		err := row.Scan(&o.ID, &o.CustomerID, &o.ProductID, &o.Quantity, &o.TotalCents, &o.Status, &o.CreatedAt,
			&c.Name, &c.Email, &c.Region)
		c.ID = o.CustomerID
		o.Customer = c
		if p := s.cat.byID(o.ProductID); p != nil {
			o.Product = p.Name
		}
		return o, err
	}, queryRecentJoined, before, recentRows)
}

// GET /orders/quote?id=N: priced on the quote workers.
func (s *Server) orderQuote(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbID("id"), s.quoteOnWorkers)
}

// quoteOnWorkers prices order id on one of the quote workers.
func (s *Server) quoteOnWorkers(ctx context.Context, id int64) (quote, error) {
	var q quote
	var qerr error
	if err := s.workers.do(ctx, func() { q, qerr = s.priceOrder(ctx, id) }); err != nil {
		return quote{}, err
	}
	return q, qerr
}

// priceOrder quotes order id at the current price.
func (s *Server) priceOrder(ctx context.Context, id int64) (quote, error) {
	o, err := s.orderByID(ctx, s.pool, id)
	if err != nil {
		return quote{}, err
	}
	p := s.cat.byID(o.ProductID)
	if p == nil {
		return quote{}, notFound("product")
	}
	price, err := s.price.price(ctx, p.SKU)
	if err != nil {
		return quote{}, err
	}
	return quote{ID: o.ID, ProductID: p.ID, SKU: p.SKU, PriceCents: price * int64(o.Quantity),
		ValidUntil: time.Now().Add(quoteValidity)}, nil
}

type invoice struct {
	Order      order    `json:"order"`
	Customer   customer `json:"customer"`
	UnitCents  int64    `json:"unit_cents"`
	TotalCents int64    `json:"total_cents"`
}

// GET /orders/invoice?id=N: one connection for the whole invoice.
func (s *Server) orderInvoice(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbID("id"), s.buildInvoice)
}

func (s *Server) buildInvoice(ctx context.Context, id int64) (invoice, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return invoice{}, fmt.Errorf("invoice: %w", err)
	}
	defer conn.Release()
	o, err := s.orderByID(ctx, conn, id)
	if err != nil {
		return invoice{}, err
	}
	p := s.cat.byID(o.ProductID)
	if p == nil {
		return invoice{}, notFound("product")
	}
	unit, err := s.price.price(ctx, p.SKU)
	if err != nil {
		return invoice{}, err
	}
	c, err := customerByID(ctx, conn, o.CustomerID)
	if err != nil {
		return invoice{}, err
	}
	return invoice{Order: o, Customer: c, UnitCents: unit, TotalCents: unit * int64(o.Quantity)}, nil
}

// GET /orders/status?id=N
func (s *Server) orderStatus(w http.ResponseWriter, r *http.Request) {
	fetch := s.status
	if s.broken(DBConnectionsSaturate) {
		fetch = s.statusInTx
	}
	serveJSON(s, w, r, s.dbID("id"), fetch)
}

type orderStatusReply struct {
	ID           int64     `json:"id"`
	Status       string    `json:"status"`
	CreatedAt    time.Time `json:"created_at"`
	DeliveryDays int       `json:"delivery_days"`
}

// statusInTx reads the status and asks the carrier for the delivery
// estimate inside one transaction, as a transaction-per-request middleware
// would: the connection stays checked out, idle in transaction, for the
// whole carrier call.
func (s *Server) statusInTx(ctx context.Context, id int64) (orderStatusReply, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return orderStatusReply{}, fmt.Errorf("status: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	st, err := s.statusWith(ctx, tx, id)
	if err != nil {
		return st, err
	}
	return st, tx.Commit(ctx)
}

// status holds a pooled connection only for the statement.
func (s *Server) status(ctx context.Context, id int64) (orderStatusReply, error) {
	return s.statusWith(ctx, s.pool, id)
}

func (s *Server) statusWith(ctx context.Context, q querier, id int64) (orderStatusReply, error) {
	st := orderStatusReply{ID: id}
	err := q.QueryRow(ctx, queryOrderStatus, id).Scan(&st.Status, &st.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, notFound("order")
	}
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	d, err := s.price.delivery(ctx, id)
	st.DeliveryDays = d.Days
	return st, err
}

// GET /orders/total?id=N
func (s *Server) orderTotal(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbID("id"), s.totalOf)
}

// totalOf prices order id with its tax.
func (s *Server) totalOf(ctx context.Context, id int64) (orderTotals, error) {
	o, err := s.orderByID(ctx, s.pool, id)
	if err != nil {
		return orderTotals{}, err
	}
	p := s.cat.byID(o.ProductID)
	if p == nil {
		return orderTotals{}, notFound("product")
	}
	if s.broken(DownstreamRedundant) {
		return s.totalsByPart(ctx, o, p)
	}
	return s.totals(ctx, o, p)
}

type orderTotals struct {
	OrderID       int64  `json:"order_id"`
	SubtotalCents int64  `json:"subtotal_cents"`
	TaxCents      int64  `json:"tax_cents"`
	TotalCents    int64  `json:"total_cents"`
	Display       string `json:"display"`
}

// taxRate is the VAT applied to totals, in percent.
const taxRate = 20

// totalsByPart computes each part of the totals with its own helper; each
// helper looks the price up itself.
func (s *Server) totalsByPart(ctx context.Context, o order, p *product) (orderTotals, error) {
	sub, err := s.subtotal(ctx, o, p)
	if err != nil {
		return orderTotals{}, err
	}
	tax, err := s.tax(ctx, o, p)
	if err != nil {
		return orderTotals{}, err
	}
	disp, err := s.displayPrice(ctx, p)
	if err != nil {
		return orderTotals{}, err
	}
	return orderTotals{OrderID: o.ID, SubtotalCents: sub, TaxCents: tax, TotalCents: sub + tax, Display: disp}, nil
}

func (s *Server) subtotal(ctx context.Context, o order, p *product) (int64, error) {
	price, err := s.price.price(ctx, p.SKU)
	return price * int64(o.Quantity), err
}

func (s *Server) tax(ctx context.Context, o order, p *product) (int64, error) {
	price, err := s.price.price(ctx, p.SKU)
	return price * int64(o.Quantity) * taxRate / 100, err
}

func (s *Server) displayPrice(ctx context.Context, p *product) (string, error) {
	price, err := s.price.price(ctx, p.SKU)
	return formatCents(price), err
}

// totals looks the price up once.
func (s *Server) totals(ctx context.Context, o order, p *product) (orderTotals, error) {
	price, err := s.price.price(ctx, p.SKU)
	if err != nil {
		return orderTotals{}, err
	}
	sub := price * int64(o.Quantity)
	tax := sub * taxRate / 100
	return orderTotals{OrderID: o.ID, SubtotalCents: sub, TaxCents: tax, TotalCents: sub + tax, Display: formatCents(price)}, nil
}

func formatCents(c int64) string { return fmt.Sprintf("€%d.%02d", c/100, c%100) }

// GET /customers?id=N
func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request) {
	fetch := s.customerPooled
	if s.broken(DBConnectionChurn) {
		fetch = s.customerDirect
	}
	serveJSON(s, w, r, s.dbID("id"), fetch)
}

// customerPooled looks the customer up on a connection of the pool.
func (s *Server) customerPooled(ctx context.Context, id int64) (customer, error) {
	return customerByID(ctx, s.pool, id)
}

// customerDirect opens a connection of its own for the lookup.
func (s *Server) customerDirect(ctx context.Context, id int64) (customer, error) {
	conn, err := pgx.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		return customer{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return customerByID(ctx, conn, id)
}

type productPage struct {
	ID         int64  `json:"id"`
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"`
}

// GET /products?id=N: the product page; counts the view.
func (s *Server) getProduct(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbID("id"), s.viewProduct)
}

// viewProduct counts a view and prices the product in one transaction.
func (s *Server) viewProduct(ctx context.Context, id int64) (productPage, error) {
	var pp productPage
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return pp, fmt.Errorf("view: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if s.on(DBLockWait) && s.cfg.Fixed {
		_, err = tx.Exec(ctx, querySlotCounter, 1, "product_views", rand.IntN(counterSlots))
	} else {
		_, err = tx.Exec(ctx, queryHotCounter, 1, "product_views")
	}
	if err != nil {
		return pp, fmt.Errorf("view: %w", err)
	}
	err = tx.QueryRow(ctx, queryProductByID, id).Scan(&pp.ID, &pp.SKU, &pp.Name, &pp.Category, &pp.PriceCents)
	if errors.Is(err, pgx.ErrNoRows) {
		return pp, notFound("product")
	}
	if err != nil {
		return pp, fmt.Errorf("view: %w", err)
	}
	if pp.PriceCents, err = s.price.price(ctx, pp.SKU); err != nil {
		return pp, err
	}
	return pp, tx.Commit(ctx)
}

// GET /products/price?id=N
func (s *Server) productPrice(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.productArg("id"), s.currentPrice)
}

// currentPrice is p's price now: through the price cache in the fixed twin
// of downstream.slow, from pricing otherwise.
func (s *Server) currentPrice(ctx context.Context, p *product) (priceReply, error) {
	price := s.price.price
	if s.on(DownstreamSlow) && s.cfg.Fixed {
		price = s.prices.price
	}
	cents, err := price(ctx, p.SKU)
	if err != nil {
		return priceReply{}, err
	}
	return priceReply{SKU: p.SKU, PriceCents: cents, Currency: "EUR"}, nil
}

// GET /products/feed?category=C
func (s *Server) productFeed(w http.ResponseWriter, r *http.Request) {
	cat, err := categoryParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.broken(GCPressure) {
		body, err := s.renderFeed(cat)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeBody(w, body)
		return
	}
	buf := s.feedBufs.Get().(*[]byte)
	*buf = s.appendFeed((*buf)[:0], cat)
	writeBody(w, *buf)
	s.feedBufs.Put(buf)
}

// renderFeed builds the feed as generic maps and marshals them.
func (s *Server) renderFeed(cat string) ([]byte, error) {
	items := []map[string]any{}
	for _, i := range s.cat.byCat[cat] {
		p := &s.cat.products[i]
		items = append(items, map[string]any{
			"id":       p.ID,
			"sku":      p.SKU,
			"title":    p.Name,
			"category": p.Category,
			"price": map[string]any{
				"amount":   fmt.Sprintf("%d.%02d", p.PriceCents/100, p.PriceCents%100),
				"currency": "EUR",
			},
			"link":         fmt.Sprintf("https://shop.example/p/%s", p.SKU),
			"image":        fmt.Sprintf("https://cdn.shop.example/img/%s/%d.jpg", p.SKU, 800),
			"tags":         strings.Fields(p.Name),
			"availability": "in stock",
		})
	}
	return json.Marshal(map[string]any{"category": cat, "count": len(items), "items": items})
}

// appendFeed appends the feed's JSON to dst, field by field.
func (s *Server) appendFeed(dst []byte, cat string) []byte {
	idx := s.cat.byCat[cat]
	dst = append(dst, `{"category":`...)
	dst = strconv.AppendQuote(dst, cat)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, int64(len(idx)), 10)
	dst = append(dst, `,"items":[`...)
	for n, i := range idx {
		p := &s.cat.products[i]
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"availability":"in stock","category":`...)
		dst = strconv.AppendQuote(dst, p.Category)
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendInt(dst, p.ID, 10)
		dst = append(dst, `,"image":"https://cdn.shop.example/img/`...)
		dst = append(dst, p.SKU...)
		dst = append(dst, `/800.jpg","link":"https://shop.example/p/`...)
		dst = append(dst, p.SKU...)
		dst = append(dst, `","price":{"amount":"`...)
		dst = strconv.AppendInt(dst, p.PriceCents/100, 10)
		dst = append(dst, '.', byte('0'+p.PriceCents%100/10), byte('0'+p.PriceCents%10))
		dst = append(dst, `","currency":"EUR"},"sku":`...)
		dst = strconv.AppendQuote(dst, p.SKU)
		dst = append(dst, `,"tags":[`...)
		for k, t := range p.words {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendQuote(dst, t)
		}
		dst = append(dst, `],"title":`...)
		dst = strconv.AppendQuote(dst, p.Name)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

type searchResult struct {
	ID       int64  `json:"id"`
	SKU      string `json:"sku"`
	Name     string `json:"name"`
	Distance int    `json:"distance"`
}

// GET /search?q=term
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" || len(q) > maxQueryLen {
		s.fail(w, r, badRequest("q: want 1 to %d bytes", maxQueryLen))
		return
	}
	var hits []hit
	if s.broken(CPUHotPath) {
		hits = s.cat.search(q)
	} else {
		hits = s.cat.searchIndexed(q)
	}
	out := make([]searchResult, len(hits))
	for i, h := range hits {
		out[i] = searchResult{ID: h.p.ID, SKU: h.p.SKU, Name: h.p.Name, Distance: h.score}
	}
	writeJSON(w, map[string]any{"q": q, "results": out})
}

// GET /quote?product=N
func (s *Server) quote(w http.ResponseWriter, r *http.Request) {
	fetch := s.quotes.issue
	if s.broken(LockContention) {
		fetch = s.quotes.quote
	}
	serveJSON(s, w, r, s.productArg("product"), fetch)
}

type cartLine struct {
	ProductID  int64  `json:"product_id"`
	SKU        string `json:"sku"`
	PriceCents int64  `json:"price_cents"`
}

// GET /cart/quote?items=1,2,3
func (s *Server) cartQuote(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.cartParam, s.priceCart)
}

// cartParam parses a cart: 1 to maxCartSize products of the catalogue.
func (s *Server) cartParam(r *http.Request) ([]cartLine, error) {
	raw := strings.Split(r.URL.Query().Get("items"), ",")
	if len(raw) == 0 || len(raw) > maxCartSize {
		return nil, badRequest("items: want 1 to %d product ids", maxCartSize)
	}
	lines := make([]cartLine, len(raw))
	for i, v := range raw {
		id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		p := s.cat.byID(id)
		if err != nil || p == nil {
			return nil, badRequest("items: unknown product %q", v)
		}
		lines[i] = cartLine{ProductID: p.ID, SKU: p.SKU}
	}
	return lines, nil
}

// priceCart prices a cart's lines and totals them.
func (s *Server) priceCart(ctx context.Context, lines []cartLine) (map[string]any, error) {
	price := s.priceLinesParallel
	if s.broken(DownstreamSerial) {
		price = s.priceLines
	}
	if err := price(ctx, lines); err != nil {
		return nil, err
	}
	var total int64
	for _, l := range lines {
		total += l.PriceCents
	}
	return map[string]any{"lines": lines, "total_cents": total}, nil
}

// priceLines prices the lines one after another.
func (s *Server) priceLines(ctx context.Context, lines []cartLine) error {
	for i := range lines {
		p, err := s.price.price(ctx, lines[i].SKU)
		if err != nil {
			return err
		}
		lines[i].PriceCents = p
	}
	return nil
}

// priceLinesParallel prices the lines concurrently.
func (s *Server) priceLinesParallel(ctx context.Context, lines []cartLine) error {
	g, gctx := errgroup.WithContext(ctx)
	for i := range lines {
		g.Go(func() error {
			p, err := s.price.price(gctx, lines[i].SKU)
			lines[i].PriceCents = p
			return err
		})
	}
	return g.Wait()
}

// GET /shipping?product=N&region=R
func (s *Server) shipping(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.shippingParams, s.shippingEstimate)
}

// maxRegionLen bounds a shipping region's name (untrusted input).
const maxRegionLen = 16

type shippingArgs struct {
	p      *product
	region string
}

func (s *Server) shippingParams(r *http.Request) (shippingArgs, error) {
	p, err := s.productParam(r, "product")
	if err != nil {
		return shippingArgs{}, err
	}
	region := r.URL.Query().Get("region")
	if region == "" || len(region) > maxRegionLen {
		return shippingArgs{}, badRequest("region: want 1 to %d bytes", maxRegionLen)
	}
	return shippingArgs{p: p, region: region}, nil
}

// shippingEstimate asks pricing for a shipping estimate; the fixed twin of
// errors.under-load retries the calls it sheds.
func (s *Server) shippingEstimate(ctx context.Context, a shippingArgs) (shippingReply, error) {
	if s.on(ErrorsUnderLoad) && s.cfg.Fixed {
		return s.price.shippingWithRetry(ctx, a.p.SKU, a.region)
	}
	return s.price.shipping(ctx, a.p.SKU, a.region)
}

type salesRow struct {
	ProductID    int64  `json:"product_id"`
	Name         string `json:"name"`
	Units        int64  `json:"units"`
	RevenueCents int64  `json:"revenue_cents"`
}

// GET /reports/sales?category=C
func (s *Server) salesReport(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.dbCategory, s.topSellers)
}

// topSellers are a category's best-selling products by revenue.
func (s *Server) topSellers(ctx context.Context, cat string) (map[string]any, error) {
	q := querySalesReport
	if s.on(DBSlowQuery) && s.cfg.Fixed {
		q = querySalesRollup
	}
	out, err := collect(ctx, s.pool, func(row pgx.CollectableRow) (salesRow, error) {
		var sr salesRow
		err := row.Scan(&sr.ProductID, &sr.Name, &sr.Units, &sr.RevenueCents)
		return sr, err
	}, q, cat, reportRows)
	if err != nil {
		return nil, err
	}
	return map[string]any{"category": cat, "top": out}, nil
}

// GET /catalog/summary
func (s *Server) catalogSummary(w http.ResponseWriter, r *http.Request) {
	if err := s.db(); err != nil {
		s.fail(w, r, err)
		return
	}
	var body []byte
	var err error
	if s.on(CacheOpportunity) && s.cfg.Fixed {
		body, err = s.summary.get(r.Context(), s.loadSummary)
	} else {
		body, err = s.loadSummary(r.Context())
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeBody(w, body)
}

type categorySummary struct {
	Category         string `json:"category"`
	Products         int64  `json:"products"`
	MinPriceCents    int64  `json:"min_price_cents"`
	MaxPriceCents    int64  `json:"max_price_cents"`
	AvgPriceCents    int64  `json:"avg_price_cents"`
	DescriptionBytes int64  `json:"description_bytes"`
}

func (s *Server) loadSummary(ctx context.Context) ([]byte, error) {
	out, err := collect(ctx, s.pool, func(row pgx.CollectableRow) (categorySummary, error) {
		var c categorySummary
		err := row.Scan(&c.Category, &c.Products, &c.MinPriceCents, &c.MaxPriceCents, &c.AvgPriceCents, &c.DescriptionBytes)
		return c, err
	}, queryCatalogSummary)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"categories": out})
}

type listedProduct struct {
	ID          int64  `json:"id"`
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Category    string `json:"category"`
	PriceCents  int64  `json:"price_cents"`
	Description string `json:"description,omitempty"`
}

// GET /catalog/products?category=C[&after=ID]
func (s *Server) catalogProducts(w http.ResponseWriter, r *http.Request) {
	serveJSON(s, w, r, s.listingParams, s.listCategory)
}

type listingArgs struct {
	category string
	after    int64 // the last product id of the previous page; 0 = first page
}

// listingParams parses a category listing; only the paged listing (the
// fix of payload.large) reads the cursor.
func (s *Server) listingParams(r *http.Request) (listingArgs, error) {
	cat, err := s.dbCategory(r)
	if err != nil {
		return listingArgs{}, err
	}
	a := listingArgs{category: cat}
	if !s.broken(PayloadLarge) && r.URL.Query().Has("after") {
		if a.after, err = intParam(r, "after"); err != nil {
			return listingArgs{}, err
		}
	}
	return a, nil
}

// listCategory lists a category's products: all of them with their
// descriptions in the broken twin of payload.large, else a page with a
// cursor to the next.
func (s *Server) listCategory(ctx context.Context, a listingArgs) (map[string]any, error) {
	if s.broken(PayloadLarge) {
		out, err := collect(ctx, s.pool, func(row pgx.CollectableRow) (listedProduct, error) {
			var p listedProduct
			err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.Category, &p.PriceCents, &p.Description)
			return p, err
		}, queryCategoryAll, a.category)
		if err != nil {
			return nil, err
		}
		return map[string]any{"category": a.category, "products": out}, nil
	}
	out, err := collect(ctx, s.pool, func(row pgx.CollectableRow) (listedProduct, error) {
		var p listedProduct
		err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.Category, &p.PriceCents)
		return p, err
	}, queryCategoryPage, a.category, a.after, pageSize)
	if err != nil {
		return nil, err
	}
	reply := map[string]any{"category": a.category, "products": out}
	if len(out) == pageSize {
		reply["next"] = fmt.Sprintf("/catalog/products?category=%s&after=%d", a.category, out[len(out)-1].ID)
	}
	return reply, nil
}

type trackedEvent struct {
	Event     string    `json:"event"`
	ProductID int64     `json:"product_id"`
	At        time.Time `json:"at"`
	RequestID string    `json:"request_id"`
	UserAgent string    `json:"user_agent"`
}

// GET /track?event=E&product=N: an analytics beacon, durable before the
// answer.
func (s *Server) track(w http.ResponseWriter, r *http.Request) {
	ev := r.URL.Query().Get("event")
	if ev == "" || len(ev) > 32 {
		s.fail(w, r, badRequest("event: want 1 to 32 bytes"))
		return
	}
	p, err := s.productParam(r, "product")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.outbox == nil {
		w.WriteHeader(http.StatusNoContent) // tracking disabled
		return
	}
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	rec, err := json.Marshal(trackedEvent{Event: ev, ProductID: p.ID, At: time.Now().UTC(), RequestID: requestID(r), UserAgent: ua})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.outbox.write(r.Context(), append(rec, '\n')); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
