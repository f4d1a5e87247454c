package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/pgplan"
)

// Plan methods (evidence.PGPlan.Method).
const (
	MethodGenericPlan     = "generic_plan"     // EXPLAIN (GENERIC_PLAN), PostgreSQL 16+
	MethodPreparedGeneric = "prepared_generic" // PREPARE + plan_cache_mode=force_generic_plan + EXECUTE(NULL, ...), 15 and older
	MethodAnalyze         = "analyze"          // EXPLAIN ANALYZE in a rolled-back read-only transaction (Config.ExplainAnalyze)
)

// Bounds of the hypothetical-index step.
const (
	hypoPerPlan  = 3 // sequential scans tried per plan
	hypoMaxCols  = 4 // columns of one hypothetical index (a wider one is rarely the fix)
	preparedName = "chokepoint_plan"
)

// explainTop explains up to max statements of the run's top TopN (by total
// execution time) that have not been explained yet.
func (c *collector) explainTop(ctx context.Context, w *windowState, max int) {
	topN := c.p.cfg.TopN
	if topN < 0 || c.pgssSchema == "" || ctx.Err() != nil {
		return
	}
	ids := make([]int64, 0, len(w.runTotalMS))
	for id := range w.runTotalMS {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return w.runTotalMS[ids[i]] > w.runTotalMS[ids[j]] })
	if len(ids) > topN {
		ids = ids[:topN]
	}
	done := 0
	for _, id := range ids {
		if done >= max || w.explains >= topN*explainBudgetFactor || ctx.Err() != nil {
			return
		}
		if w.explained[id] {
			continue
		}
		text, own, ok := c.texts.get(id)
		if !ok || own {
			continue
		}
		w.explained[id] = true
		if !c.texts.whole(id) || !IsSelect(text) {
			continue // only SELECT (and WITH ... SELECT) statements are explained
		}
		w.explains++
		done++
		rec := c.explain(ctx, id, text)
		if err := c.emit(evidence.PG{T: c.ms(), Kind: evidence.PGKindPlan, Plan: rec}); err != nil {
			c.p.fail(c.r, "write plan", err)
			continue
		}
		c.p.mu.Lock()
		c.p.st.plans++
		c.p.st.hypo += len(rec.Hypo)
		c.p.mu.Unlock()
	}
}

// explain plans one statement inside a read-only transaction that is
// always rolled back.
func (c *collector) explain(ctx context.Context, id int64, text string) *evidence.PGPlan {
	rec := &evidence.PGPlan{QueryID: id, Query: truncate(text, maxTextBytes)}
	stmt := strings.TrimRight(strings.TrimSpace(text), "; \t\n")
	if _, err := exec1(ctx, c.conn, "BEGIN "+marker+" READ ONLY"); err != nil {
		rec.Error = c.r.String(firstLine(err.Error()))
		return rec
	}
	var pl planner
	defer func() {
		// Rolled back whatever happened; the prepared statement and
		// hypothetical indexes are not transactional: drop them too.
		bg := context.WithoutCancel(ctx)
		_, _ = exec1(bg, c.conn, "ROLLBACK "+marker)
		if pl.prepared {
			_, _ = exec1(bg, c.conn, "DEALLOCATE "+marker+" "+preparedName)
		}
		if c.server.HypoPG {
			_, _ = exec1(bg, c.conn, "SELECT "+marker+" hypopg_reset()")
		}
	}()
	pl = planner{c: c, stmt: stmt, generic: c.server.VersionNum >= 160000}

	raw, err := pl.plan(ctx, false)
	if err != nil {
		rec.Error = c.r.String(firstLine(err.Error()))
		return rec
	}
	rec.Method = MethodPreparedGeneric
	if pl.generic {
		rec.Method = MethodGenericPlan
	}
	e, err := pgplan.Parse(raw)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	rec.TotalCost = e.Plan.TotalCost
	scans := pgplan.SeqScans(e)
	for _, s := range scans {
		rec.SeqScans = append(rec.SeqScans, evidence.PGSeqScan{Schema: s.Schema, Relation: s.Relation, Filter: s.Filter,
			PlanRows: s.PlanRows, TotalCost: s.TotalCost, Columns: s.Columns})
	}
	if c.server.HypoPG {
		rec.Hypo = pl.hypothetical(ctx, scans, e.Plan.TotalCost)
	}
	if c.p.cfg.ExplainAnalyze {
		if a, err := pl.plan(ctx, true); err != nil {
			rec.Error = "analyze: " + c.r.String(firstLine(err.Error()))
		} else if ae, err := pgplan.Parse(a); err == nil {
			raw, rec.Method = a, MethodAnalyze
			for i, s := range pgplan.SeqScans(ae) {
				if i < len(rec.SeqScans) {
					rec.SeqScans[i].RowsRemoved = s.RowsRemovedByFilter
				}
			}
		}
	}
	if json.Valid(raw) {
		rec.Plan = json.RawMessage(raw)
	}
	return rec
}

// planner takes plans of one statement inside the open transaction.
type planner struct {
	c        *collector
	stmt     string
	generic  bool // EXPLAIN (GENERIC_PLAN) is available (16+)
	prepared bool
	nparams  int
}

// plan returns EXPLAIN (FORMAT JSON, VERBOSE) output; analyze executes the
// statement (the caller ensured it is a SELECT, and the transaction is
// read-only and rolled back).
func (pl *planner) plan(ctx context.Context, analyze bool) ([]byte, error) {
	if pl.generic && !analyze {
		return pl.explainRaw(ctx, "EXPLAIN "+marker+" (GENERIC_PLAN, FORMAT JSON, VERBOSE) "+pl.stmt)
	}
	if err := pl.prepare(ctx); err != nil {
		return nil, err
	}
	opts := "FORMAT JSON, VERBOSE"
	if analyze {
		opts = "ANALYZE, " + opts
	}
	return pl.explainRaw(ctx, "EXPLAIN "+marker+" ("+opts+") EXECUTE "+preparedName+pl.nullArgs())
}

// prepare (re)prepares the statement as a generic plan. Re-preparing after
// a hypothetical index is created makes the planner consider it.
func (pl *planner) prepare(ctx context.Context) error {
	c := pl.c
	if pl.prepared {
		if _, err := exec1(ctx, c.conn, "DEALLOCATE "+marker+" "+preparedName); err != nil {
			return err
		}
		pl.prepared = false
	}
	if _, err := exec1(ctx, c.conn, "SET "+marker+" LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		return err
	}
	if _, err := exec1(ctx, c.conn, "PREPARE "+marker+" "+preparedName+" AS "+pl.stmt); err != nil {
		return err
	}
	pl.prepared = true
	res, err := exec1(ctx, c.conn, "SELECT "+marker+" coalesce(cardinality(parameter_types), 0) FROM pg_prepared_statements WHERE name = '"+preparedName+"'")
	if err != nil {
		return err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return errors.New("prepared statement not found")
	}
	n, err := strconv.Atoi(string(res.Rows[0][0]))
	if err != nil {
		return fmt.Errorf("parameter count: %w", err)
	}
	pl.nparams = n
	return nil
}

func (pl *planner) nullArgs() string {
	if pl.nparams == 0 {
		return ""
	}
	return "(" + strings.TrimSuffix(strings.Repeat("NULL, ", pl.nparams), ", ") + ")"
}

func (pl *planner) explainRaw(ctx context.Context, sql string) ([]byte, error) {
	res, err := exec1(ctx, pl.c.conn, sql)
	if err != nil {
		return nil, err
	}
	var b []byte
	for _, row := range res.Rows {
		if len(row) > 0 {
			b = append(b, row[0]...)
			b = append(b, '\n')
		}
		if len(b) > pgplan.MaxInput {
			return nil, pgplan.ErrTooLarge
		}
	}
	if len(b) == 0 {
		return nil, errors.New("explain returned nothing")
	}
	return b, nil
}

// hypothetical asks the planner, for each sequential scan with filter
// columns, what the plan would cost with an index on them (hypopg:
// session-local, nothing is written), and resets after each.
func (pl *planner) hypothetical(ctx context.Context, scans []pgplan.SeqScan, before float64) []evidence.PGHypoResult {
	c := pl.c
	var out []evidence.PGHypoResult
	for _, s := range scans {
		if len(out) >= hypoPerPlan || ctx.Err() != nil {
			break
		}
		if len(s.Columns) == 0 {
			continue
		}
		cols := s.Columns
		if len(cols) > hypoMaxCols {
			cols = cols[:hypoMaxCols]
		}
		rel := pgx.Identifier{s.Relation}
		if s.Schema != "" {
			rel = pgx.Identifier{s.Schema, s.Relation}
		}
		quoted := make([]string, len(cols))
		for i, col := range cols {
			quoted[i] = pgx.Identifier{col}.Sanitize()
		}
		ddl := "CREATE INDEX ON " + rel.Sanitize() + " (" + strings.Join(quoted, ", ") + ")"
		h := evidence.PGHypoResult{Index: ddl, CostBefore: before}
		res, err := exec1(ctx, c.conn, "SELECT "+marker+" indexname FROM hypopg_create_index($1)", []byte(ddl))
		if err != nil {
			h.Error = c.r.String(firstLine(err.Error()))
			out = append(out, h)
			continue
		}
		name := ""
		if len(res.Rows) == 1 && len(res.Rows[0]) == 1 {
			name = string(res.Rows[0][0])
		}
		raw, err := pl.plan(ctx, false)
		if err == nil {
			var e *pgplan.Explain
			if e, err = pgplan.Parse(raw); err == nil {
				h.CostAfter = e.Plan.TotalCost
				e.Plan.Walk(func(n *pgplan.Node, _ []*pgplan.Node) bool {
					if name != "" && n.IndexName == name {
						h.Used = true
					}
					return true
				})
			}
		}
		if err != nil {
			h.Error = c.r.String(firstLine(err.Error()))
		}
		if _, err := exec1(ctx, c.conn, "SELECT "+marker+" hypopg_reset()"); err != nil && h.Error == "" {
			h.Error = c.r.String(firstLine(err.Error()))
		}
		out = append(out, h)
	}
	return out
}

// IsSelect reports whether a statement only reads: it starts (after
// comments and parentheses) with SELECT, or with WITH and has no
// INSERT/UPDATE/DELETE/MERGE, and it has no SELECT ... INTO. Only such
// statements are explained. Quoted text and comments are ignored.
func IsSelect(sql string) bool {
	words := sqlWords(sql)
	if len(words) == 0 {
		return false
	}
	switch words[0] {
	case "select", "with":
	default:
		return false
	}
	for _, w := range words {
		switch w {
		case "insert", "update", "delete", "merge", "into", "call", "copy":
			return false
		}
	}
	return true
}

// sqlWords returns the lower-cased keywords and identifiers of sql outside
// quotes and comments (a rough lexer, enough to tell what a statement does).
func sqlWords(s string) []string {
	var words []string
	for i := 0; i < len(s); {
		ch := s[i]
		switch {
		case ch == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case ch == '/' && i+1 < len(s) && s[i+1] == '*':
			depth := 0
			for i < len(s) {
				if i+1 < len(s) && s[i] == '/' && s[i+1] == '*' {
					depth++
					i += 2
					continue
				}
				if i+1 < len(s) && s[i] == '*' && s[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				i++
			}
		case ch == '\'' || ch == '"':
			i++
			for i < len(s) {
				if s[i] == ch {
					if i+1 < len(s) && s[i+1] == ch {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
		case ch == '$' && i+1 < len(s) && (s[i+1] == '$' || isLetter(s[i+1])):
			// Dollar quoting: $tag$ ... $tag$ (not a $1 parameter).
			j := i + 1
			for j < len(s) && (isLetter(s[j]) || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			if j < len(s) && s[j] == '$' {
				tag := s[i : j+1]
				end := strings.Index(s[j+1:], tag)
				if end < 0 {
					return words
				}
				i = j + 1 + end + len(tag)
			} else {
				i = j
			}
		case isLetter(ch):
			j := i
			for j < len(s) && (isLetter(s[j]) || s[j] >= '0' && s[j] <= '9' || s[j] == '$') {
				j++
			}
			words = append(words, strings.ToLower(s[i:j]))
			i = j
		default:
			i++
		}
	}
	return words
}

func isLetter(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
