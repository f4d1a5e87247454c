package postgres

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// windowState is the previous window's counters, for deltas.
type windowState struct {
	at         time.Time
	statements map[int64]stmtCounters
	tables     map[uint32]tableCounters
	indexes    map[uint32]indexCounters
	database   *dbCounters
	runTotalMS map[int64]float64 // execution time per statement over the run
	explained  map[int64]bool
	explains   int // plans taken this run
	windows    int
	sizes      map[uint32][2]int64 // relid -> size, total size (tables) or size (indexes)
	used       map[uint32]bool     // relations that showed up in a delta
}

type stmtCounters struct {
	calls                int64
	totalMS              float64
	rows, hit, read, tmp int64
}

type tableCounters struct {
	schema, name                     string
	seqScan, seqTup, idxScan, idxTup int64
	ins, upd, del                    int64
	live, dead                       int64
}

type indexCounters struct {
	relid                  uint32
	schema, table, name    string
	scan, tupRead, tupFtch int64
}

type dbCounters struct {
	sessions, commit, rollback, blksRead, blksHit, tupRet, tupFetch, deadlocks, tempFiles, tempBytes int64
}

// runWindows takes a baseline, then one window of deltas per Interval until
// ctx ends, and a last partial window after.
func (c *collector) runWindows(ctx context.Context) {
	w := &windowState{runTotalMS: map[int64]float64{}, explained: map[int64]bool{}, sizes: map[uint32][2]int64{}, used: map[uint32]bool{}}
	c.collect(ctx, w, true)
	t := time.NewTicker(c.p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			c.collect(fctx, w, false)
			c.explainTop(fctx, w, c.p.cfg.TopN) // the run's top statements, if not yet
			cancel()
			return
		case <-t.C:
			c.collect(ctx, w, false)
			c.explainTop(ctx, w, explainsPerWindow)
		}
	}
}

// collect reads every per-window source; with baseline it only records the
// counters.
func (c *collector) collect(ctx context.Context, w *windowState, baseline bool) {
	now := c.now()
	windowMS := now.Sub(w.at).Milliseconds()
	if !baseline && windowMS <= 0 {
		return
	}
	if !baseline {
		w.windows++
		if w.windows%sizeEvery == 1 {
			c.readSizes(ctx, w)
		}
	}
	if c.pgssSchema != "" {
		c.statements(ctx, w, now, windowMS, baseline)
	}
	c.tables(ctx, w, now, windowMS, baseline)
	c.database(ctx, w, now, windowMS, baseline)
	w.at = now
	if !baseline {
		c.p.mu.Lock()
		c.p.st.windows++
		c.p.mu.Unlock()
	}
}

// statements writes the pg_stat_statements deltas of the window.
func (c *collector) statements(ctx context.Context, w *windowState, now time.Time, windowMS int64, baseline bool) {
	fn := pgx.Identifier{c.pgssSchema, "pg_stat_statements"}.Sanitize()
	rows, err := c.conn.Query(ctx, `SELECT `+marker+` queryid, sum(calls)::int8, sum(total_exec_time)::float8, sum(rows)::int8,
		sum(shared_blks_hit)::int8, sum(shared_blks_read)::int8, sum(temp_blks_written)::int8
		FROM `+fn+`(false) WHERE dbid = $1 AND queryid IS NOT NULL`+c.topLevelOnly()+` GROUP BY queryid LIMIT `+strconv.Itoa(maxTracked), c.dbOID)
	if err != nil {
		c.p.fail(c.r, "pg_stat_statements", err)
		return
	}
	cur := map[int64]stmtCounters{}
	for rows.Next() {
		var id int64
		var s stmtCounters
		if err := rows.Scan(&id, &s.calls, &s.totalMS, &s.rows, &s.hit, &s.read, &s.tmp); err != nil {
			rows.Close()
			c.p.fail(c.r, "pg_stat_statements", err)
			return
		}
		cur[id] = s
	}
	if err := rows.Err(); err != nil {
		c.p.fail(c.r, "pg_stat_statements", err)
		return
	}
	prev := w.statements
	w.statements = cur
	if baseline {
		return
	}
	var out []evidence.PGStatement
	var unknown []int64
	for id, s := range cur {
		d := s
		if p, ok := prev[id]; ok && s.calls >= p.calls {
			d = stmtCounters{s.calls - p.calls, s.totalMS - p.totalMS, s.rows - p.rows, s.hit - p.hit, s.read - p.read, s.tmp - p.tmp}
		} // else new since the last window, or reset: all of it is recent
		if d.calls <= 0 {
			continue
		}
		if _, _, ok := c.texts.get(id); !ok {
			unknown = append(unknown, id)
		}
		out = append(out, evidence.PGStatement{QueryID: id, Calls: d.calls, TotalExecMS: d.totalMS,
			MeanExecMS: d.totalMS / float64(d.calls), Rows: d.rows, SharedBlksHit: d.hit, SharedBlksRead: d.read, TempBlksWrite: d.tmp})
	}
	if len(unknown) > 0 {
		c.fetchTexts(ctx, unknown)
	}
	kept := out[:0]
	for _, s := range out {
		text, own, ok := c.texts.get(s.QueryID)
		if own {
			continue
		}
		if ok {
			s.Query = truncate(text, maxTextBytes)
		}
		w.runTotalMS[s.QueryID] += s.TotalExecMS
		kept = append(kept, s)
	}
	out = kept
	if len(out) == 0 {
		return
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TotalExecMS > out[j].TotalExecMS })
	if len(out) > maxStatementsWindow {
		out = out[:maxStatementsWindow]
	}
	if err := c.emit(evidence.PG{T: now.UnixMilli(), Kind: evidence.PGKindStatements, WindowMS: windowMS, Statements: out}); err != nil {
		c.p.fail(c.r, "write statements", err)
	}
}

// fetchTexts reads the normalised texts of statements seen for the first time.
func (c *collector) fetchTexts(ctx context.Context, ids []int64) {
	fn := pgx.Identifier{c.pgssSchema, "pg_stat_statements"}.Sanitize()
	// With pg_stat_statements.track = all, the probe's own EXPLAIN of a
	// prepared copy leaves a nested entry under the same queryid with the
	// probe's text: prefer the application's top-level text.
	rows, err := c.conn.Query(ctx, `SELECT `+marker+` DISTINCT ON (queryid) queryid, query FROM `+fn+`(true)
		WHERE dbid = $1 AND queryid = ANY($2) AND query IS NOT NULL`+c.topLevelOnly()+`
		ORDER BY queryid, (position($3 in query) > 0)`, c.dbOID, ids, marker)
	if err != nil {
		c.p.fail(c.r, "pg_stat_statements texts", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			c.p.fail(c.r, "pg_stat_statements texts", err)
			return
		}
		c.texts.put(id, text)
	}
	if err := rows.Err(); err != nil {
		c.p.fail(c.r, "pg_stat_statements texts", err)
	}
}

// tables writes table and index usage deltas.
func (c *collector) tables(ctx context.Context, w *windowState, now time.Time, windowMS int64, baseline bool) {
	rows, err := c.conn.Query(ctx, `SELECT `+marker+` relid, schemaname, relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0),
		coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0), n_tup_ins, n_tup_upd, n_tup_del, n_live_tup, n_dead_tup
		FROM pg_stat_user_tables LIMIT `+strconv.Itoa(maxTracked))
	if err != nil {
		c.p.fail(c.r, "pg_stat_user_tables", err)
		return
	}
	cur := map[uint32]tableCounters{}
	for rows.Next() {
		var id uint32
		var t tableCounters
		if err := rows.Scan(&id, &t.schema, &t.name, &t.seqScan, &t.seqTup, &t.idxScan, &t.idxTup, &t.ins, &t.upd, &t.del, &t.live, &t.dead); err != nil {
			rows.Close()
			c.p.fail(c.r, "pg_stat_user_tables", err)
			return
		}
		cur[id] = t
	}
	if err := rows.Err(); err != nil {
		c.p.fail(c.r, "pg_stat_user_tables", err)
		return
	}

	irows, err := c.conn.Query(ctx, `SELECT `+marker+` indexrelid, relid, schemaname, relname, indexrelname,
		coalesce(idx_scan, 0), coalesce(idx_tup_read, 0), coalesce(idx_tup_fetch, 0)
		FROM pg_stat_user_indexes LIMIT `+strconv.Itoa(maxTracked))
	if err != nil {
		c.p.fail(c.r, "pg_stat_user_indexes", err)
		return
	}
	icur := map[uint32]indexCounters{}
	for irows.Next() {
		var id uint32
		var ix indexCounters
		if err := irows.Scan(&id, &ix.relid, &ix.schema, &ix.table, &ix.name, &ix.scan, &ix.tupRead, &ix.tupFtch); err != nil {
			irows.Close()
			c.p.fail(c.r, "pg_stat_user_indexes", err)
			return
		}
		icur[id] = ix
	}
	if err := irows.Err(); err != nil {
		c.p.fail(c.r, "pg_stat_user_indexes", err)
		return
	}
	prevT, prevI := w.tables, w.indexes
	w.tables, w.indexes = cur, icur
	if baseline {
		return
	}

	var tabs []evidence.PGTable
	for id, t := range cur {
		p := prevT[id] // zero for a table created since: all of it is new
		if t.seqScan < p.seqScan || t.idxScan < p.idxScan || t.ins < p.ins {
			p = tableCounters{} // counters were reset
		}
		d := evidence.PGTable{Schema: t.schema, Name: t.name,
			SeqScan: t.seqScan - p.seqScan, SeqTupRead: t.seqTup - p.seqTup, IdxScan: t.idxScan - p.idxScan, IdxTupFetch: t.idxTup - p.idxTup,
			TupIns: t.ins - p.ins, TupUpd: t.upd - p.upd, TupDel: t.del - p.del, LiveTuples: t.live, DeadTuples: t.dead}
		if d.SeqScan == 0 && d.IdxScan == 0 && d.TupIns == 0 && d.TupUpd == 0 && d.TupDel == 0 && d.SeqTupRead == 0 {
			continue
		}
		if len(w.used) < maxSized {
			w.used[id] = true
		}
		if sz, ok := w.sizes[id]; ok {
			d.SizeBytes, d.TotalBytes = sz[0], sz[1]
		}
		tabs = append(tabs, d)
	}
	var idxs []evidence.PGIndex
	for id, ix := range icur {
		p := prevI[id]
		if ix.scan < p.scan {
			p = indexCounters{}
		}
		if ix.scan-p.scan == 0 {
			continue
		}
		if len(w.used) < maxSized {
			w.used[id] = true
		}
		d := evidence.PGIndex{Schema: ix.schema, Table: ix.table, Name: ix.name,
			IdxScan: ix.scan - p.scan, IdxTupRead: ix.tupRead - p.tupRead, IdxTupFetch: ix.tupFtch - p.tupFtch}
		if sz, ok := w.sizes[id]; ok {
			d.SizeBytes = sz[0]
		}
		idxs = append(idxs, d)
	}
	if len(tabs) == 0 && len(idxs) == 0 {
		return
	}
	sort.Slice(tabs, func(i, j int) bool {
		return tabs[i].SeqTupRead+tabs[i].IdxTupFetch > tabs[j].SeqTupRead+tabs[j].IdxTupFetch
	})
	sort.Slice(idxs, func(i, j int) bool { return idxs[i].IdxScan > idxs[j].IdxScan })
	if err := c.emit(evidence.PG{T: now.UnixMilli(), Kind: evidence.PGKindTables, WindowMS: windowMS, Tables: tabs, Indexes: idxs}); err != nil {
		c.p.fail(c.r, "write tables", err)
	}
}

// readSizes sizes the relations seen in use. Size functions take an
// AccessShareLock on each relation; lock_timeout bounds the wait, and a
// failure only leaves sizes out.
func (c *collector) readSizes(ctx context.Context, w *windowState) {
	if len(w.used) == 0 {
		// Before anything was seen in use, size the largest tables by pages.
		rows, err := c.conn.Query(ctx, `SELECT `+marker+` c.oid FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
			ORDER BY c.relpages DESC LIMIT `+strconv.Itoa(maxSized/2))
		if err != nil {
			c.p.fail(c.r, "relation sizes", err)
			return
		}
		for rows.Next() {
			var id uint32
			if rows.Scan(&id) == nil {
				w.used[id] = true
			}
		}
		rows.Close()
	}
	ids := make([]uint32, 0, len(w.used))
	for id := range w.used {
		ids = append(ids, id)
	}
	rows, err := c.conn.Query(ctx, `SELECT `+marker+` c.oid, coalesce(pg_table_size(c.oid), 0), coalesce(pg_total_relation_size(c.oid), 0)
		FROM pg_class c WHERE c.oid = ANY($1)`, ids)
	if err != nil {
		c.p.fail(c.r, "relation sizes", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id uint32
		var size, total int64
		if err := rows.Scan(&id, &size, &total); err != nil {
			c.p.fail(c.r, "relation sizes", err)
			return
		}
		w.sizes[id] = [2]int64{size, total}
	}
	if err := rows.Err(); err != nil {
		c.p.fail(c.r, "relation sizes", err)
	}
}

// database writes pg_stat_database deltas and connection counts.
func (c *collector) database(ctx context.Context, w *windowState, now time.Time, windowMS int64, baseline bool) {
	sessions := "0::int8"
	if c.server.VersionNum >= 140000 {
		sessions = "d.sessions"
	}
	var cur dbCounters
	var conns, dbConns int
	err := c.conn.QueryRow(ctx, `SELECT `+marker+` `+sessions+`, d.xact_commit, d.xact_rollback, d.blks_read, d.blks_hit,
		d.tup_returned, d.tup_fetched, d.deadlocks, d.temp_files, d.temp_bytes,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datid = $1)::int
		FROM pg_stat_database d WHERE d.datid = $1`, c.dbOID).Scan(
		&cur.sessions, &cur.commit, &cur.rollback, &cur.blksRead, &cur.blksHit, &cur.tupRet, &cur.tupFetch,
		&cur.deadlocks, &cur.tempFiles, &cur.tempBytes, &conns, &dbConns)
	if err != nil {
		c.p.fail(c.r, "pg_stat_database", err)
		return
	}
	prev := w.database
	w.database = &cur
	if baseline || prev == nil {
		return
	}
	p := *prev
	if cur.commit < p.commit {
		p = dbCounters{} // reset
	}
	rec := &evidence.PGDatabase{Name: c.server.Database, MaxConnections: c.server.MaxConnections,
		ReservedConnections: c.server.ReservedConnections, Connections: conns, DBConnections: dbConns,
		Sessions: cur.sessions - p.sessions, XactCommit: cur.commit - p.commit, XactRollback: cur.rollback - p.rollback,
		BlksRead: cur.blksRead - p.blksRead, BlksHit: cur.blksHit - p.blksHit, TupReturned: cur.tupRet - p.tupRet,
		TupFetched: cur.tupFetch - p.tupFetch, Deadlocks: cur.deadlocks - p.deadlocks, TempFiles: cur.tempFiles - p.tempFiles,
		TempBytes: cur.tempBytes - p.tempBytes}
	if err := c.emit(evidence.PG{T: now.UnixMilli(), Kind: evidence.PGKindDatabase, WindowMS: windowMS, Database: rec}); err != nil {
		c.p.fail(c.r, "write database", err)
	}
}

// topLevelOnly restricts pg_stat_statements to statements the clients sent
// (PostgreSQL 14+ records nested ones separately under the same queryid):
// what the probe runs inside its own EXPLAIN must not count as the
// application's work.
func (c *collector) topLevelOnly() string {
	if c.server != nil && c.server.VersionNum >= 140000 {
		return " AND toplevel"
	}
	return ""
}
