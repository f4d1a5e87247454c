package postgres

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// activitySampler samples pg_stat_activity (and pg_locks when sessions
// wait on locks) on its own connection.
type activitySampler struct {
	c    *collector
	conn *pgx.Conn
}

func (a *activitySampler) run(ctx context.Context) {
	t := time.NewTicker(a.c.p.cfg.ActivityInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.sample(ctx)
		}
	}
}

// activityRow is one session of pg_stat_activity.
type activityRow struct {
	state, waitType, waitEvent string
	queryID                    int64
	query                      string
	runningMS                  float64
}

func (a *activitySampler) sample(ctx context.Context) {
	c := a.c
	qid := "0::int8"
	if c.server.VersionNum >= 140000 {
		qid = "coalesce(query_id, 0)"
	}
	now := c.now()
	rows, err := a.conn.Query(ctx, `SELECT `+marker+` coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''),
		`+qid+`, left(coalesce(query, ''), `+strconv.Itoa(maxActivityText)+`),
		coalesce(extract(epoch FROM clock_timestamp() - query_start) * 1000, 0)::float8
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND datid = $1 AND pid <> ALL($2)`, c.dbOID, c.ownPIDs)
	if err != nil {
		if ctx.Err() == nil {
			c.p.fail(c.r, "pg_stat_activity", err)
		}
		return
	}
	var sessions []activityRow
	for rows.Next() {
		var r activityRow
		if err := rows.Scan(&r.state, &r.waitType, &r.waitEvent, &r.queryID, &r.query, &r.runningMS); err != nil {
			rows.Close()
			c.p.fail(c.r, "pg_stat_activity", err)
			return
		}
		sessions = append(sessions, r)
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() == nil {
			c.p.fail(c.r, "pg_stat_activity", err)
		}
		return
	}
	act := summarise(sessions, c.texts.idOf)
	if err := c.emit(evidence.PG{T: now.UnixMilli(), Kind: evidence.PGKindActivity, Activity: act}); err != nil {
		c.p.fail(c.r, "write activity", err)
		return
	}
	c.p.mu.Lock()
	c.p.st.samples++
	c.p.mu.Unlock()
	if act.WaitType["Lock"] > 0 {
		a.locks(ctx, now)
	}
}

// summarise counts sessions by state and wait, and groups the busy ones by
// statement. idOf maps a text to its pg_stat_statements id when the row
// carries none.
func summarise(sessions []activityRow, idOf func(string) int64) *evidence.PGActivity {
	act := &evidence.PGActivity{Sessions: len(sessions), States: map[string]int{}}
	type key struct {
		id   int64
		text string
	}
	groups := map[key]*evidence.PGActivityQuery{}
	var order []key
	for _, s := range sessions {
		state := s.state
		if state == "" {
			state = "unknown"
		}
		act.States[state]++
		busy := s.state == "active"
		inTx := s.state == "idle in transaction" || s.state == "idle in transaction (aborted)"
		if busy && s.waitType != "" {
			if act.WaitType == nil {
				act.WaitType, act.Waits = map[string]int{}, map[string]int{}
			}
			act.WaitType[s.waitType]++
			act.Waits[s.waitType+":"+s.waitEvent]++
		}
		if !busy && !inTx {
			continue
		}
		k := key{id: s.queryID}
		if k.id == 0 && idOf != nil {
			k.id = idOf(s.query)
		}
		if k.id == 0 {
			k.text = normaliseRaw(s.query)
		}
		g := groups[k]
		if g == nil {
			if len(groups) >= maxActivityQueries {
				continue
			}
			g = &evidence.PGActivityQuery{QueryID: k.id, Query: k.text}
			groups[k] = g
			order = append(order, k)
		}
		if inTx {
			g.IdleInTx++
			continue
		}
		g.Active++
		if s.waitType != "" {
			g.Waiting++
			if g.Waits == nil {
				g.Waits = map[string]int{}
			}
			g.Waits[s.waitType+":"+s.waitEvent]++
		}
		if s.runningMS > g.OldestMS {
			g.OldestMS = s.runningMS
		}
	}
	for _, k := range order {
		act.Queries = append(act.Queries, *groups[k])
	}
	sort.SliceStable(act.Queries, func(i, j int) bool { return act.Queries[i].Active > act.Queries[j].Active })
	return act
}

// locks writes who waits for which lock, held by whom.
func (a *activitySampler) locks(ctx context.Context, now time.Time) {
	c := a.c
	qid := "0::int8"
	if c.server.VersionNum >= 140000 {
		qid = "coalesce(w.query_id, 0)"
	}
	// A row lock waiter waits on the holder's transaction id; the relation
	// is that of the tuple lock it (or the queue ahead of it) holds.
	rows, err := a.conn.Query(ctx, `SELECT `+marker+` w.pid, l.locktype, l.mode,
		coalesce(l.relation::regclass::text,
			(SELECT t.relation::regclass::text FROM pg_locks t WHERE t.pid = w.pid AND t.locktype = 'tuple' AND t.relation IS NOT NULL LIMIT 1),
			''),
		`+qid+`, left(coalesce(w.query, ''), `+strconv.Itoa(maxActivityText)+`),
		coalesce(extract(epoch FROM clock_timestamp() - w.query_start) * 1000, 0)::float8,
		pg_blocking_pids(w.pid),
		coalesce((SELECT left(b.query, `+strconv.Itoa(maxActivityText)+`) FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(w.pid))[1]), ''),
		coalesce((SELECT b.state FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(w.pid))[1]), '')
		FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid
		WHERE NOT l.granted AND w.datid = $1 AND w.pid <> ALL($2)
		LIMIT `+strconv.Itoa(maxLockWaits), c.dbOID, c.ownPIDs)
	if err != nil {
		if ctx.Err() == nil {
			c.p.fail(c.r, "pg_locks", err)
		}
		return
	}
	var waits []evidence.PGLockWait
	for rows.Next() {
		var lw evidence.PGLockWait
		var pid int32
		var blockers []int32
		if err := rows.Scan(&pid, &lw.LockType, &lw.Mode, &lw.Relation, &lw.QueryID, &lw.Query, &lw.WaitingMS,
			&blockers, &lw.BlockerQuery, &lw.BlockerState); err != nil {
			rows.Close()
			c.p.fail(c.r, "pg_locks", err)
			return
		}
		lw.PID = int(pid)
		for _, b := range blockers {
			lw.BlockedBy = append(lw.BlockedBy, int(b))
		}
		if lw.QueryID == 0 {
			lw.QueryID = c.texts.idOf(lw.Query)
		}
		if text, _, ok := c.texts.get(lw.QueryID); ok && lw.QueryID != 0 {
			lw.Query = truncate(text, maxActivityText)
		} else {
			lw.Query = normaliseRaw(lw.Query)
		}
		lw.BlockerQuery = normaliseRaw(lw.BlockerQuery)
		waits = append(waits, lw)
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() == nil {
			c.p.fail(c.r, "pg_locks", err)
		}
		return
	}
	if len(waits) == 0 {
		return
	}
	if err := c.emit(evidence.PG{T: now.UnixMilli(), Kind: evidence.PGKindLocks, LockWaits: waits}); err != nil {
		c.p.fail(c.r, "write locks", err)
		return
	}
	c.p.mu.Lock()
	c.p.st.lockWaits += len(waits)
	c.p.mu.Unlock()
}

// normaliseRaw approximates pg_stat_statements' normalisation for a text
// from pg_stat_activity, which carries the statement as sent: quoted
// literals and numbers become $n parameters (numbered after the highest
// already there) and whitespace is collapsed. Texts sent with parameters,
// as drivers like pgx do, come out unchanged but for whitespace. It keeps
// literal values (which may be personal data) out of the run directory.
func normaliseRaw(s string) string {
	next := 1
	for i := 0; i < len(s); i++ {
		if s[i] == '$' {
			j := i + 1
			n := 0
			for j < len(s) && s[j] >= '0' && s[j] <= '9' && n < 1e6 {
				n = n*10 + int(s[j]-'0')
				j++
			}
			if n >= next {
				next = n + 1
			}
		}
	}
	var b strings.Builder
	param := func() {
		b.WriteString("$" + strconv.Itoa(next))
		next++
	}
	for i := 0; i < len(s); {
		ch := s[i]
		switch {
		case ch == '\'' || (ch == 'E' || ch == 'e') && i+1 < len(s) && s[i+1] == '\'' && (i == 0 || !isLetter(s[i-1])):
			if ch != '\'' {
				i++
			}
			i++
			for i < len(s) {
				if s[i] == '\\' && ch != '\'' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
			param()
		case ch == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				j++
			}
			if j < len(s) {
				j++
			}
			b.WriteString(s[i:j])
			i = j
		case ch >= '0' && ch <= '9' && (i == 0 || !isLetter(s[i-1]) && s[i-1] != '$' && !(s[i-1] >= '0' && s[i-1] <= '9')):
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			param()
			i = j
		case isLetter(ch) || ch == '$':
			j := i + 1
			for j < len(s) && (isLetter(s[j]) || s[j] >= '0' && s[j] <= '9' || s[j] == '$') {
				j++
			}
			b.WriteString(s[i:j])
			i = j
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return collapse(b.String())
}
