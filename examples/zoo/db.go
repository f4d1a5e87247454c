package zoo

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool sizes. poolSizeDefault is a common production setting for a small
// service; poolSizeSmall starves a handler that holds its connection across
// a downstream call; poolSizeRight serves that handler at the zoo's
// concurrency; poolSizeHuge is above PostgreSQL's default max_connections
// (100); poolSizeSane fits, with the monitoring's own sessions, under even a
// small server's limit (the end-to-end test's 20 connections, 3 of them
// reserved): a pool whose connections are held only for statements of
// about a millisecond serves thousands of requests per second with 8.
const (
	poolSizeDefault = 16
	poolSizeSmall   = 2
	poolSizeRight   = 32
	poolSizeHuge    = 200
	poolSizeSane    = 8
)

// Statements, written as pg_stat_statements prints them (parameters as $n,
// single spaces), so the ground truth is the string a diagnosis reports.
const (
	queryOrderByID      = "SELECT id, customer_id, product_id, quantity, total_cents, status, created_at FROM orders WHERE id = $1"
	queryOrderHistory   = "SELECT id, product_id, quantity, total_cents, status, created_at FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2"
	querySalesReport    = "SELECT p.id, p.name, sum(o.quantity) AS units, sum(o.total_cents) AS revenue_cents FROM orders o JOIN products p ON p.id = o.product_id WHERE p.category = $1 GROUP BY p.id, p.name ORDER BY revenue_cents DESC LIMIT $2"
	querySalesRollup    = "SELECT product_id, name, units, revenue_cents FROM product_sales WHERE category = $1 ORDER BY revenue_cents DESC LIMIT $2"
	queryRecentOrders   = "SELECT id, customer_id, product_id, quantity, total_cents, status, created_at FROM orders WHERE id < $1 ORDER BY id DESC LIMIT $2"
	queryRecentJoined   = "SELECT o.id, o.customer_id, o.product_id, o.quantity, o.total_cents, o.status, o.created_at, c.name, c.email, c.region FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id < $1 ORDER BY o.id DESC LIMIT $2"
	queryCustomerByID   = "SELECT id, name, email, region FROM customers WHERE id = $1"
	queryHotCounter     = "UPDATE site_counters SET value = value + $1 WHERE name = $2"
	querySlotCounter    = "UPDATE site_counter_slots SET value = value + $1 WHERE name = $2 AND slot = $3"
	queryProductByID    = "SELECT id, sku, name, category, price_cents FROM products WHERE id = $1"
	queryCatalogSummary = "SELECT category, count(*) AS products, min(price_cents) AS min_price_cents, max(price_cents) AS max_price_cents, avg(price_cents)::bigint AS avg_price_cents, sum(length(description)) AS description_bytes FROM products GROUP BY category ORDER BY category"
	queryCategoryAll    = "SELECT id, sku, name, category, price_cents, description FROM products WHERE category = $1 ORDER BY id"
	queryCategoryPage   = "SELECT id, sku, name, category, price_cents FROM products WHERE category = $1 AND id > $2 ORDER BY id LIMIT $3"
	queryOrderStatus    = "SELECT status, created_at FROM orders WHERE id = $1"
)

// counterSlots is how many rows the fixed twin of db.lock-wait spreads its
// counter over: with 64 slots, 16 concurrent writers rarely meet.
const counterSlots = 64

// openPool opens the service's pool with size connections.
func openPool(ctx context.Context, dsn string, size int, tracer *dbTracer) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database dsn: %w", err)
	}
	pc.MaxConns = int32(size)
	pc.MinConns = 0
	pc.MaxConnIdleTime = time.Minute
	pc.ConnConfig.Tracer = tracer
	tracer.host, tracer.port, tracer.dbName = pc.ConnConfig.Host, int(pc.ConnConfig.Port), pc.ConnConfig.Database
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

// prepareDB brings the schema to the state the modes need: the fixed twins'
// index, rollup and counter slots exist; the broken twin of
// db.missing-index has no index on orders.customer_id.
func (s *Server) prepareDB(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("prepare database: %w", err)
	}
	defer conn.Release()
	// Serialise zoos preparing the same database.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", seedLockKey); err != nil {
		return fmt.Errorf("prepare database: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", seedLockKey)

	var seeded bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('zoo_seed') IS NOT NULL").Scan(&seeded); err != nil {
		return fmt.Errorf("prepare database: %w", err)
	}
	if !seeded {
		return fmt.Errorf("prepare database: not seeded (run zoo seed --dsn ... first)")
	}
	if s.on(DBMissingIndex) {
		if s.cfg.Fixed {
			if _, err := conn.Exec(ctx, "CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id)"); err != nil {
				return fmt.Errorf("create index: %w", err)
			}
		} else if err := dropIndexIfExists(ctx, conn.Conn(), "orders_customer_id_idx"); err != nil {
			return err
		}
	}
	if s.on(DBSlowQuery) && s.cfg.Fixed {
		if err := ensureRollup(ctx, conn.Conn()); err != nil {
			return err
		}
	}
	if s.on(DBLockWait) && s.cfg.Fixed {
		if err := ensureSlots(ctx, conn.Conn()); err != nil {
			return err
		}
	}
	return nil
}

func dropIndexIfExists(ctx context.Context, conn *pgx.Conn, name string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return fmt.Errorf("check index: %w", err)
	}
	if !exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "DROP INDEX "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("drop index: %w", err)
	}
	return nil
}

func ensureRollup(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('product_sales') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("check rollup: %w", err)
	}
	if exists {
		return nil
	}
	stmts := []string{
		"CREATE TABLE product_sales (product_id bigint PRIMARY KEY, name text NOT NULL, category text NOT NULL, units bigint NOT NULL, revenue_cents bigint NOT NULL)",
		"INSERT INTO product_sales SELECT p.id, p.name, p.category, coalesce(sum(o.quantity), 0), coalesce(sum(o.total_cents), 0) FROM products p LEFT JOIN orders o ON o.product_id = p.id GROUP BY p.id, p.name, p.category",
		"CREATE INDEX product_sales_category_revenue_idx ON product_sales (category, revenue_cents DESC)",
		"ANALYZE product_sales",
	}
	return execAll(ctx, conn, "rollup", stmts)
}

func ensureSlots(ctx context.Context, conn *pgx.Conn) error {
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS site_counter_slots (name text NOT NULL, slot integer NOT NULL, value bigint NOT NULL DEFAULT 0, PRIMARY KEY (name, slot))",
		fmt.Sprintf("INSERT INTO site_counter_slots (name, slot) SELECT 'product_views', g FROM generate_series(0, %d) g ON CONFLICT DO NOTHING", counterSlots-1),
	}
	return execAll(ctx, conn, "counter slots", stmts)
}

func execAll(ctx context.Context, conn *pgx.Conn, what string, stmts []string) error {
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}
