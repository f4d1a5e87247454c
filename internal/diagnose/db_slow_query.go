package diagnose

import (
	"fmt"
	"math"
	"strings"

	"github.com/chokepoint/chokepoint/internal/report"
)

// Thresholds of db.slow-query.
const (
	// pgSlowMinDBShare: the statement dominates the database's time
	// (CONTRACT.md §5: "one query dominates database time").
	pgSlowMinDBShare = 0.50
	// pgSlowMinMeanMS: point lookups and small index scans run in well
	// under a millisecond on PostgreSQL; a statement whose calls take 5 ms
	// at low load does real work per call.
	pgSlowMinMeanMS = 5.0
	// pgSlowMaxCalls: a statement run more often than this per request
	// is a per-item pattern (db.n-plus-one), not one slow query.
	pgSlowMaxCalls = 3.0
	// pgSlowHugeResult rows per call is a result too large for a
	// request to use whole (pages of 20-100 rows are the norm).
	pgSlowHugeResult = 1000
	// pgSlowNodeShare: a plan node owning this share of the plan's cost
	// is named as where the time goes.
	pgSlowNodeShare = 0.15
	// pgSlowSpeedup is the gain the estimate assumes for the fix (a
	// rollup, an index matching ORDER BY, a smaller result usually bring
	// 5x or more; stated in the method).
	pgSlowSpeedup = 5.0
)

type dbSlowQuery struct{}

func (dbSlowQuery) Kind() string { return "db.slow-query" }

func (r dbSlowQuery) Check(in *Input) Result {
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
	v := in.pgStmtView(&f, f.At.Stmts[0])
	if v.DBShare < pgSlowMinDBShare || v.LatShare < pgStmtMinLatencyShare {
		return Result{RuledOut: fmt.Sprintf("no statement dominates: the heaviest takes %s of database time and %s of request latency at %s (needs %s and %s)",
			pct(v.DBShare), pct(v.LatShare), in.dbStepLabel(f.Focus), pct(pgSlowMinDBShare), pct(pgStmtMinLatencyShare))}
	}
	mean := v.BaseMeanMS
	if mean == 0 {
		mean = v.MeanMS()
	}
	if mean < pgSlowMinMeanMS {
		return Result{RuledOut: fmt.Sprintf("the dominant statement takes %.2f ms per call at low load, below the %.0f ms of a slow query (%.1f calls per request: its cost is in how often it runs)", mean, pgSlowMinMeanMS, v.CallsPerReq)}
	}
	if v.CallsPerReq > pgSlowMaxCalls {
		return Result{RuledOut: fmt.Sprintf("the dominant statement runs %.1f times per request, above %.0f: a per-item pattern (db.n-plus-one), not one slow query", v.CallsPerReq, pgSlowMaxCalls)}
	}
	if c, _ := in.pgFindIndexCase(&f, v); c.plan != nil {
		return Result{RuledOut: fmt.Sprintf("the dominant statement scans %s where an index on (%s) would serve: a missing index, not a slow query", dbLocusTable(c.scan.Schema, c.scan.Relation), strings.Join(c.scan.Columns, ", "))}
	}
	return Result{Findings: []Candidate{r.finding(in, &f, v, mean)}}
}

func (r dbSlowQuery) finding(in *Input, f *pgFocus, v pgStmtView, mean float64) Candidate {
	impact, first := v.DBShare, dbEv("postgres", "share of database execution time in this statement at the knee", v.DBShare, "ratio")
	latEv := dbEv("postgres", "share of mean request latency spent executing it", v.LatShare, "ratio")
	if v.LatShare < impact {
		impact, first, latEv = v.LatShare, latEv, first
	}
	rowsPerCall := 0.0
	if v.Calls > 0 {
		rowsPerCall = float64(v.Rows) / float64(v.Calls)
	}
	evs := []report.Evidence{first, latEv,
		dbEv("postgres", "mean execution time per call at low load", mean, "ms"),
		dbEv("postgres", "mean execution time per call at the knee", v.MeanMS(), "ms"),
		dbEv("postgres", "calls per request", v.CallsPerReq, "calls"),
		dbEv("postgres", "rows returned per call", rowsPerCall, "rows"),
	}
	conf := 0.6 // one statement dominates database time and each call is slow
	var causes, fixes []string
	p := in.pgPlanFor(v.QueryID, v.Query)
	pi := pgAnalysePlan(p)
	explained := false
	for _, n := range pi.Nodes {
		if n.Share < pgSlowNodeShare {
			break
		}
		what := n.Type
		if n.Relation != "" {
			what += " on " + n.Relation
			if live := in.pgMaxLiveTuples("", n.Relation); live > 0 {
				what += fmt.Sprintf(" (%s rows)", dbCount(live))
			}
		}
		evs = append(evs, dbEv("postgres", "plan cost share of "+what, n.Share, "ratio"))
		causes = append(causes, fmt.Sprintf("%s (%s of the plan's cost)", what, pct(n.Share)))
		explained = true
	}
	share := func(types ...string) float64 {
		sum := 0.0
		for _, n := range pi.Nodes {
			for _, t := range types {
				if n.Type == t {
					sum += n.Share
				}
			}
		}
		return sum
	}
	has := func(types ...string) bool {
		for _, n := range pi.Nodes {
			for _, t := range types {
				if n.Type == t {
					return true
				}
			}
		}
		return false
	}
	if has("Aggregate", "HashAggregate", "GroupAggregate", "MixedAggregate") {
		fixes = append(fixes, "precompute the aggregate (a rollup table maintained on write, or a materialized view refreshed on a schedule) and read it through an index")
	}
	if has("WindowAgg") {
		fixes = append(fixes, "compute the window over fewer rows (filter first) or store its result")
	}
	if sorts := share("Sort", "Incremental Sort"); has("Sort", "Incremental Sort") && (v.TempBlks > 0 || sorts >= pgSlowNodeShare) {
		if v.TempBlks > 0 {
			fixes = append(fixes, fmt.Sprintf("the sort spills to disk (%s temporary blocks written): raise work_mem for this query or sort fewer rows", dbCount(v.TempBlks)))
		} else {
			fixes = append(fixes, "serve ORDER BY from an index (rows come sorted) or sort fewer rows")
		}
	}
	if rowsPerCall >= pgSlowHugeResult {
		causes = append(causes, fmt.Sprintf("%.0f rows returned per call", rowsPerCall))
		fixes = append(fixes, "return fewer rows: paginate with LIMIT and a keyset cursor, select only the columns used")
		explained = true
	}
	for _, s := range pi.Scans {
		if live := in.pgMaxLiveTuples(s.Schema, s.Relation); live >= pgIndexMinRows && len(s.Equality)+len(s.Range) == 0 {
			fixes = append(fixes, fmt.Sprintf("avoid reading all %s rows of %s per call (narrow the query, or keep a summary of it)", dbCount(live), dbLocusTable(s.Schema, s.Relation)))
			break
		}
	}
	if explained {
		conf += 0.1 // the plan (or the result size) says where the time goes
	}
	if v.LatShare >= pgStmtLimitingShare {
		conf += 0.1
	}
	if len(fixes) == 0 {
		fixes = append(fixes, "run EXPLAIN (ANALYZE, BUFFERS) on it and remove the dominant work (a summary table, a narrower query, or caching its result)")
	}
	limiting := v.LatShare >= pgStmtLimitingShare || (v.DBShare >= pgStmtLimitingShare && in.pgDBBusy(f))
	rec := "Make this statement cheaper: " + strings.Join(fixes, "; ") + "."
	if !pgHasParams(v.Query) {
		// Every call returns the same rows: caching is the fix, and the
		// bottleneck is named by cache.opportunity.
		limiting = false
		rec = "The statement takes no parameters, so every call returns the same rows: cache its result (with request coalescing) rather than running it per request; or " + strings.Join(fixes, "; ") + "."
	}
	title := fmt.Sprintf("One statement takes %s of database time at %.1f ms per call", pct(v.DBShare), v.MeanMS())
	if len(causes) > 0 {
		title += ": " + causes[0]
	}
	fnd := report.Finding{
		Kind:           r.Kind(),
		Title:          title,
		Locus:          report.Locus{Endpoint: in.dbEndpointFor(v.Query), Query: v.Query},
		Impact:         round3(impact),
		Confidence:     round3(math.Min(conf, 0.9)),
		Evidence:       evs,
		Recommendation: rec,
	}
	if limiting {
		fnd.ExpectedGain = amdahlGain(in, math.Min(v.DBShare, 0.99), pgSlowSpeedup, "the statement")
	}
	return Candidate{Finding: fnd, Limiting: limiting}
}
