package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/secret"
)

func TestIsSelect(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"SELECT * FROM t WHERE id = $1", true},
		{"  select 1", true},
		{"/* hi */ -- comment\n SELECT 1", true},
		{"(SELECT 1) UNION (SELECT 2)", true},
		{"WITH x AS (SELECT 1) SELECT * FROM x", true},
		{"SELECT 'update' FROM t", true},
		{`SELECT "delete" FROM t`, true},
		{"SELECT $tag$ insert $tag$", true},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", false},
		{"WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT 1", false},
		{"SELECT * INTO t2 FROM t", false},
		{"SELECT * FROM t FOR UPDATE", false},
		{"UPDATE t SET a = 1", false},
		{"INSERT INTO t VALUES (1)", false},
		{"DELETE FROM t", false},
		{"VALUES (1)", false},
		{"EXPLAIN SELECT 1", false},
		{"CALL p()", false},
		{"", false},
		{"/* unterminated", false},
		{"SELECT 'unterminated", true},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			if got := IsSelect(tc.sql); got != tc.want {
				t.Errorf("IsSelect(%q) = %v, want %v", tc.sql, got, tc.want)
			}
		})
	}
}

func TestNormaliseRaw(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = $1"},
		{"UPDATE accounts SET balance = balance - 1 WHERE id = 1", "UPDATE accounts SET balance = balance - $1 WHERE id = $2"},
		{"UPDATE a SET b = b + 1 WHERE id = $1", "UPDATE a SET b = b + $2 WHERE id = $1"},
		{"SELECT * FROM t2 WHERE name = 'o''brien' AND x > 3.5", "SELECT * FROM t2 WHERE name = $1 AND x > $2"},
		{"SELECT E'a\\'b', \"Col1\" FROM t", `SELECT $1, "Col1" FROM t`},
		{"select\n  1,\t2", "select $1, $2"},
		{"SELECT 'unterminated", "SELECT $1"},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := normaliseRaw(tc.in); got != tc.want {
				t.Errorf("normaliseRaw(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSummarise(t *testing.T) {
	rows := []activityRow{
		{state: "active", queryID: 7, runningMS: 12},
		{state: "active", waitType: "Lock", waitEvent: "transactionid", queryID: 7, runningMS: 40},
		{state: "active", waitType: "LWLock", waitEvent: "WALWrite", query: "SELECT 1"},
		{state: "idle", query: "SELECT 2"},
		{state: "idle in transaction", queryID: 9},
		{state: "active", query: "SELECT  name FROM t WHERE id = 5"},
	}
	idOf := func(text string) int64 {
		if text == "SELECT 1" {
			return 3
		}
		return 0
	}
	got := summarise(rows, idOf)
	want := &evidence.PGActivity{
		Sessions: 6,
		States:   map[string]int{"active": 4, "idle": 1, "idle in transaction": 1},
		WaitType: map[string]int{"Lock": 1, "LWLock": 1},
		Waits:    map[string]int{"Lock:transactionid": 1, "LWLock:WALWrite": 1},
		Queries: []evidence.PGActivityQuery{
			{QueryID: 7, Active: 2, Waiting: 1, Waits: map[string]int{"Lock:transactionid": 1}, OldestMS: 40},
			{QueryID: 3, Active: 1, Waiting: 1, Waits: map[string]int{"LWLock:WALWrite": 1}},
			{Query: "SELECT name FROM t WHERE id = $1", Active: 1},
			{QueryID: 9, IdleInTx: 1},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summarise (-want +got):\n%s", diff)
	}
}

func TestSummariseBounded(t *testing.T) {
	var rows []activityRow
	for i := range 3 * maxActivityQueries {
		rows = append(rows, activityRow{state: "active", query: fmt.Sprintf("SELECT * FROM t%d", i)})
	}
	if got := summarise(rows, nil); len(got.Queries) != maxActivityQueries || got.Sessions != len(rows) {
		t.Errorf("%d groups for %d sessions, want at most %d", len(got.Queries), got.Sessions, maxActivityQueries)
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{{"1.7", "1.8", true}, {"1.10", "1.8", false}, {"1.8", "1.8", false}, {"2", "1.9", false}, {"1.8", "1.8.1", true}} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	const pw = "hunter2-secret"
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"ok", Config{DSN: "postgres://u:" + pw + "@127.0.0.1:5432/db"}, ""},
		{"key value", Config{DSN: "host=127.0.0.1 user=u password=" + pw + " dbname=db"}, ""},
		{"empty", Config{}, "DSN"},
		{"bad port", Config{DSN: "postgres://u:" + pw + "@127.0.0.1:notaport/db"}, "DSN"},
		{"bad option", Config{DSN: "postgres://u:" + pw + "@127.0.0.1/db?sslmode=maybe"}, "DSN"},
		{"interval", Config{DSN: "postgres://h/db", Interval: time.Millisecond}, "Interval"},
		{"activity", Config{DSN: "postgres://h/db", ActivityInterval: time.Microsecond}, "ActivityInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	dsn := secret.String("postgres://app:p@ss w0rd@h/db")
	r := newRedactor(dsn, "p@ss w0rd")
	inner := errors.New(`server said: password "p@ss w0rd" / p%40ss+w0rd rejected`)
	err := r.Error(fmt.Errorf("connect: %w", inner))
	if strings.Contains(err.Error(), "w0rd") {
		t.Errorf("redacted error still has the password: %v", err)
	}
	if !errors.Is(err, inner) {
		t.Error("redaction broke errors.Is")
	}
	if got := r.String("nothing here"); got != "nothing here" {
		t.Errorf("innocent text changed: %q", got)
	}
	// A password too short to scrub safely is still kept out of DSN output.
	if s := secret.DSN("postgres://app:ab@h/db"); strings.Contains(s, ":ab@") {
		t.Errorf("DSN shows a short password: %s", s)
	}
}

func FuzzNormaliseRaw(f *testing.F) {
	for _, s := range []string{"SELECT 1", "UPDATE t SET a = 'x' WHERE id = $3", "E'\\'", "$99999999999", "\"unterminated", "SELECT 1e5, x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := normaliseRaw(s)
		if strings.Contains(out, "'") && !strings.Contains(s, "\"") {
			t.Fatalf("a quoted literal survived: %q -> %q", s, out)
		}
	})
}

func FuzzIsSelect(f *testing.F) {
	for _, s := range []string{"SELECT 1", "WITH d AS (DELETE FROM t) SELECT 1", "/* /* */ */ SELECT", "$a$ $a", "'", "--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if IsSelect(s) {
			// A statement judged read-only never starts with a writing keyword.
			w := sqlWords(s)
			if len(w) == 0 || (w[0] != "select" && w[0] != "with") {
				t.Fatalf("IsSelect(%q) with words %v", s, w)
			}
		}
	})
}
