package evidence

import "encoding/json"

// Kinds of records in postgres.jsonl (PG.Kind).
const (
	PGKindServer     = "server"     // once, at the start: version, limits, extensions
	PGKindStatements = "statements" // per window: pg_stat_statements deltas
	PGKindActivity   = "activity"   // per sample (~10/s): pg_stat_activity counts
	PGKindLocks      = "locks"      // per sample with lock waits: who waits on what
	PGKindTables     = "tables"     // per window: table and index usage deltas
	PGKindDatabase   = "database"   // per window: pg_stat_database deltas, connections
	PGKindPlan       = "plan"       // once per statement: EXPLAIN of a top statement
)

// PG is one line of postgres.jsonl: the time, the kind, and the one field
// that kind fills. Deltas cover the WindowMS milliseconds before T.
type PG struct {
	T        int64  `json:"t"` // Unix ms when the sample was taken
	Kind     string `json:"kind"`
	WindowMS int64  `json:"window_ms,omitempty"`

	Server     *PGServer     `json:"server,omitempty"`
	Statements []PGStatement `json:"statements,omitempty"`
	Activity   *PGActivity   `json:"activity,omitempty"`
	LockWaits  []PGLockWait  `json:"lock_waits,omitempty"`
	Tables     []PGTable     `json:"tables,omitempty"`
	Indexes    []PGIndex     `json:"indexes,omitempty"`
	Database   *PGDatabase   `json:"database,omitempty"`
	Plan       *PGPlan       `json:"plan,omitempty"`
}

// PGServer describes the server and what the probe could use.
type PGServer struct {
	Version             string `json:"version"`     // server_version, e.g. "15.18 (Debian ...)"
	VersionNum          int    `json:"version_num"` // server_version_num, e.g. 150018
	Database            string `json:"database"`
	MaxConnections      int    `json:"max_connections"`
	ReservedConnections int    `json:"reserved_connections"` // superuser_reserved_connections (+ reserved_connections, 16+)
	PGStatStatements    bool   `json:"pg_stat_statements"`   // installed in this database and loaded
	PGStatStatementsWhy string `json:"pg_stat_statements_why,omitempty"`
	HypoPG              bool   `json:"hypopg"` // installed in this database
	ComputeQueryID      string `json:"compute_query_id,omitempty"`
	TrackIOTiming       bool   `json:"track_io_timing"`
}

// PGStatement is one normalised statement's work in a window (deltas).
type PGStatement struct {
	QueryID        int64   `json:"queryid"`
	Query          string  `json:"query"` // normalised as pg_stat_statements writes it ($n for constants)
	Calls          int64   `json:"calls"`
	TotalExecMS    float64 `json:"total_exec_ms"`
	MeanExecMS     float64 `json:"mean_exec_ms"`
	Rows           int64   `json:"rows"`
	SharedBlksHit  int64   `json:"shared_blks_hit"`
	SharedBlksRead int64   `json:"shared_blks_read"`
	TempBlksWrite  int64   `json:"temp_blks_written,omitempty"`
}

// PGActivity counts the target database's client sessions at one instant
// (the probe's own sessions excluded).
type PGActivity struct {
	Sessions int            `json:"sessions"`
	States   map[string]int `json:"states,omitempty"`     // state -> sessions ("active", "idle", "idle in transaction"...)
	WaitType map[string]int `json:"wait_types,omitempty"` // wait_event_type -> active sessions ("Lock", "LWLock", "IO", "Client"...)
	Waits    map[string]int `json:"waits,omitempty"`      // "type:event" -> active sessions ("Lock:transactionid")
	// Queries are the statements running (state active) or left open in a
	// transaction, grouped by query id when known.
	Queries []PGActivityQuery `json:"queries,omitempty"`
}

// PGActivityQuery is one statement's sessions in an activity sample.
type PGActivityQuery struct {
	QueryID  int64          `json:"queryid,omitempty"` // joins PGStatement.QueryID; 0 when unknown
	Query    string         `json:"query,omitempty"`   // the text (truncated) when QueryID is 0
	Active   int            `json:"active"`
	Waiting  int            `json:"waiting"`              // active sessions with a wait event
	Waits    map[string]int `json:"waits,omitempty"`      // "type:event" -> sessions
	OldestMS float64        `json:"oldest_ms,omitempty"`  // the longest-running one so far
	IdleInTx int            `json:"idle_in_tx,omitempty"` // sessions idle in a transaction after it
}

// PGLockWait is a session waiting for a lock that another holds.
type PGLockWait struct {
	PID       int     `json:"pid"`
	LockType  string  `json:"locktype"` // relation, transactionid, tuple...
	Mode      string  `json:"mode"`     // the mode it waits for
	Relation  string  `json:"relation,omitempty"`
	QueryID   int64   `json:"queryid,omitempty"`
	Query     string  `json:"query,omitempty"` // what the waiter runs (truncated)
	WaitingMS float64 `json:"waiting_ms"`      // since its statement started
	BlockedBy []int   `json:"blocked_by,omitempty"`
	// BlockerQuery is the first blocker's current or last statement.
	BlockerQuery string `json:"blocker_query,omitempty"`
	BlockerState string `json:"blocker_state,omitempty"`
}

// PGTable is one table's use in a window: counters are deltas, LiveTuples
// and sizes are current values.
type PGTable struct {
	Schema      string `json:"schema"`
	Name        string `json:"name"`
	SeqScan     int64  `json:"seq_scan"`
	SeqTupRead  int64  `json:"seq_tup_read"`
	IdxScan     int64  `json:"idx_scan"`
	IdxTupFetch int64  `json:"idx_tup_fetch"`
	TupIns      int64  `json:"n_tup_ins"`
	TupUpd      int64  `json:"n_tup_upd"`
	TupDel      int64  `json:"n_tup_del"`
	LiveTuples  int64  `json:"n_live_tup"`
	DeadTuples  int64  `json:"n_dead_tup"`
	SizeBytes   int64  `json:"size_bytes,omitempty"`  // the table (heap, toast), from pg_table_size
	TotalBytes  int64  `json:"total_bytes,omitempty"` // with indexes
}

// PGIndex is one index's use in a window (deltas).
type PGIndex struct {
	Schema      string `json:"schema"`
	Table       string `json:"table"`
	Name        string `json:"name"`
	IdxScan     int64  `json:"idx_scan"`
	IdxTupRead  int64  `json:"idx_tup_read"`
	IdxTupFetch int64  `json:"idx_tup_fetch"`
	SizeBytes   int64  `json:"size_bytes,omitempty"`
}

// PGDatabase is the target database in a window: counters are deltas,
// connections are current values.
type PGDatabase struct {
	Name                string `json:"name"`
	MaxConnections      int    `json:"max_connections"`
	ReservedConnections int    `json:"reserved_connections"`
	Connections         int    `json:"connections"`    // client backends, whole server
	DBConnections       int    `json:"db_connections"` // of those, in this database
	Sessions            int64  `json:"sessions"`       // sessions opened (PG 14+), delta
	XactCommit          int64  `json:"xact_commit"`
	XactRollback        int64  `json:"xact_rollback"`
	BlksRead            int64  `json:"blks_read"`
	BlksHit             int64  `json:"blks_hit"`
	TupReturned         int64  `json:"tup_returned"`
	TupFetched          int64  `json:"tup_fetched"`
	Deadlocks           int64  `json:"deadlocks"`
	TempFiles           int64  `json:"temp_files"`
	TempBytes           int64  `json:"temp_bytes"`
}

// PGPlan is the plan of one top statement, and what a hypothetical index
// would change.
type PGPlan struct {
	QueryID int64  `json:"queryid"`
	Query   string `json:"query"`
	Method  string `json:"method"` // "generic_plan" (16+), "prepared_generic" (15), "analyze"
	// Plan is the EXPLAIN (FORMAT JSON, VERBOSE) output as the server wrote
	// it (internal/pgplan parses it).
	Plan  json.RawMessage `json:"plan,omitempty"`
	Error string          `json:"error,omitempty"`

	TotalCost float64        `json:"total_cost,omitempty"`
	SeqScans  []PGSeqScan    `json:"seq_scans,omitempty"`
	Hypo      []PGHypoResult `json:"hypo,omitempty"`
}

// PGSeqScan is a sequential scan in a plan, with the columns an index
// would need (equality, then range, then sort keys).
type PGSeqScan struct {
	Schema    string   `json:"schema,omitempty"`
	Relation  string   `json:"relation"`
	Filter    string   `json:"filter,omitempty"`
	PlanRows  float64  `json:"plan_rows"`
	TotalCost float64  `json:"total_cost"`
	Columns   []string `json:"columns,omitempty"`
	// RowsRemoved is measured with ANALYZE only.
	RowsRemoved *float64 `json:"rows_removed,omitempty"`
}

// PGHypoResult is the plan's cost with a hypothetical index (hypopg).
type PGHypoResult struct {
	Index      string  `json:"index"` // the CREATE INDEX statement tried
	CostBefore float64 `json:"cost_before"`
	CostAfter  float64 `json:"cost_after"`
	Used       bool    `json:"used"` // the planner chose the hypothetical index
	Error      string  `json:"error,omitempty"`
}
