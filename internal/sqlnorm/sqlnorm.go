// Package sqlnorm normalises SQL text to the form PostgreSQL 15's
// pg_stat_statements writes (constants replaced by $1, $2, ... numbered
// left to right), with comments dropped and whitespace collapsed, so that
// one statement seen in a span, a log line and pg_stat_statements has one
// string.
//
// It is a lexer, not a parser: it replaces the tokens pg_stat_statements
// replaces (string, bit-string and numeric literals, TRUE, FALSE, NULL, a
// negative number folded with its minus sign) and keeps the ones it keeps
// (ORDER BY / GROUP BY positions, type modifiers such as varchar(10), IS
// NULL, every literal of a utility statement such as SET). The rules were
// checked against a real PostgreSQL 15 (see the table in sqlnorm_test.go).
package sqlnorm

import (
	"strconv"
	"strings"
)

// maxParamNumber caps the $n read from input so that hostile text cannot
// overflow the numbering; PostgreSQL itself allows at most 65535
// parameters (PQ_QUERY_PARAM_MAX_LIMIT).
const maxParamNumber = 65535

// Statement is the result of Parse.
type Statement struct {
	// Query is the normalised text.
	Query string
	// Consts holds the source text of each replaced constant in the order
	// of its $n (a negative number includes its minus sign). Two calls of
	// the same Query with equal Consts passed the same values.
	Consts []string
	// Params is the highest $n placeholder the input already used (0 when
	// none): a statement with placeholders carries its values elsewhere.
	Params int
}

// Normalize returns sql normalised as pg_stat_statements writes it, with
// comments dropped, runs of whitespace collapsed to one space, and no
// trailing semicolon. Statements that already use $n placeholders keep
// them, and new placeholders are numbered after the highest one, as
// pg_stat_statements does. Several statements separated by semicolons are
// normalised one by one and joined with "; ". Normalize is idempotent.
func Normalize(sql string) string {
	return normalize(sql, false).Query
}

// Parse is Normalize that also returns the replaced constants.
func Parse(sql string) Statement {
	return normalize(sql, true)
}

// MayHoldSecret reports whether sql has a PASSWORD clause (CREATE/ALTER
// ROLE ... PASSWORD '...'), whose literal must not be written anywhere.
// Normalize replaces string literals in such statements even where
// pg_stat_statements would keep them.
func MayHoldSecret(sql string) bool {
	var buf [64]token
	for _, t := range lex(sql, buf[:0]) {
		if t.kind == tWord && keyword(sql[t.start:t.end]) == kwPassword {
			return true
		}
	}
	return false
}

func normalize(sql string, wantConsts bool) Statement {
	var buf [128]token
	toks := lex(sql, buf[:0])
	password := false
	for _, t := range toks {
		if t.kind == tWord && keyword(sql[t.start:t.end]) == kwPassword {
			password = true
			break
		}
	}
	n := &normalizer{sql: sql, password: password, wantConsts: wantConsts}
	n.b.Grow(len(sql) + 8)
	for start := 0; start < len(toks); {
		end := start
		for end < len(toks) && !(toks[end].kind == tPunct && sql[toks[end].start] == ';') {
			end++
		}
		if end > start {
			if n.b.Len() > 0 {
				n.b.WriteString("; ")
			}
			n.statement(toks[start:end])
		}
		start = end + 1
	}
	return Statement{Query: n.b.String(), Consts: n.consts, Params: n.params}
}

type normalizer struct {
	sql        string
	password   bool
	wantConsts bool

	b      strings.Builder
	consts []string
	params int
}

// statement writes one statement (no semicolons) to n.b.
func (n *normalizer) statement(toks []token) {
	sql := n.sql
	maxParam := 0
	for _, t := range toks {
		if t.kind == tParam {
			v, err := strconv.Atoi(sql[t.start+1 : t.end])
			if err != nil || v > maxParamNumber {
				v = maxParamNumber
			}
			maxParam = max(maxParam, v)
		}
	}
	n.params = max(n.params, maxParam)
	dml := isDML(sql, toks)
	next := maxParam + 1

	var (
		depth     = 0
		keepDepth = -1 // inside a type modifier's parentheses when >= 0
		typeState = 0  // 1: a type name is expected; 2: a type name was just read
		castMask  uint64
		winMask   uint64
		byDepth   = -1 // depth of the current ORDER BY / GROUP BY list
		itemStart = false
		wrote     = false
		// placeholder: the last token written was a $n this function wrote.
		placeholder = false
	)
	bit := func(d int) uint64 {
		if d < 0 || d > 63 {
			return 0
		}
		return 1 << uint(d)
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if wrote && (t.space || placeholder && isDigit(sql[t.start])) {
			// A space also keeps "$1" and a following digit apart.
			n.b.WriteByte(' ')
		}
		wrote = true
		placeholder = false
		if keepDepth < 0 && (dml || n.password && t.kind == tString) {
			if j, ok := n.constantAt(toks, i, dml, byDepth >= 0 && itemStart); ok {
				if out := n.b.String(); !t.space && len(out) > 0 && (isIdentCont(out[len(out)-1])) {
					n.b.WriteByte(' ') // "a$1" would read back as one identifier
				}
				placeholder = true
				n.b.WriteByte('$')
				n.b.WriteString(strconv.Itoa(next))
				next++
				if n.wantConsts {
					n.consts = append(n.consts, sql[t.start:toks[j].end])
				}
				i = j
				itemStart, typeState = false, 0
				continue
			}
		}
		text := sql[t.start:t.end]
		n.b.WriteString(text)

		itemStart = false
		switch t.kind {
		case tPunct:
			switch text {
			case "(":
				if keepDepth < 0 && typeState == 2 {
					keepDepth = depth
				}
				depth++
				if i > 0 && toks[i-1].kind == tWord {
					switch keyword(sql[toks[i-1].start:toks[i-1].end]) {
					case kwCast:
						castMask |= bit(depth)
					case kwOver:
						winMask |= bit(depth)
					}
				}
			case ")":
				castMask &^= bit(depth)
				winMask &^= bit(depth)
				depth--
				if keepDepth >= 0 && depth <= keepDepth {
					keepDepth = -1
				}
				if byDepth > depth {
					byDepth = -1
				}
			case ",":
				if byDepth == depth {
					itemStart = true
				}
			case "::":
				typeState = 1
				continue
			case ".":
				if typeState == 2 {
					typeState = 1
					continue
				}
			}
			typeState = 0
		case tWord:
			kw := keyword(text)
			prev := kwNone
			if i > 0 && toks[i-1].kind == tWord {
				prev = keyword(sql[toks[i-1].start:toks[i-1].end])
			}
			switch {
			case typeState == 1:
				typeState = 2
			case typeState == 2 && (kw == kwVarying || kw == kwPrecision) &&
				(prev == kwCharacter || prev == kwChar || prev == kwDouble || prev == kwBit || prev == kwNational):
				// character varying(10), double precision
			default:
				typeState = 0
			}
			switch kw {
			case kwLocaltime, kwLocaltimestamp, kwCurrentTime, kwCurrentTimestamp:
				typeState = 2 // their (precision) is kept
			case kwAs:
				if castMask&bit(depth) != 0 {
					typeState = 1
				}
			case kwBy:
				if (prev == kwOrder || prev == kwGroup) && winMask&bit(depth) == 0 {
					byDepth, itemStart = depth, true
				}
			}
			if byDepth == depth && byListEnds(kw) {
				byDepth = -1
			}
		case tQIdent:
			if typeState == 1 {
				typeState = 2
			} else {
				typeState = 0
			}
		default:
			typeState = 0
		}
	}
}

// constantAt reports whether a constant starts at toks[i] and, if so, the
// index of its last token. inByItem says that toks[i] starts an item of an
// ORDER BY or GROUP BY list, where an integer is a column position.
func (n *normalizer) constantAt(toks []token, i int, dml, inByItem bool) (int, bool) {
	sql := n.sql
	t := toks[i]
	switch t.kind {
	case tString:
		j := i
		if dml {
			// 'a'<newline>'b' is one constant.
			for j+1 < len(toks) && toks[j+1].kind == tString && toks[j+1].nl && sql[toks[j+1].start] == '\'' {
				j++
			}
		}
		return j, true
	case tNumber:
		if !dml {
			return 0, false
		}
		if inByItem && isInteger(sql[t.start:t.end]) && byItemEnds(sql, toks, i+1) {
			return 0, false
		}
		return i, true
	case tWord:
		if !dml {
			return 0, false
		}
		if i >= 2 && wordAt(sql, toks, i-2) == kwExtract && sql[toks[i-1].start] == '(' && wordAt(sql, toks, i+1) == kwFrom {
			return i, true // the field of EXTRACT(field FROM x) is a string constant
		}
		switch kw := keyword(sql[t.start:t.end]); kw {
		case kwTrue, kwFalse, kwNull:
			p1, p2 := wordAt(sql, toks, i-1), wordAt(sql, toks, i-2)
			if p1 == kwIs || p1 == kwNot && p2 == kwIs {
				return 0, false // IS [NOT] NULL / TRUE / FALSE is a test, not a constant
			}
			if kw == kwNull && p1 == kwFrom && p2 == kwDistinct {
				return 0, false // IS [NOT] DISTINCT FROM NULL becomes a null test
			}
			return i, true
		}
	case tOp:
		if !dml || sql[t.start:t.end] != "-" || i+1 >= len(toks) || toks[i+1].kind != tNumber {
			return 0, false
		}
		if i > 0 && isOperand(sql, toks[i-1]) {
			return 0, false // binary minus
		}
		if i+2 < len(toks) && toks[i+2].kind == tPunct && sql[toks[i+2].start:toks[i+2].end] == "::" {
			return 0, false // -1::numeric is -(1::numeric): the cast binds first
		}
		return i + 1, true
	}
	return 0, false
}

func wordAt(sql string, toks []token, i int) kwID {
	if i < 0 || i >= len(toks) || toks[i].kind != tWord {
		return kwNone
	}
	return keyword(sql[toks[i].start:toks[i].end])
}

// isOperand reports whether t can end an expression, so that a minus sign
// after it is binary.
func isOperand(sql string, t token) bool {
	switch t.kind {
	case tNumber, tString, tParam, tQIdent:
		return true
	case tPunct:
		c := sql[t.start]
		return c == ')' || c == ']'
	case tWord:
		return !startsExpression(keyword(sql[t.start:t.end]))
	}
	return false
}

func isInteger(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// byItemEnds reports whether the token at i ends an ORDER BY / GROUP BY
// item (so the integer before it is the whole item).
func byItemEnds(sql string, toks []token, i int) bool {
	if i >= len(toks) {
		return true
	}
	t := toks[i]
	switch t.kind {
	case tPunct:
		c := sql[t.start]
		return c == ',' || c == ')'
	case tWord:
		switch kw := keyword(sql[t.start:t.end]); kw {
		case kwAsc, kwDesc, kwNulls, kwUsing:
			return true
		default:
			return byListEnds(kw)
		}
	}
	return false
}

// isDML reports whether the statement is one pg_stat_statements normalises
// (planned statements); utility statements (SET, CREATE, ...) keep their
// text as written.
func isDML(sql string, toks []token) bool {
	for _, t := range toks {
		if t.kind == tPunct && sql[t.start] == '(' {
			continue
		}
		if t.kind != tWord {
			return false
		}
		switch keyword(sql[t.start:t.end]) {
		case kwSelect, kwInsert, kwUpdate, kwDelete, kwWith, kwValues, kwTable, kwMerge, kwPrepare, kwExplain:
			return true
		}
		return false
	}
	return false
}
