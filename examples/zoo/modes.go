package zoo

import (
	"slices"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Mode names: each is the finding kind (CONTRACT.md §5) a correct diagnosis
// of that mode reports, except None, the healthy service.
const (
	None                  = "none"
	CPUHotPath            = "cpu.hot-path"
	CPUThrottled          = "cpu.throttled"
	GCPressure            = "gc.pressure"
	MemoryLeak            = "memory.leak"
	LockContention        = "lock.contention"
	ConcurrencyLimit      = "concurrency.limit"
	DBMissingIndex        = "db.missing-index"
	DBSlowQuery           = "db.slow-query"
	DBNPlusOne            = "db.n-plus-one"
	DBPoolExhausted       = "db.pool-exhausted"
	DBLockWait            = "db.lock-wait"
	DBConnectionsSaturate = "db.connections-saturated"
	DBConnectionChurn     = "db.connection-churn"
	DownstreamSlow        = "downstream.slow"
	DownstreamSerial      = "downstream.serial"
	DownstreamRedundant   = "downstream.redundant"
	CacheOpportunity      = "cache.opportunity"
	PayloadLarge          = "payload.large"
	IODisk                = "io.disk"
	NetConnectionLimit    = "net.connection-limit"
	ErrorsUnderLoad       = "errors.under-load"
)

// PricingHost stands for the pricing downstream's host:port in Mode.Truth;
// (*Server).Truth replaces it with the real address.
const PricingHost = "{pricing}"

// Mode is one switchable behaviour of the zoo and the ground truth a
// correct diagnosis of it names.
type Mode struct {
	// Name is the mode's name: the finding kind, or "none".
	Name string `json:"name"`
	// Description says what the service does wrong (or right) in this mode.
	Description string `json:"description"`
	// NeedsDB is true when the mode needs PostgreSQL (Config.DSN).
	NeedsDB bool `json:"needs_db"`
	// Truth is the locus a correct diagnosis names (empty for "none").
	// Downstreams are written with PricingHost as their host.
	Truth report.Locus `json:"truth"`
	// Fix is what --fixed changes: the textbook resolution.
	Fix string `json:"fix"`
	// Paths are the request paths (with query) a hunt of this mode loads.
	Paths []string `json:"paths"`
	// Process is true when the mode needs the zoo in its own process
	// (Config.Isolated): it changes process-wide state.
	Process bool `json:"process,omitempty"`
}

const fnPrefix = "github.com/chokepoint/chokepoint/examples/zoo."

// modes is the ground-truth table; README.md shows the same data.
var modes = []Mode{
	{
		Name:        None,
		Description: "healthy: orders by primary key and an indexed catalogue search",
		NeedsDB:     true,
		Fix:         "nothing to fix",
		Paths:       []string{"/orders?id=1017", "/orders?id=52311", "/orders?id=99871", "/orders?id=150004"},
	},
	{
		Name:        CPUHotPath,
		Description: "catalogue search computes an edit distance against every word of every product name on each request",
		Truth:       report.Locus{Endpoint: "GET /search", Function: fnPrefix + "editDistance", Resource: "cpu"},
		Fix:         "distances computed once per distinct word of the catalogue vocabulary (an inverted index built at start)",
		Paths:       []string{"/search?q=lamp", "/search?q=chiar", "/search?q=walnut", "/search?q=blu"},
	},
	{
		Name:        GCPressure,
		Description: "the product feed builds a map per product and marshals it through reflection into a fresh buffer",
		Truth:       report.Locus{Endpoint: "GET /products/feed", Function: fnPrefix + "(*Server).renderFeed"},
		Fix:         "typed rows appended straight into a pooled, reused buffer",
		Paths:       []string{"/products/feed?category=lighting", "/products/feed?category=seating", "/products/feed?category=tables", "/products/feed?category=storage"},
	},
	{
		Name:        MemoryLeak,
		Description: "every order response is kept in a replay log keyed by request id and never evicted",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /orders", Function: fnPrefix + "(*replayLog).record", Resource: "memory"},
		Fix:         "the replay log is a bounded LRU (1024 entries)",
		Paths:       []string{"/orders?id=1017", "/orders?id=52311", "/orders?id=99871", "/orders?id=150004"},
	},
	{
		Name:        LockContention,
		Description: "the quote book holds one global mutex across the pricing call",
		Truth:       report.Locus{Endpoint: "GET /quote", Function: fnPrefix + "(*quoteBook).quote", Resource: "lock"},
		Fix:         "the mutex guards only the book's maps; the pricing call runs outside it",
		Paths:       []string{"/quote?product=17", "/quote?product=230", "/quote?product=1024", "/quote?product=4031"},
	},
	{
		Name:        ConcurrencyLimit,
		Description: "order quotes go through a worker pool of 2 while CPU, database and pricing are idle",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /orders/quote", Resource: "concurrency", Limit: quoteWorkersSmall},
		Fix:         "a worker pool of 64",
		Paths:       []string{"/orders/quote?id=1017", "/orders/quote?id=52311", "/orders/quote?id=99871", "/orders/quote?id=150004"},
	},
	{
		Name:        DBMissingIndex,
		Description: "order history filters orders by customer_id, which has no index: a sequential scan per request",
		NeedsDB:     true,
		Truth: report.Locus{Endpoint: "GET /orders/history", Table: "orders", Columns: []string{"customer_id"},
			Query: queryOrderHistory},
		Fix:   "CREATE INDEX orders_customer_id_idx ON orders (customer_id)",
		Paths: []string{"/orders/history?customer=17", "/orders/history?customer=4242", "/orders/history?customer=9001", "/orders/history?customer=15000"},
	},
	{
		Name:        DBSlowQuery,
		Description: "the sales report aggregates every order of a category on each request",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /reports/sales", Query: querySalesReport},
		Fix:         "a rollup table (product_sales) maintained beside orders, read through an index",
		Paths:       []string{"/reports/sales?category=lighting", "/reports/sales?category=seating", "/reports/sales?category=tables", "/reports/sales?category=storage"},
	},
	{
		Name:        DBNPlusOne,
		Description: "recent orders load each order's customer with its own query",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /orders/recent", Query: queryCustomerByID},
		Fix:         "one query joining orders to customers",
		Paths:       []string{"/orders/recent?before=200000", "/orders/recent?before=150000", "/orders/recent?before=100000", "/orders/recent?before=50000"},
	},
	{
		Name:        DBPoolExhausted,
		Description: "invoices hold a pooled connection across the pricing call, and the pool has 2 connections",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /orders/invoice", Resource: "db-pool", Limit: poolSizeSmall},
		Fix:         "a pool of 32 connections",
		Paths:       []string{"/orders/invoice?id=1017", "/orders/invoice?id=52311", "/orders/invoice?id=99871", "/orders/invoice?id=150004"},
	},
	{
		Name:        DBLockWait,
		Description: "each product view increments one hot counter row, then prices the product inside the same transaction",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /products", Table: "site_counters", Query: queryHotCounter},
		Fix:         "the counter is spread over 64 slot rows picked at random (no hot row)",
		Paths:       []string{"/products?id=17", "/products?id=230", "/products?id=1024", "/products?id=4031"},
	},
	{
		Name:        DBConnectionsSaturate,
		Description: "a pool of 200 connections (above PostgreSQL's max_connections) with a transaction held across the carrier's delivery estimate (~80 ms)",
		NeedsDB:     true,
		// The limit a diagnosis names is the server's max_connections, which
		// the zoo does not set (the database's configuration does).
		Truth: report.Locus{Endpoint: "GET /orders/status", Resource: "db-connections"},
		Fix:   "a pool of 8 connections, held only for the statement (the carrier is asked after)",
		Paths: []string{"/orders/status?id=1017", "/orders/status?id=52311", "/orders/status?id=99871", "/orders/status?id=150004"},
	},
	{
		Name:        DBConnectionChurn,
		Description: "customer lookups open a new database connection per request",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /customers", Resource: "db-connections"},
		Fix:         "the shared connection pool",
		Paths:       []string{"/customers?id=17", "/customers?id=4242", "/customers?id=9001", "/customers?id=15000"},
	},
	{
		Name:        DownstreamSlow,
		Description: "every price lookup waits on the pricing service, which answers in about 40 ms",
		Truth:       report.Locus{Endpoint: "GET /products/price", Downstream: "GET http://" + PricingHost + "/price"},
		Fix:         "a price cache (30 s) with request coalescing and a 100 ms budget per call",
		Paths:       []string{"/products/price?id=17", "/products/price?id=230", "/products/price?id=1024", "/products/price?id=4031"},
	},
	{
		Name:        DownstreamSerial,
		Description: "a cart quote prices its 5 items one pricing call after another",
		Truth:       report.Locus{Endpoint: "GET /cart/quote", Downstream: "GET http://" + PricingHost + "/price"},
		Fix:         "the item prices are fetched in parallel",
		Paths:       []string{"/cart/quote?items=17,230,1024,4031,77", "/cart/quote?items=5,6,7,8,9", "/cart/quote?items=100,200,300,400,500", "/cart/quote?items=11,22,33,44,55"},
	},
	{
		Name:        DownstreamRedundant,
		Description: "an order total asks pricing for the same product's price three times (subtotal, tax, display)",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /orders/total", Downstream: "GET http://" + PricingHost + "/price"},
		Fix:         "the price is fetched once and passed along",
		Paths:       []string{"/orders/total?id=1017", "/orders/total?id=52311", "/orders/total?id=99871", "/orders/total?id=150004"},
	},
	{
		Name:        CacheOpportunity,
		Description: "the catalogue summary runs the same parameterless aggregate on every request; its result changes only when products change",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /catalog/summary", Query: queryCatalogSummary},
		Fix:         "a 5 s cache with request coalescing (one query in flight per expiry)",
		Paths:       []string{"/catalog/summary"},
	},
	{
		Name:        PayloadLarge,
		Description: "the category listing returns every product with its full description (about 1 MB per response)",
		NeedsDB:     true,
		Truth:       report.Locus{Endpoint: "GET /catalog/products"},
		Fix:         "pages of 50 products without descriptions, with a cursor to the next page",
		Paths:       []string{"/catalog/products?category=lighting", "/catalog/products?category=seating", "/catalog/products?category=tables", "/catalog/products?category=storage"},
	},
	{
		Name:        IODisk,
		Description: "each tracked event is appended to a journal file and fsync'd before the response",
		Truth:       report.Locus{Endpoint: "GET /track", Resource: "disk"},
		Fix:         "group commit: one writer batches the events of concurrent requests into one fsync",
		Paths:       []string{"/track?event=view&product=17", "/track?event=view&product=230", "/track?event=cart&product=1024", "/track?event=view&product=4031"},
	},
	{
		Name:        NetConnectionLimit,
		Description: "the server closes each connection after one response, accepts at most 8 connections at a time and has a listen backlog of 4",
		Truth:       report.Locus{Resource: "network", Limit: connCapSmall},
		Fix:         "a cap of 4096 connections and the system's backlog",
		Paths:       []string{"/products/price?id=17", "/products/price?id=230", "/products/price?id=1024", "/products/price?id=4031"},
	},
	{
		Name:        ErrorsUnderLoad,
		Description: "shipping estimates come from a pricing endpoint that answers 503 beyond 4 concurrent calls; the zoo passes the failure on",
		Truth:       report.Locus{Endpoint: "GET /shipping"},
		Fix:         "the downstream's cap is raised to 256 and 503s are retried with jittered backoff",
		Paths:       []string{"/shipping?product=17&region=eu", "/shipping?product=230&region=us", "/shipping?product=1024&region=eu", "/shipping?product=4031&region=apac"},
	},
	{
		Name:        CPUThrottled,
		Description: "the zoo runs in a cgroup with a CPU quota of 0.1 CPU while the machine has idle cores",
		Truth:       report.Locus{Endpoint: "GET /search", Resource: "cpu"},
		Fix:         "the quota is raised to the machine's cores",
		Paths:       []string{"/search?q=lamp", "/search?q=chiar", "/search?q=walnut", "/search?q=blu"},
		Process:     true,
	},
}

// Modes returns every mode with its ground truth, in a stable order.
func Modes() []Mode {
	out := make([]Mode, len(modes))
	for i, m := range modes {
		out[i] = m.clone()
	}
	return out
}

// LookupMode returns the mode called name.
func LookupMode(name string) (Mode, bool) {
	for _, m := range modes {
		if m.Name == name {
			return m.clone(), true
		}
	}
	return Mode{}, false
}

func (m Mode) clone() Mode {
	m.Truth.Columns = slices.Clone(m.Truth.Columns)
	m.Paths = slices.Clone(m.Paths)
	return m
}

// resolve fills the pricing address into a mode's ground truth.
func (m Mode) resolve(pricingHost string) Mode {
	m = m.clone()
	m.Truth.Downstream = strings.ReplaceAll(m.Truth.Downstream, PricingHost, pricingHost)
	return m
}
