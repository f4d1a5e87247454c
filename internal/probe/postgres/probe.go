// Package postgres is the PostgreSQL probe: while load runs it samples,
// strictly read-only, what the target's database is doing (statements,
// sessions and their waits, lock waits, table and index use, connections)
// and explains the top statements, writing evidence.PG records to
// postgres.jsonl.
//
// Every session it opens is read-only by default (default_transaction_read_only),
// time-limited (statement_timeout, lock_timeout) and named "chokepoint";
// it opens at most two (one samples pg_stat_activity ten times a second,
// the other collects the per-window statistics and plans). It never
// installs an extension, never runs EXPLAIN ANALYZE unless asked, and then
// only for SELECT inside a read-only transaction that is rolled back.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/secret"
)

// Source is the probe's coverage source name (CONTRACT.md §4).
const Source = "postgres"

// Defaults for Config's zero values.
const (
	// DefaultInterval is one window (CONTRACT.md: a window is one second).
	DefaultInterval = time.Second
	// DefaultActivityInterval samples pg_stat_activity ~10 times a second
	// (the probe's brief): enough to see waits that last tens of ms.
	DefaultActivityInterval = 100 * time.Millisecond
	// DefaultTopN statements by total time are explained (the brief: 10).
	DefaultTopN = 10
)

// Bounds that keep the probe light on the target and its own memory flat.
const (
	minInterval         = 100 * time.Millisecond // shortest window accepted
	minActivityInterval = 10 * time.Millisecond  // shortest sampling period accepted
	explainsPerWindow   = 2                      // plans taken per window, so windows stay on time
	explainBudgetFactor = 4                      // at most TopN*this plans per run (the top changes)
	maxStatementsWindow = 200                    // statements written per window, by time
	maxTextBytes        = 4096                   // of a statement's text in a record
	maxExplainText      = 64 << 10               // longer statements are not kept whole, nor explained
	maxActivityText     = 1024                   // pg_stat_activity's own default (track_activity_query_size)
	maxActivityQueries  = 50                     // statement groups per activity sample
	maxLockWaits        = 100                    // lock waits per sample
	maxTracked          = 5000                   // statements / tables / indexes whose counters are kept
	sizeEvery           = 10                     // windows between size queries (they take locks)
	maxSized            = 100                    // relations sized per size query
	finalFlushTimeout   = 3 * time.Second        // for the last partial window after ctx ends
)

// Config configures the probe. The zero value of every field but DSN is a
// good default.
type Config struct {
	// DSN is the target database (URL or key=value form). It is never
	// printed: coverage, logs and errors show it through secret.DSN.
	DSN secret.String
	// Interval is the window of delta records; 0 means DefaultInterval.
	Interval time.Duration
	// ActivityInterval is the pg_stat_activity sampling period; 0 means
	// DefaultActivityInterval.
	ActivityInterval time.Duration
	// TopN is how many statements (by total execution time) are explained;
	// 0 means DefaultTopN, negative disables EXPLAIN.
	TopN int
	// ExplainAnalyze runs EXPLAIN ANALYZE (SELECT only, inside a read-only
	// transaction that is rolled back) instead of a plain generic plan.
	// Off by default: it executes the statement.
	ExplainAnalyze bool
	// Logger receives the probe's own diagnostics; nil discards them.
	Logger *slog.Logger
	// Now is the clock records are stamped with; nil means time.Now.
	Now func() time.Time
}

// Validate reports a setting that cannot work; errors name the field and
// never contain the DSN's password.
func (c Config) Validate() error {
	if c.DSN == "" {
		return errors.New("postgres: DSN is empty")
	}
	if _, _, err := parseDSN(c.DSN); err != nil {
		return fmt.Errorf("postgres: DSN: %w", err)
	}
	if c.Interval != 0 && c.Interval < minInterval {
		return fmt.Errorf("postgres: Interval %s is below %s", c.Interval, minInterval)
	}
	if c.ActivityInterval != 0 && c.ActivityInterval < minActivityInterval {
		return fmt.Errorf("postgres: ActivityInterval %s is below %s", c.ActivityInterval, minActivityInterval)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.ActivityInterval == 0 {
		c.ActivityInterval = DefaultActivityInterval
	}
	if c.TopN == 0 {
		c.TopN = DefaultTopN
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Probe is the PostgreSQL probe. Create it with New.
type Probe struct {
	cfg Config

	mu  sync.Mutex // guards cov and the counters below
	cov probe.Coverage
	st  stats
}

var _ probe.Probe = (*Probe)(nil)

// stats count what the probe did, for its coverage entry.
type stats struct {
	server    *evidence.PGServer
	windows   int
	samples   int
	lockWaits int
	plans     int
	hypo      int
	errors    int
	lastErr   string
}

// New validates cfg and returns a probe.
func New(cfg Config) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Probe{cfg: cfg, cov: probe.Coverage{Source: Source, Status: probe.StatusUnavailable, Detail: "not started"}}, nil
}

// Source implements probe.Probe.
func (p *Probe) Source() string { return Source }

// Coverage implements probe.Probe: what the probe found and how to enable
// what was missing.
func (p *Probe) Coverage() probe.Coverage {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st.server == nil {
		return p.cov
	}
	return probe.Coverage{Source: Source, Status: p.cov.Status, Detail: p.detail()}
}

// detail describes the run; p.mu is held.
func (p *Probe) detail() string {
	s := p.st.server
	var b strings.Builder
	fmt.Fprintf(&b, "PostgreSQL %s, database %s; ", shortVersion(s.Version), s.Database)
	if s.PGStatStatements {
		b.WriteString("pg_stat_statements: yes; ")
	} else {
		fmt.Fprintf(&b, "pg_stat_statements: no (%s; to enable: shared_preload_libraries = 'pg_stat_statements' in postgresql.conf, restart, then CREATE EXTENSION pg_stat_statements in %s); ", s.PGStatStatementsWhy, s.Database)
	}
	if s.HypoPG {
		b.WriteString("hypopg: yes; ")
	} else {
		fmt.Fprintf(&b, "hypopg: no (hypothetical-index plans need CREATE EXTENSION hypopg in %s; the probe never installs it); ", s.Database)
	}
	fmt.Fprintf(&b, "%d windows, %d activity samples, %d lock waits, %d plans, %d hypothetical indexes",
		p.st.windows, p.st.samples, p.st.lockWaits, p.st.plans, p.st.hypo)
	if p.st.errors > 0 {
		fmt.Fprintf(&b, "; %d queries failed, last: %s", p.st.errors, p.st.lastErr)
	}
	return b.String()
}

func shortVersion(v string) string {
	if i := strings.IndexByte(v, ' '); i > 0 {
		return v[:i]
	}
	return v
}

// fail records a failed query; the probe goes on.
func (p *Probe) fail(r redactor, what string, err error) {
	msg := r.String(fmt.Sprintf("%s: %v", what, err))
	p.mu.Lock()
	p.st.errors++
	p.st.lastErr = msg
	p.mu.Unlock()
	p.cfg.Logger.Debug("postgres probe query failed", "what", what, "err", msg)
}

// Run implements probe.Probe: it collects until ctx ends, then writes the
// last partial window and returns nil. It returns an error only when the
// database cannot be used at all.
func (p *Probe) Run(ctx context.Context, sink probe.Sink) error {
	_, r, err := parseDSN(p.cfg.DSN)
	if err != nil {
		p.setCoverage(probe.StatusError, err.Error())
		return err
	}
	main, err := connect(ctx, p.cfg.DSN)
	if err != nil {
		p.setCoverage(probe.StatusError, err.Error()+"; check --postgres and that the server accepts connections from here")
		return err
	}
	closeCtx := context.WithoutCancel(ctx)
	defer main.Close(closeCtx)

	c := &collector{p: p, r: r, sink: &lockedSink{s: sink}, conn: main, now: p.cfg.Now}
	if err := c.discover(ctx); err != nil {
		err = r.Error(err)
		p.setCoverage(probe.StatusError, "read server settings: "+err.Error())
		return fmt.Errorf("postgres probe: %w", err)
	}
	p.mu.Lock()
	p.st.server = c.server
	p.cov.Status = probe.StatusOK
	p.mu.Unlock()
	if err := c.emit(evidence.PG{T: c.ms(), Kind: evidence.PGKindServer, Server: c.server}); err != nil {
		return fmt.Errorf("postgres probe: %w", err)
	}

	var wg sync.WaitGroup
	sampler, err := connect(ctx, p.cfg.DSN)
	if err != nil {
		p.fail(r, "second connection (activity sampling off)", err)
	} else {
		defer sampler.Close(closeCtx)
		c.ownPIDs = []uint32{main.PgConn().PID(), sampler.PgConn().PID()}
		a := &activitySampler{c: c, conn: sampler}
		wg.Go(func() { a.run(ctx) })
	}
	if c.ownPIDs == nil {
		c.ownPIDs = []uint32{main.PgConn().PID()}
	}
	c.runWindows(ctx)
	wg.Wait()
	return nil
}

func (p *Probe) setCoverage(status, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cov = probe.Coverage{Source: Source, Status: status, Detail: detail}
}

// lockedSink serialises appends from the probe's two goroutines.
type lockedSink struct {
	mu sync.Mutex
	s  probe.Sink
}

func (l *lockedSink) Append(stream string, v any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.Append(stream, v)
}

// collector holds the per-run state shared by the window loop and the
// activity sampler.
type collector struct {
	p      *Probe
	r      redactor
	sink   *lockedSink
	conn   *pgx.Conn // the window loop's connection
	now    func() time.Time
	server *evidence.PGServer

	dbOID      uint32
	ownPIDs    []uint32
	pgssSchema string // schema of pg_stat_statements, "" when unusable

	texts textCache
}

func (c *collector) ms() int64 { return c.now().UnixMilli() }

func (c *collector) emit(rec evidence.PG) error {
	return c.sink.Append(evidence.PostgresStream, rec)
}

// discover reads what the server is and offers.
func (c *collector) discover(ctx context.Context) error {
	s := &evidence.PGServer{}
	var reserved, reserved16 string
	var trackIO, cqid string
	err := c.conn.QueryRow(ctx, `SELECT `+marker+` current_setting('server_version'), current_setting('server_version_num')::int,
		current_database(), (SELECT oid FROM pg_database WHERE datname = current_database()),
		current_setting('max_connections')::int, current_setting('superuser_reserved_connections'),
		coalesce(current_setting('reserved_connections', true), '0'),
		current_setting('track_io_timing'), coalesce(current_setting('compute_query_id', true), '')`).
		Scan(&s.Version, &s.VersionNum, &s.Database, &c.dbOID, &s.MaxConnections, &reserved, &reserved16, &trackIO, &cqid)
	if err != nil {
		return err
	}
	s.ReservedConnections = atoi(reserved) + atoi(reserved16)
	s.TrackIOTiming = trackIO == "on"
	s.ComputeQueryID = cqid

	rows, err := c.conn.Query(ctx, `SELECT `+marker+` e.extname, n.nspname, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname IN ('pg_stat_statements', 'hypopg')`)
	if err != nil {
		return err
	}
	var pgssSchema, pgssVersion string
	for rows.Next() {
		var name, schema, version string
		if err := rows.Scan(&name, &schema, &version); err != nil {
			return err
		}
		switch name {
		case "pg_stat_statements":
			pgssSchema, pgssVersion = schema, version
		case "hypopg":
			s.HypoPG = true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	switch {
	case pgssSchema == "":
		s.PGStatStatementsWhy = "the extension is not created in this database"
	case versionLess(pgssVersion, "1.8"):
		s.PGStatStatementsWhy = "extension version " + pgssVersion + " is older than 1.8 (PostgreSQL 13); run ALTER EXTENSION pg_stat_statements UPDATE"
	default:
		// Created is not enough: the library must be preloaded.
		var n int64
		q := `SELECT ` + marker + ` count(*) FROM ` + pgx.Identifier{pgssSchema, "pg_stat_statements"}.Sanitize() + `(false) WHERE dbid = $1`
		if err := c.conn.QueryRow(ctx, q, c.dbOID).Scan(&n); err != nil {
			s.PGStatStatementsWhy = "not usable: " + firstLine(c.r.String(err.Error()))
		} else {
			s.PGStatStatements = true
			c.pgssSchema = pgssSchema
		}
	}
	c.server = s
	return nil
}

func atoi(s string) int {
	n := 0
	for _, ch := range s {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}

// versionLess compares dotted versions numerically ("1.10" > "1.8").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x = atoi(as[i])
		}
		if i < len(bs) {
			y = atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// nestedOwn reports statements that extensions the probe calls run inside
// its own statements (so they carry no marker): hypopg_create_index looks
// for a free fake OID with this query.
func nestedOwn(text string) bool {
	return text == "SELECT max(oid) FROM pg_catalog.pg_class WHERE oid < $1"
}

// textCache maps query ids to normalised texts, and texts back to ids (for
// sessions whose pg_stat_activity row has no query id). Both goroutines use it.
type textCache struct {
	mu     sync.Mutex
	byID   map[int64]string
	own    map[int64]bool
	long   map[int64]bool // text cut to maxExplainText
	byText map[string]int64
}

func (t *textCache) put(id int64, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID, t.own, t.long, t.byText = map[int64]string{}, map[int64]bool{}, map[int64]bool{}, map[string]int64{}
	}
	if len(t.byID) >= maxTracked {
		return
	}
	if len(text) > maxExplainText {
		text = truncate(text, maxExplainText)
		t.long[id] = true
	}
	t.byID[id] = text
	if strings.Contains(text, marker) || nestedOwn(collapse(text)) {
		t.own[id] = true
		return
	}
	t.byText[collapse(text)] = id
}

func (t *textCache) get(id int64) (text string, own, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	text, ok = t.byID[id]
	return text, t.own[id], ok
}

// whole reports whether the cached text is the complete statement.
func (t *textCache) whole(id int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.long[id]
}

func (t *textCache) idOf(text string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byText[collapse(text)]
}

// collapse normalises whitespace, as pg_stat_statements' texts and the
// contract's query locus do.
func collapse(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Do not cut a UTF-8 sequence in half.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
