package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of the statement rules (db.missing-index, db.slow-query).
const (
	// pgIndexMinRows: a sequential scan of fewer live rows is cheap (a few
	// hundred 8 KB pages, all cached) and PostgreSQL rightly prefers it to
	// an index; the example threshold.
	pgIndexMinRows = 10_000
	// pgStmtMinDBShare: a statement must take at least this share of the
	// database's execution time at the knee to be worth naming (below it
	// other statements together weigh more).
	pgStmtMinDBShare = 0.30
	// pgStmtMinLatencyShare: ... and at least this share of request latency,
	// CONTRACT.md §4's line between minor and major.
	pgStmtMinLatencyShare = MajorImpact
	// pgStmtLimitingShare: a statement that takes most of request latency (or
	// most of a busy database's time) is what broke the objective.
	pgStmtLimitingShare = 0.50
	// pgIndexSelectivity: an index serves a filter that keeps at most this
	// share of the table; PostgreSQL's planner itself moves from index to
	// sequential scans somewhere between 5% and 20% selectivity.
	pgIndexSelectivity = 0.10
	// pgScanMinCostShare: the scan must carry this share of the plan's cost
	// (a cheap scan beside an expensive join is not the problem).
	pgScanMinCostShare = 0.30
	// pgScanReadsTable: the table's seq_tup_read per call of the statement,
	// over its live rows, that confirms each call scans it.
	pgScanReadsTable = 0.5
	// pgIndexSpeedupCap bounds the speedup assumed for an index when the
	// planner gave no hypothetical cost: the scan-to-lookup ratio is often
	// 100x or more, but other work then dominates; 20x keeps the estimate
	// conservative (stated in the method).
	pgIndexSpeedupCap = 20.0
	// pgHypoMinGain: a hypothetical index must cut the planner's cost at
	// least this much to count as confirmation.
	pgHypoMinGain = 2.0
	// pgStmtTopN statements (by time at the knee) are examined.
	pgStmtTopN = 5
)

type dbMissingIndex struct{}

func (dbMissingIndex) Kind() string { return "db.missing-index" }

// pgIndexCase is a statement whose plan scans a large table an index serves.
type pgIndexCase struct {
	v     pgStmtView
	plan  *evidence.PGPlan
	scan  pgPlanScan
	live  int64
	share float64 // scan cost over plan cost
	hypo  *evidence.PGHypoResult
}

// pgFindIndexCase looks for the statement's selective sequential scan on a
// large table. It returns the case, or why there is none.
func (in *Input) pgFindIndexCase(f *pgFocus, v pgStmtView) (pgIndexCase, string) {
	p := in.pgPlanFor(v.QueryID, v.Query)
	if p == nil {
		return pgIndexCase{}, "no plan was recorded for it (the probe explains SELECT statements only)"
	}
	if p.Error != "" && len(p.SeqScans) == 0 && len(p.Plan) == 0 {
		return pgIndexCase{}, "its plan could not be taken: " + p.Error
	}
	pi := pgAnalysePlan(p)
	if len(pi.Scans) == 0 {
		return pgIndexCase{}, "its plan has no sequential scan"
	}
	var best pgIndexCase
	why := ""
	for _, s := range pi.Scans {
		live := in.pgMaxLiveTuples(s.Schema, s.Relation)
		share := 0.0
		if pi.TotalCost > 0 {
			share = math.Min(1, s.TotalCost/pi.TotalCost)
		}
		switch {
		case live < pgIndexMinRows:
			if why == "" {
				why = fmt.Sprintf("its sequential scan of %s reads %s live rows, below the %s where an index pays", dbLocusTable(s.Schema, s.Relation), dbCount(live), dbCount(pgIndexMinRows))
			}
			continue
		case len(s.Equality)+len(s.Range) == 0:
			if why == "" {
				why = fmt.Sprintf("its sequential scan of %s (%s rows) has no filter an index could serve", dbLocusTable(s.Schema, s.Relation), dbCount(live))
			}
			continue
		case s.PlanRows > pgIndexSelectivity*float64(live):
			if why == "" {
				why = fmt.Sprintf("its filter on %s keeps %.0f of %s rows (%s), above the %s an index serves", dbLocusTable(s.Schema, s.Relation), s.PlanRows, dbCount(live), pct(s.PlanRows/float64(live)), pct(pgIndexSelectivity))
			}
			continue
		case share < pgScanMinCostShare:
			if why == "" {
				why = fmt.Sprintf("its sequential scan of %s is %s of the plan's cost, below %s", dbLocusTable(s.Schema, s.Relation), pct(share), pct(pgScanMinCostShare))
			}
			continue
		}
		if share > best.share {
			best = pgIndexCase{v: v, plan: p, scan: s, live: live, share: share}
		}
	}
	if best.plan == nil {
		return best, why
	}
	for i := range p.Hypo {
		h := &p.Hypo[i]
		if h.Error == "" && strings.Contains(h.Index, best.scan.Relation) {
			best.hypo = h
			break
		}
	}
	if h := best.hypo; h != nil && (!h.Used || h.CostAfter <= 0 || h.CostBefore/h.CostAfter < pgHypoMinGain) {
		return pgIndexCase{}, fmt.Sprintf("the planner would not gain from an index on %s (%s): hypothetical cost %.0f → %.0f", dbLocusTable(best.scan.Schema, best.scan.Relation), strings.Join(best.scan.Columns, ", "), h.CostBefore, h.CostAfter)
	}
	return best, ""
}

func (r dbMissingIndex) Check(in *Input) Result {
	if why := in.pgUnavailable(); why != "" {
		return Result{RuledOut: why}
	}
	if why := in.statementsUnavailable(); why != "" {
		return Result{RuledOut: why}
	}
	f, ok := in.pgFocusSteps()
	if !ok {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	if len(f.At.Stmts) == 0 {
		return Result{RuledOut: fmt.Sprintf("could not check: no statement ran in the database at %s", in.dbStepLabel(f.Focus))}
	}
	var why string
	for i, s := range f.At.Stmts {
		if i >= pgStmtTopN {
			break
		}
		v := in.pgStmtView(&f, s)
		if v.DBShare < pgStmtMinDBShare || v.LatShare < pgStmtMinLatencyShare {
			if why == "" {
				why = pgWeightWhy(in, &f, v)
			}
			break // statements are by time: the next ones weigh less
		}
		c, w := in.pgFindIndexCase(&f, v)
		if c.plan == nil {
			if why == "" {
				why = fmt.Sprintf("the top statement (%s of database time at %s, %s of request latency) is not a missing index: %s", pct(v.DBShare), in.dbStepLabel(f.Focus), pct(v.LatShare), w)
			}
			continue
		}
		return Result{Findings: []Candidate{r.finding(in, &f, c)}}
	}
	if why == "" {
		why = "no statement ran long enough to matter"
	}
	return Result{RuledOut: why}
}

// pgWeightWhy says why a statement weighs too little to be a bottleneck.
func pgWeightWhy(in *Input, f *pgFocus, v pgStmtView) string {
	return fmt.Sprintf("the heaviest statement takes %s of database time and %.2f ms per request (%s of request latency) at %s, below %s of database time and %s of latency",
		pct(v.DBShare), v.MSPerReq, pct(v.LatShare), in.dbStepLabel(f.Focus), pct(pgStmtMinDBShare), pct(pgStmtMinLatencyShare))
}

func (r dbMissingIndex) finding(in *Input, f *pgFocus, c pgIndexCase) Candidate {
	v, s := c.v, c.scan
	table := dbLocusTable(s.Schema, s.Relation)
	filtered := append(append([]string{}, s.Equality...), s.Range...)
	cols := s.Columns
	if len(cols) == 0 {
		cols = filtered
	}
	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = pgIdent(col)
	}
	rel := pgIdent(s.Relation)
	if s.Schema != "" && s.Schema != "public" {
		rel = pgIdent(s.Schema) + "." + rel
	}
	ddl := fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (%s);", rel, strings.Join(quoted, ", "))

	impact, first := v.DBShare, dbEv("postgres", "share of database execution time in this statement at the knee", v.DBShare, "ratio")
	latEv := dbEv("postgres", "share of mean request latency spent executing it", v.LatShare, "ratio")
	if v.LatShare < impact {
		impact, first, latEv = v.LatShare, latEv, first
	}
	evs := []report.Evidence{first, latEv,
		dbEv("postgres", "mean execution time per call at the knee", v.MeanMS(), "ms"),
		dbEv("postgres", "calls per request", v.CallsPerReq, "calls"),
		dbEv("postgres", "live rows in "+table, float64(c.live), "rows"),
		dbEv("postgres", "rows the planner expects out of the filter ("+s.Filter+")", s.PlanRows, "rows"),
		dbEv("postgres", "sequential scan's share of the plan's cost", c.share, "ratio"),
	}
	if v.BaseMeanMS > 0 {
		evs = append(evs, dbEv("postgres", "mean execution time per call at low load", v.BaseMeanMS, "ms"))
	}
	conf := 0.6 // a dominant statement and its plan's selective scan of a large table
	if t := f.At.tableByName(s.Schema, s.Relation); t != nil && v.Calls > 0 {
		perCall := float64(t.SeqTupRead) / float64(v.Calls)
		evs = append(evs, dbEv("postgres", "rows read by sequential scans of "+table+" per call", perCall, "rows"))
		if perCall >= pgScanReadsTable*float64(c.live) {
			conf += 0.1 // pg_stat_user_tables confirms each call reads the table
		}
	}
	if v.LatShare >= pgStmtLimitingShare {
		conf += 0.1 // requests spend most of their time in it
	}
	speedup := pgIndexSpeedupCap
	method := fmt.Sprintf("assumed %.0fx cheaper with the index (no hypothetical-index plan: CREATE EXTENSION hypopg lets the probe ask the planner)", pgIndexSpeedupCap)
	if s.PlanRows > 0 && float64(c.live)/s.PlanRows < speedup {
		speedup = math.Max(1.5, float64(c.live)/s.PlanRows)
		method = fmt.Sprintf("assumed %.1fx cheaper (rows scanned over rows kept)", speedup)
	}
	if h := c.hypo; h != nil {
		evs = append(evs, dbEv("postgres", "planner cost without the index", h.CostBefore, "cost"),
			dbEv("postgres", "planner cost with a hypothetical index ("+h.Index+")", h.CostAfter, "cost"))
		conf += 0.15
		speedup = math.Min(h.CostBefore/h.CostAfter, 100*pgIndexSpeedupCap)
		method = fmt.Sprintf("%.1fx cheaper by the planner's cost with a hypothetical index (hypopg)", speedup)
	}
	limiting := v.LatShare >= pgStmtLimitingShare || (v.DBShare >= pgStmtLimitingShare && in.pgDBBusy(f))
	title := fmt.Sprintf("Sequential scan of %s (%s rows) filtering on %s: %s of database time", table, dbCount(c.live), strings.Join(filtered, ", "), pct(v.DBShare))
	if v.MeanMS() > 0 {
		title += fmt.Sprintf(", %.1f ms per call", v.MeanMS())
	}
	rec := fmt.Sprintf("%s — an index on the filtered column(s) %s", ddl, strings.Join(filtered, ", "))
	if len(s.Sort) > 0 && len(cols) > len(filtered) {
		rec += fmt.Sprintf(", then the sort key(s) %s so that ORDER BY reads it in order", strings.Join(s.Sort, ", "))
	}
	rec += fmt.Sprintf("; the statement now reads all %s rows of %s per call to return about %.0f.", dbCount(c.live), table, s.PlanRows)
	fnd := report.Finding{
		Kind:           r.Kind(),
		Title:          title,
		Locus:          report.Locus{Endpoint: in.dbEndpointFor(v.Query), Query: v.Query, Table: table, Columns: filtered},
		Impact:         round3(impact),
		Confidence:     round3(math.Min(conf, 0.95)),
		Evidence:       evs,
		Recommendation: rec,
	}
	if limiting {
		if g := amdahlGain(in, math.Min(v.DBShare, 0.99), speedup, "the statement"); g != nil {
			g.Method += "; " + method
			fnd.ExpectedGain = g
		}
	}
	return Candidate{Finding: fnd, Limiting: limiting}
}

// pgDBBusyShare: the database counts as busy when statements execute, on
// average, on at least this share of the machine's cores (PostgreSQL runs
// one process per executing statement).
const pgDBBusyShare = 0.5

// pgDBBusy reports whether statements kept the database's CPUs busy at the
// knee (statement execution time per second over the cores).
func (in *Input) pgDBBusy(f *pgFocus) bool {
	cores := float64(in.Cores)
	if m := in.pgMachineCores(f.Focus); m > 0 {
		cores = float64(m)
	}
	if cores <= 0 || f.At.StmtSeconds <= 0 {
		return false
	}
	return f.At.TotalExecMS/f.At.StmtSeconds/1000 >= pgDBBusyShare*cores
}

// pgMachineCores is the machine's core count from the step's samples.
func (in *Input) pgMachineCores(step int) int {
	start, end := in.StepSpan(step)
	for _, r := range in.ProcIn(evidence.RoleMachine, start, end) {
		if r.Machine != nil && r.Machine.Cores > 0 {
			return r.Machine.Cores
		}
	}
	return 0
}
