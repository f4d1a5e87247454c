package sqlnorm

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// pgCases pairs statements with the text PostgreSQL 15.x's
// pg_stat_statements stored for them (queried from the view on a real
// server with pg_stat_statements.track = all), whitespace collapsed and
// comments dropped.
var pgCases = []struct{ in, want string }{
	{"SELECT * FROM orders WHERE customer_id = 42", "SELECT * FROM orders WHERE customer_id = $1"},
	{"SELECT * FROM orders WHERE id IN (1, 2, 3)", "SELECT * FROM orders WHERE id IN ($1, $2, $3)"},
	{"select id, note from orders where note = 'it''s' and total > 10.5", "select id, note from orders where note = $1 and total > $2"},
	{`SELECT * FROM orders WHERE note = E'a\'b' AND id = -7`, "SELECT * FROM orders WHERE note = $1 AND id = $2"},
	{"SELECT a.id - 1 FROM orders a WHERE a.id = - 3", "SELECT a.id - $1 FROM orders a WHERE a.id = $2"},
	{"SELECT $$dollar$$, $tag$x$y$tag$ FROM orders", "SELECT $1, $2 FROM orders"},
	{"SELECT '2020-01-01'::date, 12::bigint, '1'::varchar(10)", "SELECT $1::date, $2::bigint, $3::varchar(10)"},
	{"SELECT * FROM orders WHERE created > now() - interval '1 day'", "SELECT * FROM orders WHERE created > now() - interval $1"},
	{"SELECT * FROM orders WHERE active = true AND note IS NULL", "SELECT * FROM orders WHERE active = $1 AND note IS NULL"},
	{"SELECT id FROM orders ORDER BY 1 DESC LIMIT 10 OFFSET 20", "SELECT id FROM orders ORDER BY 1 DESC LIMIT $1 OFFSET $2"},
	{"SELECT customer_id, count(*) FROM orders GROUP BY 1 HAVING count(*) > 5", "SELECT customer_id, count(*) FROM orders GROUP BY 1 HAVING count(*) > $1"},
	{"INSERT INTO orders (id, note) VALUES (1, 'a'), (2, NULL)", "INSERT INTO orders (id, note) VALUES ($1, $2), ($3, $4)"},
	{"UPDATE orders SET note = 'x', total = 1e3 WHERE id = 9", "UPDATE orders SET note = $1, total = $2 WHERE id = $3"},
	{"SELECT ARRAY[1,2], '{1,2}'::int[] FROM orders", "SELECT ARRAY[$1,$2], $3::int[] FROM orders"},
	{"SELECT /* comment */ 1 -- trailing", "SELECT $1"},
	{"SELECT 1;", "SELECT $1"},
	{"SELECT CAST('12.5' AS numeric(10,2)), B'0101', X'1F'", "SELECT CAST($1 AS numeric(10,2)), $2, $3"},
	{"SELECT .5, 5., 1.5e-3", "SELECT $1, $2, $3"},
	{`SELECT "Id" FROM (SELECT id AS "Id" FROM orders) s WHERE "Id" > 100`, `SELECT "Id" FROM (SELECT id AS "Id" FROM orders) s WHERE "Id" > $1`},
	{"SET statement_timeout = 5000", "SET statement_timeout = 5000"},
	{"SELECT date '2020-01-01', false", "SELECT date $1, $2"},
	{"SELECT * FROM orders WHERE tags @> ARRAY[3] AND note LIKE 'a%' ESCAPE '!'", "SELECT * FROM orders WHERE tags @> ARRAY[$1] AND note LIKE $2 ESCAPE $3"},
	{"WITH x AS (SELECT 1 AS a) SELECT a + 2 FROM x", "WITH x AS (SELECT $1 AS a) SELECT a + $2 FROM x"},
	{"SELECT substring(note from 2 for 3) FROM orders", "SELECT substring(note from $1 for $2) FROM orders"},
	{"SELECT extract(year from created) FROM orders", "SELECT extract($1 from created) FROM orders"},
	{`SELECT U&'d\0061t\+000061' FROM orders`, "SELECT $1 FROM orders"},
	{"SELECT * FROM orders WHERE id = +5", "SELECT * FROM orders WHERE id = +$1"},
	{"SELECT -1.5::numeric, 2 - -3", "SELECT -$1::numeric, $2 - $3"},
	{"SELECT -1, - 2, 5 - 1, 5-1, 5 -1", "SELECT $1, $2, $3 - $4, $5-$6, $7 -$8"},
	{"SELECT id FROM orders WHERE id BETWEEN 1 AND 2 AND id NOT IN (4, 5)", "SELECT id FROM orders WHERE id BETWEEN $1 AND $2 AND id NOT IN ($3, $4)"},
	{"SELECT COALESCE(total, 0), CASE WHEN id = 1 THEN 'a' ELSE 'b' END FROM orders", "SELECT COALESCE(total, $1), CASE WHEN id = $2 THEN $3 ELSE $4 END FROM orders"},
	{"INSERT INTO orders (id, note) VALUES (7, 'z') ON CONFLICT DO NOTHING", "INSERT INTO orders (id, note) VALUES ($1, $2) ON CONFLICT DO NOTHING"},
	{"SELECT trim(both 'x' from note), position('a' in note), overlay(note placing 'b' from 2 for 1) FROM orders", "SELECT trim(both $1 from note), position($2 in note), overlay(note placing $3 from $4 for $5) FROM orders"},
	{"SELECT current_date, localtimestamp(3), 1::numeric(5), now()", "SELECT current_date, localtimestamp(3), $1::numeric(5), now()"},
	{"SELECT id FROM orders WHERE id = ANY('{1,2}') FOR UPDATE SKIP LOCKED", "SELECT id FROM orders WHERE id = ANY($1) FOR UPDATE SKIP LOCKED"},
	{"SELECT interval '1' day, timestamp with time zone '2020-01-01 00:00+00'", "SELECT interval $1 day, timestamp with time zone $2"},
	{"SELECT id FROM orders WHERE note ~ '^a' AND id % 2 = 0 AND id::text = '1'", "SELECT id FROM orders WHERE note ~ $1 AND id % $2 = $3 AND id::text = $4"},
	{"SELECT 1 FROM orders WHERE id = 1 UNION ALL SELECT 2 FROM orders ORDER BY 1", "SELECT $1 FROM orders WHERE id = $2 UNION ALL SELECT $3 FROM orders ORDER BY 1"},
	{"SELECT ROW(1, 'a'), (SELECT 2)", "SELECT ROW($1, $2), (SELECT $3)"},
	{"SELECT id FROM orders WHERE (id, customer_id) IN ((1, 2), (3, 4))", "SELECT id FROM orders WHERE (id, customer_id) IN (($1, $2), ($3, $4))"},
	{"SELECT id FROM orders o WHERE o.created AT TIME ZONE 'UTC' > '2020-01-01'", "SELECT id FROM orders o WHERE o.created AT TIME ZONE $1 > $2"},
	{`SELECT 'a' || note, note COLLATE "C" FROM orders`, `SELECT $1 || note, note COLLATE "C" FROM orders`},
	{"SELECT generate_series(1, 10) LIMIT 3", "SELECT generate_series($1, $2) LIMIT $3"},
	{"SELECT count(*) FILTER (WHERE id > 3) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM orders", "SELECT count(*) FILTER (WHERE id > $1) OVER (ORDER BY id ROWS BETWEEN $2 PRECEDING AND CURRENT ROW) FROM orders"},
	{"prepare p(int) as select $1::int + 3", "prepare p(int) as select $1::int + $2"},
	{"SELECT NULL::int, NULL, true IS NOT TRUE, id IS DISTINCT FROM NULL FROM orders", "SELECT $1::int, $2, $3 IS NOT TRUE, id IS DISTINCT FROM NULL FROM orders"},
	{"EXPLAIN SELECT * FROM orders WHERE id = 77", "EXPLAIN SELECT * FROM orders WHERE id = $1"},
	{"SELECT localtime(2), current_timestamp(1), 7::character varying(3), 8::double precision", "SELECT localtime(2), current_timestamp(1), $1::character varying(3), $2::double precision"},
	{`SELECT '{"a":1}'::jsonb -> 'a', '{"a":1}'::jsonb ->> 'a' FROM orders`, "SELECT $1::jsonb -> $2, $3::jsonb ->> $4 FROM orders"},
	{"SELECT row_number() OVER (ORDER BY 1) FROM orders", "SELECT row_number() OVER (ORDER BY $1) FROM orders"},
	{"SELECT 'a'\n'b'", "SELECT $1"},
	{"SELECT id FROM orders ORDER BY 1 LIMIT 1", "SELECT id FROM orders ORDER BY 1 LIMIT $1"},
}

func TestNormalizeMatchesPgStatStatements(t *testing.T) {
	for _, c := range pgCases {
		t.Run(c.in, func(t *testing.T) {
			if got := Normalize(c.in); got != c.want {
				t.Errorf("Normalize(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
			// The probe normalises pg_stat_statements' own text too: it
			// must come out unchanged, or the two sides would differ.
			if got := Normalize(c.want); got != c.want {
				t.Errorf("Normalize(pg_stat_statements text %q) = %q", c.want, got)
			}
		})
	}
}

func TestNormalizeFormatting(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"whitespace collapsed", "SELECT\n\t*   FROM  orders\r\n WHERE id=1  ", "SELECT * FROM orders WHERE id=$1"},
		{"comment between tokens", "SELECT a/*x*/FROM t", "SELECT a FROM t"},
		{"nested comment", "SELECT /* a /* b */ c */ 1", "SELECT $1"},
		{"leading comment", "-- app=web\n/* route=/orders */ SELECT 1", "SELECT $1"},
		{"placeholders kept", "SELECT * FROM t WHERE a = $1 AND b = $2", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"numbered after placeholders", "SELECT * FROM t WHERE a = $2 AND b = 5 AND c = 'x'", "SELECT * FROM t WHERE a = $2 AND b = $3 AND c = $4"},
		{"string whitespace not collapsed in utility", "SET application_name = 'a  b'", "SET application_name = 'a  b'"},
		{"several statements numbered each", "SELECT 1; SELECT 2;;", "SELECT $1; SELECT $1"},
		{"operator split before minus", "SELECT * FROM t WHERE a=-1", "SELECT * FROM t WHERE a=$1"},
		{"operator with special char keeps minus", "SELECT a @- 1 FROM t", "SELECT a @- $1 FROM t"},
		{"identifier with digits and dollar", "SELECT t1.a$b FROM t1", "SELECT t1.a$b FROM t1"},
		{"quoted identifier with quotes", `SELECT "a""b" FROM t WHERE x = 1`, `SELECT "a""b" FROM t WHERE x = $1`},
		{"group by list", "SELECT a, b, count(*) FROM t GROUP BY 1, 2 ORDER BY 3 DESC, 1", "SELECT a, b, count(*) FROM t GROUP BY 1, 2 ORDER BY 3 DESC, 1"},
		{"order by expression", "SELECT a FROM t ORDER BY a + 1", "SELECT a FROM t ORDER BY a + $1"},
		{"subquery order by closes", "SELECT * FROM (SELECT a FROM t ORDER BY 1) s, u WHERE u.x = 2", "SELECT * FROM (SELECT a FROM t ORDER BY 1) s, u WHERE u.x = $1"},
		{"typmod not kept after IN", "SELECT * FROM t WHERE a::int IN (1, 2)", "SELECT * FROM t WHERE a::int IN ($1, $2)"},
		{"schema qualified type", "SELECT 'x'::pg_catalog.varchar(5)", "SELECT $1::pg_catalog.varchar(5)"},
		{"unterminated string", "SELECT 'abc", "SELECT $1"},
		{"unterminated comment", "SELECT 1 /* abc", "SELECT $1"},
		{"unterminated dollar", "SELECT $x$abc", "SELECT $1"},
		{"password literal replaced in utility", "ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD $1"},
		{"empty", "", ""},
		{"only comment", "-- nothing", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Normalize(c.in); got != c.want {
				t.Errorf("Normalize(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

func TestParseConsts(t *testing.T) {
	cases := []struct {
		in     string
		consts []string
		params int
	}{
		{"SELECT * FROM t WHERE a = 1 AND b = 'x' AND c = - 2", []string{"1", "'x'", "- 2"}, 0},
		{"SELECT * FROM t WHERE a = $3", nil, 3},
		{"SELECT * FROM t ORDER BY 1", nil, 0},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			st := Parse(c.in)
			if !slices.Equal(st.Consts, c.consts) || st.Params != c.params {
				t.Errorf("Parse(%q) = consts %q params %d, want %q %d", c.in, st.Consts, st.Params, c.consts, c.params)
			}
			if st.Query != Normalize(c.in) {
				t.Errorf("Parse and Normalize disagree: %q vs %q", st.Query, Normalize(c.in))
			}
		})
	}
}

func TestMayHoldSecret(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"ALTER USER bob WITH PASSWORD 'x'", true},
		{"create role r login password 'x'", true},
		{"SELECT password_hash FROM users WHERE id = 1", false},
		{"SELECT 'password' FROM t", false},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got := MayHoldSecret(c.in); got != c.want {
				t.Errorf("MayHoldSecret(%q) = %v", c.in, got)
			}
		})
	}
}

func FuzzNormalize(f *testing.F) {
	for _, c := range pgCases {
		f.Add(c.in)
	}
	f.Add("SELECT $$a")
	f.Add("SELECT E'\\")
	f.Add("SELECT U&\"x")
	f.Add("SELECT - -1 ORDER BY 1")
	f.Add("select 1::numeric(")
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<16 {
			return
		}
		out := Normalize(in)
		if again := Normalize(out); again != out {
			t.Fatalf("not idempotent:\n in  %q\n out %q\n out2 %q", in, out, again)
		}
		if strings.Contains(out, "  ") && utf8.ValidString(in) && !strings.ContainsAny(in, "'\"$") {
			t.Fatalf("whitespace not collapsed: %q -> %q", in, out)
		}
		st := Parse(in)
		if st.Query != out {
			t.Fatalf("Parse and Normalize disagree: %q vs %q", st.Query, out)
		}
	})
}

var benchStatements = []struct{ name, sql string }{
	{"typical", "SELECT o.id, o.total, o.created FROM orders o WHERE o.customer_id = 4242 AND o.status = 'shipped' ORDER BY o.created DESC LIMIT 20"},
	{"insert", "INSERT INTO order_items (order_id, sku, qty, price) VALUES (1001, 'AB-12', 3, 19.99) RETURNING id"},
	{"placeholders", "SELECT id, name FROM customers WHERE id = $1"},
}

func BenchmarkNormalize(b *testing.B) {
	for _, s := range benchStatements {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Normalize(s.sql)
			}
		})
	}
}
