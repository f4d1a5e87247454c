package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/pgplan"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/secret"
	"github.com/chokepoint/chokepoint/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// Test timing: short windows so that a bounded workload of a second or two
// yields several of them.
const (
	testInterval         = 250 * time.Millisecond
	testActivityInterval = 50 * time.Millisecond
	waitTimeout          = 20 * time.Second // for evidence to show up
	ordersRows           = 200_000
)

// watchSink appends to a real run directory and closes done when pred
// first holds for the records written so far.
type watchSink struct {
	dir  *run.Dir
	mu   sync.Mutex
	recs []evidence.PG
	pred func([]evidence.PG) bool
	done chan struct{}
	once sync.Once
}

func newWatchSink(t *testing.T, pred func([]evidence.PG) bool) *watchSink {
	t.Helper()
	d, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &watchSink{dir: d, pred: pred, done: make(chan struct{})}
}

func (s *watchSink) Append(stream string, v any) error {
	if err := s.dir.Append(stream, v); err != nil {
		return err
	}
	rec, ok := v.(evidence.PG)
	if !ok {
		return fmt.Errorf("unexpected record %T", v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, rec)
	if s.pred != nil && s.pred(s.recs) {
		s.once.Do(func() { close(s.done) })
	}
	return nil
}

func (s *watchSink) WriteFile(name string, data []byte) error { return s.dir.WriteFile(name, data) }

// records reads postgres.jsonl back from the run directory, as the
// diagnosis will.
func (s *watchSink) records(t *testing.T) []evidence.PG {
	t.Helper()
	var out []evidence.PG
	if err := run.ReadLines(s.dir.Join(evidence.PostgresStream), func(r evidence.PG) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// runProbe starts the probe and returns a stop function that ends it and
// returns Run's error.
func runProbe(t *testing.T, cfg Config, sink probe.Sink) (*Probe, func() error) {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = testInterval
	}
	if cfg.ActivityInterval == 0 {
		cfg.ActivityInterval = testActivityInterval
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx, sink) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(waitTimeout):
				runErr = errors.New("probe did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return p, stop
}

func mustExec(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// ordersDB makes a database with a 200k-row orders table and no index on
// customer_id.
func ordersDB(t *testing.T) string {
	t.Helper()
	dsn := testpg.NewDB(t)
	mustExec(t, dsn,
		`CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, total numeric NOT NULL)`,
		fmt.Sprintf(`INSERT INTO orders SELECT i, i %% 5000, CASE WHEN i %% 3 = 0 THEN 'paid' ELSE 'new' END, i %% 1000
			FROM generate_series(1, %d) i`, ordersRows),
		`ANALYZE orders`,
		`SELECT pg_stat_statements_reset()`,
	)
	return dsn
}

// workload runs query on conns connections until dur has passed or max
// queries were sent, whichever comes first.
func workload(t *testing.T, dsn, query string, conns int, dur time.Duration, max int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex
	sent := 0
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for w := range conns {
		wg.Go(func() {
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close(context.Background())
			for i := 0; ; i++ {
				mu.Lock()
				if sent >= max {
					mu.Unlock()
					return
				}
				sent++
				mu.Unlock()
				var n int64
				err := conn.QueryRow(ctx, query, (w*7919+i)%5000).Scan(&n)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("workload: %v", err)
	}
	return sent
}

const ordersQuery = "SELECT count(*) FROM orders WHERE customer_id = $1"

// sumSeqTupRead adds up the orders table's seq_tup_read deltas.
func sumSeqTupRead(recs []evidence.PG, table string) (reads, scans int64) {
	for _, r := range recs {
		for _, tb := range r.Tables {
			if tb.Name == table {
				reads += tb.SeqTupRead
				scans += tb.SeqScan
			}
		}
	}
	return reads, scans
}

func planFor(recs []evidence.PG, fragment string) *evidence.PGPlan {
	for _, r := range recs {
		if r.Kind == evidence.PGKindPlan && r.Plan != nil && strings.Contains(r.Plan.Query, fragment) {
			return r.Plan
		}
	}
	return nil
}

// TestMissingIndex runs the db.missing-index shape against a real server:
// seq_tup_read grows, the statement shows in pg_stat_statements deltas and
// activity, and its plan is a Seq Scan filtered on customer_id.
func TestMissingIndex(t *testing.T) {
	dsn := ordersDB(t)
	sink := newWatchSink(t, func(recs []evidence.PG) bool {
		reads, _ := sumSeqTupRead(recs, "orders")
		return reads >= 10*ordersRows && planFor(recs, "customer_id") != nil
	})
	p, stop := runProbe(t, Config{DSN: secret.String(dsn)}, sink)
	sent := workload(t, dsn, ordersQuery, 2, 1500*time.Millisecond, 500)
	select {
	case <-sink.done:
	case <-time.After(waitTimeout):
		t.Error("evidence of the workload did not arrive in time")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := sink.records(t)
	t.Logf("%d queries sent, %d records", sent, len(recs))

	kinds := map[string]int{}
	for _, r := range recs {
		kinds[r.Kind]++
	}
	for _, k := range []string{evidence.PGKindServer, evidence.PGKindStatements, evidence.PGKindActivity, evidence.PGKindTables, evidence.PGKindDatabase, evidence.PGKindPlan} {
		if kinds[k] == 0 {
			t.Errorf("no %s record (have %v)", k, kinds)
		}
	}
	if recs[0].Kind != evidence.PGKindServer || !recs[0].Server.PGStatStatements || recs[0].Server.MaxConnections != 100 {
		t.Errorf("first record = %+v", recs[0])
	}

	t.Run("seq_tup_read grows", func(t *testing.T) {
		reads, scans := sumSeqTupRead(recs, "orders")
		if reads < 10*ordersRows || scans < 10 {
			t.Errorf("orders: seq_tup_read %d over %d scans, want at least 10 full scans of %d rows", reads, scans, ordersRows)
		}
	})

	var qid int64
	t.Run("statements", func(t *testing.T) {
		var calls int64
		for _, r := range recs {
			for _, s := range r.Statements {
				if strings.Contains(s.Query, marker) {
					t.Errorf("the probe's own statement reported: %q", s.Query)
				}
				if s.Query == ordersQuery {
					qid = s.QueryID
					calls += s.Calls
					if s.MeanExecMS <= 0 || s.SharedBlksHit+s.SharedBlksRead == 0 {
						t.Errorf("statement delta without time or blocks: %+v", s)
					}
				}
			}
		}
		if calls == 0 || calls > int64(sent) {
			t.Errorf("calls of %q = %d, sent %d", ordersQuery, calls, sent)
		}
	})

	t.Run("activity", func(t *testing.T) {
		seen := false
		for _, r := range recs {
			if r.Activity == nil {
				continue
			}
			if r.Activity.Sessions > 2 {
				t.Errorf("sample counts %d sessions; the workload has 2 and the probe's own are excluded", r.Activity.Sessions)
			}
			for _, q := range r.Activity.Queries {
				if q.QueryID == qid && qid != 0 && q.Active > 0 {
					seen = true
				}
			}
		}
		if !seen {
			t.Errorf("no activity sample shows query %d active", qid)
		}
	})

	t.Run("plan", func(t *testing.T) {
		pl := planFor(recs, "customer_id")
		if pl == nil {
			t.Fatal("no plan")
		}
		if pl.Error != "" || pl.Method != MethodPreparedGeneric && pl.Method != MethodGenericPlan {
			t.Fatalf("plan error %q method %q", pl.Error, pl.Method)
		}
		if len(pl.SeqScans) != 1 || pl.SeqScans[0].Relation != "orders" || strings.Join(pl.SeqScans[0].Columns, ",") != "customer_id" {
			t.Errorf("seq scans = %+v, want orders on customer_id", pl.SeqScans)
		}
		e, err := pgplan.Parse(pl.Plan)
		if err != nil {
			t.Fatalf("stored plan does not parse: %v", err)
		}
		if len(e.Nodes("Seq Scan")) == 0 {
			t.Error("stored plan has no Seq Scan")
		}
	})

	t.Run("database", func(t *testing.T) {
		var commits int64
		for _, r := range recs {
			if d := r.Database; d != nil {
				commits += d.XactCommit
				if d.MaxConnections != 100 || d.Connections < 2 || d.DBConnections > d.Connections {
					t.Errorf("connections = %+v", d)
				}
			}
		}
		if commits < int64(sent)/2 {
			t.Errorf("xact_commit deltas %d for %d queries", commits, sent)
		}
	})

	cov := p.Coverage()
	if cov.Status != probe.StatusOK || !strings.Contains(cov.Detail, "pg_stat_statements: yes") || strings.Contains(cov.Detail, "failed") {
		t.Errorf("coverage = %+v", cov)
	}
}

// TestLockWait holds a row lock in one transaction while another waits for
// it: activity shows wait_event_type Lock and a lock-wait record names the
// table, the waiting statement and its blocker.
func TestLockWait(t *testing.T) {
	dsn := testpg.NewDB(t)
	mustExec(t, dsn, `CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)`,
		`INSERT INTO accounts SELECT i, 100 FROM generate_series(1, 10) i`)
	ctx := context.Background()

	holder, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}

	sink := newWatchSink(t, func(recs []evidence.PG) bool {
		for _, r := range recs {
			if r.Kind == evidence.PGKindLocks {
				return true
			}
		}
		return false
	})
	_, stop := runProbe(t, Config{DSN: secret.String(dsn)}, sink)

	waiter, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close(ctx)
	waitDone := make(chan error, 1)
	wctx, wcancel := context.WithTimeout(ctx, waitTimeout)
	defer wcancel()
	go func() {
		_, err := waiter.Exec(wctx, "UPDATE accounts SET balance = balance + 1 WHERE id = $1", 1)
		waitDone <- err
	}()

	select {
	case <-sink.done:
	case <-time.After(waitTimeout):
		t.Error("no lock wait recorded")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waitDone; err != nil {
		t.Fatalf("waiting update: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := sink.records(t)

	lockSeen := false
	for _, r := range recs {
		if a := r.Activity; a != nil && a.WaitType["Lock"] > 0 && a.Waits["Lock:transactionid"] > 0 {
			lockSeen = true
		}
	}
	if !lockSeen {
		t.Error("no activity sample with wait_event_type Lock (transactionid)")
	}
	var lw *evidence.PGLockWait
	for _, r := range recs {
		for i := range r.LockWaits {
			lw = &r.LockWaits[i]
		}
	}
	if lw == nil {
		t.Fatal("no lock wait record")
	}
	if lw.Relation != "accounts" || lw.LockType != "transactionid" || len(lw.BlockedBy) != 1 {
		t.Errorf("lock wait = %+v, want transactionid on accounts with one blocker", lw)
	}
	// Normalised as pg_stat_statements would: the literal follows the
	// driver's $1.
	if lw.Query != "UPDATE accounts SET balance = balance + $2 WHERE id = $1" {
		t.Errorf("waiting query = %q", lw.Query)
	}
	if lw.BlockerState != "idle in transaction" || !strings.Contains(lw.BlockerQuery, "UPDATE accounts") {
		t.Errorf("blocker = %q (%s)", lw.BlockerQuery, lw.BlockerState)
	}
	if strings.Contains(lw.BlockerQuery, "balance - 1") {
		t.Errorf("blocker query keeps its literal: %q", lw.BlockerQuery)
	}
}

// TestReadOnly is the read-only proof: the probe's sessions refuse every
// kind of write with SQLSTATE 25006 (read_only_sql_transaction), and the
// data is unchanged afterwards.
func TestReadOnly(t *testing.T) {
	dsn := testpg.NewDB(t)
	mustExec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)`,
		`INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 1000) i`)
	ctx := context.Background()
	digest := func() string { return dbDigest(t, dsn, "t") }
	before := digest()

	conn, err := connect(ctx, secret.String(dsn))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		"UPDATE t SET v = 'x'",
		"INSERT INTO t VALUES (5000, 'new')",
		"DELETE FROM t",
		"TRUNCATE t",
		"CREATE TABLE evil (x int)",
		"CREATE INDEX ON t (v)",
		"DROP TABLE t",
		"ALTER TABLE t ADD COLUMN w int",
		"CREATE EXTENSION hypopg",
		"SELECT * INTO copied FROM t",
		"WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
		"SELECT * FROM t FOR UPDATE",
		"SELECT nextval('s')",
	} {
		t.Run(sql, func(t *testing.T) {
			if strings.HasPrefix(sql, "SELECT nextval") {
				mustExec(t, dsn, "CREATE SEQUENCE IF NOT EXISTS s")
				before = digest()
			}
			_, err := exec1(ctx, conn, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
				t.Fatalf("err = %v, want SQLSTATE 25006", err)
			}
		})
	}
	// An explicit transaction is read-only too, and EXPLAIN ANALYZE of a
	// writing statement (which IsSelect would never let through) is
	// refused inside the probe's transaction.
	t.Run("explain analyze of a write", func(t *testing.T) {
		c := &collector{p: &Probe{}, conn: conn, server: &evidence.PGServer{VersionNum: 150000}}
		if _, err := exec1(ctx, conn, "BEGIN "+marker+" READ ONLY"); err != nil {
			t.Fatal(err)
		}
		pl := &planner{c: c, stmt: "UPDATE t SET v = $1 WHERE id = $2"}
		_, err := pl.plan(ctx, true)
		exec1(ctx, conn, "ROLLBACK")
		exec1(ctx, conn, "DEALLOCATE "+preparedName)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Fatalf("err = %v, want SQLSTATE 25006", err)
		}
	})
	if after := digest(); after != before {
		t.Errorf("data changed: %s -> %s", before, after)
	}
}

// dbDigest sums up a table's contents and the database's relations.
func dbDigest(t *testing.T, dsn, table string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var d string
	q := `SELECT count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) ||
		':' || (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace) ||
		':' || (SELECT count(*) FROM pg_index) FROM ` + pgx.Identifier{table}.Sanitize() + ` x`
	if err := conn.QueryRow(ctx, q).Scan(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExplainWritesNothing runs the probe's EXPLAIN path (prepared generic
// plan, and ANALYZE) on a SELECT and checks that no prepared statement is
// left, and that the data and catalog are the same.
func TestExplainWritesNothing(t *testing.T) {
	dsn := ordersDB(t)
	ctx := context.Background()
	conn, err := connect(ctx, secret.String(dsn))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	before := dbDigest(t, dsn, "orders")
	for _, analyze := range []bool{false, true} {
		t.Run(fmt.Sprintf("analyze=%v", analyze), func(t *testing.T) {
			p := &Probe{cfg: Config{ExplainAnalyze: analyze}.withDefaults()}
			c := &collector{p: p, conn: conn, now: time.Now, server: &evidence.PGServer{VersionNum: 150000}}
			rec := c.explain(ctx, 1, ordersQuery)
			if rec.Error != "" {
				t.Fatalf("explain: %s", rec.Error)
			}
			want := MethodPreparedGeneric
			if analyze {
				want = MethodAnalyze
			}
			if rec.Method != want || len(rec.SeqScans) != 1 {
				t.Fatalf("method %s, scans %+v", rec.Method, rec.SeqScans)
			}
			if analyze && rec.SeqScans[0].RowsRemoved == nil {
				t.Error("ANALYZE plan without rows removed by filter")
			}
			var left int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name = $1", preparedName).Scan(&left); err != nil || left != 0 {
				t.Errorf("prepared statement left behind (%d, %v)", left, err)
			}
		})
	}
	if after := dbDigest(t, dsn, "orders"); after != before {
		t.Errorf("data changed: %s -> %s", before, after)
	}
}

// TestPasswordNeverWritten runs the probe against a cluster that requires a
// password, then with a wrong one and a malformed DSN, and checks that the
// password appears nowhere: run directory, coverage, errors.
func TestPasswordNeverWritten(t *testing.T) {
	if err := testpg.Available(); err != nil {
		t.Skip(err)
	}
	const password = "Sup3r-s3cret!pw"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := testpg.Start(ctx, testpg.Options{Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop(context.Background())
	dsn, err := cl.CreateDatabase(ctx, "secrets")
	if err != nil {
		t.Fatal(err)
	}
	if pc, err := pgx.ParseConfig(dsn); err != nil || pc.Password != password {
		t.Fatalf("test DSN lacks the password (%v)", err)
	}
	escaped := url.QueryEscape(password)
	sink := newWatchSink(t, func(recs []evidence.PG) bool { return len(recs) >= 5 })
	p, stop := runProbe(t, Config{DSN: secret.String(dsn)}, sink)
	select {
	case <-sink.done:
	case <-time.After(waitTimeout):
		t.Error("no records")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	texts := []string{p.Coverage().Detail, fmt.Sprintf("%v %+v %#v", p.cfg, p.cfg, p.cfg)}

	wrong := strings.Replace(dsn, escaped, "wrong-"+escaped, 1)
	for _, bad := range []string{wrong, strings.Replace(dsn, fmt.Sprint(cl.Port()), "notaport", 1), "host=127.0.0.1 port=1 password=" + password + " connect_timeout=1"} {
		p2, err := New(Config{DSN: secret.String(bad)})
		if err != nil {
			texts = append(texts, err.Error())
			continue
		}
		runErr := p2.Run(ctx, newWatchSink(t, nil))
		if runErr == nil {
			t.Errorf("probe with a bad DSN ran")
			continue
		}
		texts = append(texts, runErr.Error(), p2.Coverage().Detail)
	}
	err = filepath.Walk(sink.dir.Path(), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		texts = append(texts, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range texts {
		if strings.Contains(s, password) || strings.Contains(s, escaped) {
			t.Errorf("password leaked in: %.300s", s)
		}
	}
	if !strings.Contains(strings.Join(texts, "\n"), "28P01") {
		t.Error("the wrong-password error did not reach the coverage/error text")
	}
}

// TestWithoutPgStatStatements: the probe still collects tables, activity
// and the database, and says how to enable the extension.
func TestWithoutPgStatStatements(t *testing.T) {
	dsn := ordersDB(t)
	mustExec(t, dsn, "DROP EXTENSION pg_stat_statements")
	sink := newWatchSink(t, func(recs []evidence.PG) bool {
		reads, _ := sumSeqTupRead(recs, "orders")
		return reads >= ordersRows
	})
	p, stop := runProbe(t, Config{DSN: secret.String(dsn)}, sink)
	workload(t, dsn, ordersQuery, 1, time.Second, 50)
	select {
	case <-sink.done:
	case <-time.After(waitTimeout):
		t.Error("no table evidence without pg_stat_statements")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, r := range sink.records(t) {
		if r.Kind == evidence.PGKindStatements || r.Kind == evidence.PGKindPlan {
			t.Errorf("%s record without pg_stat_statements", r.Kind)
		}
	}
	cov := p.Coverage()
	if cov.Status != probe.StatusOK || !strings.Contains(cov.Detail, "pg_stat_statements: no") ||
		!strings.Contains(cov.Detail, "CREATE EXTENSION pg_stat_statements") {
		t.Errorf("coverage = %+v", cov)
	}
}

// ensureHypoPG makes the hypopg extension installable, installing the
// Debian package when running as root; it skips the test otherwise.
func ensureHypoPG(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var available int
	var major string
	if err := conn.QueryRow(ctx, "SELECT count(*), current_setting('server_version_num')::int / 10000 || '' FROM pg_available_extensions WHERE name = 'hypopg'").Scan(&available, &major); err != nil {
		t.Fatal(err)
	}
	if available > 0 {
		return
	}
	pkg := "postgresql-" + major + "-hypopg"
	if os.Geteuid() != 0 {
		t.Skipf("hypopg is not installed and this is not root: apt-get install %s", pkg)
	}
	ictx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, "apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("hypopg unavailable (apt-get install %s: %v: %.300s)", pkg, err, out)
	}
}

// TestHypotheticalIndex: with hypopg installed in the target database, the
// plan record carries the cost with a hypothetical index on the filtered
// column, which the planner uses, and no real index is created.
func TestHypotheticalIndex(t *testing.T) {
	dsn := ordersDB(t)
	ensureHypoPG(t, dsn)
	mustExec(t, dsn, "CREATE EXTENSION hypopg")
	sink := newWatchSink(t, func(recs []evidence.PG) bool { return planFor(recs, "customer_id") != nil })
	p, stop := runProbe(t, Config{DSN: secret.String(dsn)}, sink)
	workload(t, dsn, ordersQuery, 1, time.Second, 30)
	select {
	case <-sink.done:
	case <-time.After(waitTimeout):
		t.Error("no plan recorded")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := sink.records(t)
	for _, r := range recs {
		for _, s := range r.Statements {
			if strings.Contains(s.Query, "pg_catalog.pg_class") {
				t.Errorf("hypopg's internal statement reported as the target's: %q", s.Query)
			}
		}
	}
	pl := planFor(recs, "customer_id")
	if pl == nil {
		t.Fatal("no plan")
	}
	if len(pl.Hypo) != 1 {
		t.Fatalf("hypo = %+v", pl.Hypo)
	}
	h := pl.Hypo[0]
	if h.Error != "" || !h.Used || h.CostAfter >= h.CostBefore/10 || !strings.Contains(h.Index, `("customer_id")`) {
		t.Errorf("hypothetical index = %+v, want used and at least 10x cheaper", h)
	}
	if !strings.Contains(p.Coverage().Detail, "hypopg: yes") {
		t.Errorf("coverage = %s", p.Coverage().Detail)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders' AND indexdef LIKE '%customer_id%'").Scan(&n); err != nil || n != 0 {
		t.Errorf("a real index exists (%d, %v)", n, err)
	}
}

func TestRecordsAreJSONLines(t *testing.T) {
	rec := evidence.PG{T: 1, Kind: evidence.PGKindPlan, Plan: &evidence.PGPlan{Plan: json.RawMessage("[\n {\"Plan\": {}}\n]")}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\n") {
		t.Errorf("record spans lines: %s", b)
	}
}

// TestSecondRunAfterExplain: with pg_stat_statements.track = all, the first
// run's EXPLAIN of a statement leaves a nested entry with the probe's text
// under the statement's queryid; a second run on the same database must
// still report the application's statement, not mistake it for its own.
func TestSecondRunAfterExplain(t *testing.T) {
	dsn := ordersDB(t)
	for run := 1; run <= 2; run++ {
		sink := newWatchSink(t, func(recs []evidence.PG) bool {
			if run == 1 {
				return planFor(recs, "customer_id") != nil
			}
			for _, r := range recs {
				for _, s := range r.Statements {
					if s.Query == ordersQuery {
						return true
					}
				}
			}
			return false
		})
		_, stop := runProbe(t, Config{DSN: secret.String(dsn)}, sink)
		workload(t, dsn, ordersQuery, 2, 1500*time.Millisecond, 300)
		select {
		case <-sink.done:
		case <-time.After(waitTimeout):
			t.Errorf("run %d: the statement's evidence did not arrive", run)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}
