package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chokepoint/chokepoint/internal/secret"
)

// Session limits of every connection the probe opens. The probe must never
// hold the target up: a statement of its own that runs longer than
// statementTimeout, or waits for a lock longer than lockTimeout, is
// cancelled by the server (the values are the project's brief for this
// probe: 2 s and 500 ms).
const (
	statementTimeout = 2 * time.Second
	lockTimeout      = 500 * time.Millisecond
	connectTimeout   = 5 * time.Second
	// ApplicationName is how the probe's sessions show in pg_stat_activity.
	ApplicationName = "chokepoint"
)

// marker is put after the first keyword of every statement the probe
// sends, so that its own statements can be told apart in
// pg_stat_statements (which keeps comments in the normalised text).
const marker = "/*chokepoint*/"

// sessionParams are set on every probe session as defaults, so they hold
// for every transaction, explicit or implicit.
func sessionParams() map[string]string {
	return map[string]string{
		"default_transaction_read_only":       "on",
		"statement_timeout":                   strconv.FormatInt(statementTimeout.Milliseconds(), 10),
		"lock_timeout":                        strconv.FormatInt(lockTimeout.Milliseconds(), 10),
		"idle_in_transaction_session_timeout": strconv.FormatInt((10 * statementTimeout).Milliseconds(), 10),
		"application_name":                    ApplicationName,
	}
}

// redactor scrubs a DSN's password from text (errors from drivers and the
// server should not contain it; this makes sure).
type redactor struct {
	secrets []string
}

func newRedactor(dsn secret.String, password string) redactor {
	var r redactor
	for _, s := range []string{password, url.QueryEscape(password), url.PathEscape(password), dsn.Reveal()} {
		if len(s) >= 3 { // shorter strings would redact innocent text; DSN() covers them
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

func (r redactor) String(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, secret.Redacted)
	}
	return s
}

// Error returns err with any secret scrubbed from its message; errors.Is
// and errors.As still see the original.
func (r redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := r.String(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// parseDSN parses the DSN and applies the session limits. Errors never
// contain the DSN's password.
func parseDSN(dsn secret.String) (*pgx.ConnConfig, redactor, error) {
	cfg, err := pgx.ParseConfig(dsn.Reveal())
	if err != nil {
		r := newRedactor(dsn, "")
		return nil, r, fmt.Errorf("postgres dsn %s: %w", secret.DSN(dsn.Reveal()), r.Error(errors.New(firstLine(err.Error()))))
	}
	r := newRedactor(dsn, cfg.Password)
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range sessionParams() {
		cfg.RuntimeParams[k] = v
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectTimeout {
		cfg.ConnectTimeout = connectTimeout
	}
	// Statements of the probe are few and fixed: cache their plans.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	return cfg, r, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// connect opens one read-only, time-limited session. Every connection the
// probe uses comes from here.
func connect(ctx context.Context, dsn secret.String) (*pgx.Conn, error) {
	cfg, r, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", secret.DSN(dsn.Reveal()), r.Error(err))
	}
	return conn, nil
}

// exec1 runs one statement with the extended protocol, which refuses a
// string holding more than one statement, and returns its result.
func exec1(ctx context.Context, conn *pgx.Conn, sql string, params ...[]byte) (*pgconn.Result, error) {
	res := conn.PgConn().ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	return res, nil
}
