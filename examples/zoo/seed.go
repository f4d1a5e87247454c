package zoo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Rows per unit of scale. At scale 1 the orders table is big enough that a
// sequential scan costs tens of milliseconds while an index lookup costs
// well under one.
const (
	customersPerScale = 20000
	ordersPerScale    = 200000
	// maxScale bounds Seed's input (100 is 20M orders, a few GB).
	maxScale = 100
)

// seedLockKey is the advisory lock that serialises Seed and prepareDB on
// one database ("zoo" in ASCII).
const seedLockKey int64 = 0x7a6f6f

// seedEpoch is the latest order time, so data does not depend on the day
// it was generated.
var seedEpoch = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

var schema = []string{
	"DROP TABLE IF EXISTS zoo_seed, orders, customers, products, site_counters, site_counter_slots, product_sales",
	"CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, region text NOT NULL, created_at timestamptz NOT NULL)",
	"CREATE TABLE products (id bigint PRIMARY KEY, sku text NOT NULL UNIQUE, name text NOT NULL, category text NOT NULL, price_cents bigint NOT NULL, description text NOT NULL)",
	"CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, product_id bigint NOT NULL, quantity integer NOT NULL, total_cents bigint NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL)",
	"CREATE TABLE site_counters (name text PRIMARY KEY, value bigint NOT NULL DEFAULT 0)",
}

var postLoad = []string{
	"CREATE INDEX products_category_idx ON products (category)",
	"INSERT INTO site_counters (name) VALUES ('product_views'), ('orders_placed')",
	"ANALYZE customers",
	"ANALYZE products",
	"ANALYZE orders",
}

var regions = []string{"eu", "us", "apac", "latam"}
var statuses = []string{"placed", "paid", "shipped", "delivered", "returned"}
var firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Donald", "Frances", "John", "Radia", "Leslie", "Margaret"}
var lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Knuth", "Allen", "Backus", "Perlman", "Lamport", "Hamilton"}

// Seed creates the zoo's tables in the database at dsn and loads them:
// 8,000 products, 20,000·scale customers and 200,000·scale orders. It is
// idempotent: a database already seeded at this scale is left as it is;
// one seeded at another scale is reloaded.
func Seed(ctx context.Context, dsn string, scale int) error {
	if scale < 1 || scale > maxScale {
		return fmt.Errorf("seed: scale %d out of range 1..%d", scale, maxScale)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", seedLockKey); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", seedLockKey)

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('zoo_seed') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if exists {
		var have int
		if err := conn.QueryRow(ctx, "SELECT coalesce(max(scale), 0) FROM zoo_seed").Scan(&have); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		if have == scale {
			return nil
		}
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := execAll(ctx, tx.Conn(), "seed schema", schema); err != nil {
		return err
	}
	if err := copyProducts(ctx, tx); err != nil {
		return err
	}
	if err := copyCustomers(ctx, tx, scale); err != nil {
		return err
	}
	if err := copyOrders(ctx, tx, scale); err != nil {
		return err
	}
	if err := execAll(ctx, tx.Conn(), "seed", postLoad); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE zoo_seed (scale integer NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO zoo_seed (scale) VALUES ($1)", scale); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	// VACUUM cannot run in a transaction; it sets the visibility map so
	// index-only scans and planner estimates behave as on a settled table.
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) orders"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

func copyProducts(ctx context.Context, tx pgx.Tx) error {
	i := int64(0)
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"products"},
		[]string{"id", "sku", "name", "category", "price_cents", "description"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == productCount {
				return nil, nil
			}
			i++
			p := genProduct(i)
			return []any{p.ID, p.SKU, p.Name, p.Category, p.PriceCents, p.Description}, nil
		}))
	if err != nil {
		return fmt.Errorf("seed products: %w", err)
	}
	return nil
}

func copyCustomers(ctx context.Context, tx pgx.Tx, scale int) error {
	n := int64(customersPerScale * scale)
	r := rand.New(rand.NewPCG(1, 2))
	i := int64(0)
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"customers"},
		[]string{"id", "name", "email", "region", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
			return []any{i, first + " " + last, fmt.Sprintf("%s.%s.%d@example.com", first, last, i),
				regions[r.IntN(len(regions))], seedEpoch.Add(-time.Duration(r.IntN(3*365*24)) * time.Hour)}, nil
		}))
	if err != nil {
		return fmt.Errorf("seed customers: %w", err)
	}
	return nil
}

func copyOrders(ctx context.Context, tx pgx.Tx, scale int) error {
	n := int64(ordersPerScale * scale)
	customers := customersPerScale * scale
	r := rand.New(rand.NewPCG(3, 4))
	i := int64(0)
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"orders"},
		[]string{"id", "customer_id", "product_id", "quantity", "total_cents", "status", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			pid := int64(1 + r.IntN(productCount))
			qty := int32(1 + r.IntN(4))
			// Orders grow in time with their id, as real ones do.
			at := seedEpoch.Add(-time.Duration(n-i) * 2 * time.Minute)
			return []any{i, int64(1 + r.IntN(customers)), pid, qty, int64(qty) * listPrice(fmt.Sprintf("SKU-%06d", pid)),
				statuses[r.IntN(len(statuses))], at}, nil
		}))
	if err != nil {
		return fmt.Errorf("seed orders: %w", err)
	}
	return nil
}
