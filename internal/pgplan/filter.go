package pgplan

import (
	"strings"
)

// Bounds for the expression parser (filters are deparsed by the server, but
// the text is still untrusted).
const (
	maxFilter    = 64 << 10 // bytes of one filter expression
	maxExprDepth = 100      // nesting of parentheses and operators
)

// FilterColumns reads a plan's Filter expression (as PostgreSQL deparses it,
// e.g. "((status = 'paid'::text) AND (created_at > $2))") and returns the
// columns of the scanned relation compared with a value: equality (=, IS
// NULL, = ANY) and range (<, <=, >, >=, LIKE) predicates of the top-level
// AND, each column once, in the order written. ours says whether a column
// qualifier ("" when unqualified) names the scanned relation; nil accepts
// only unqualified columns. Predicates under OR, on expressions, or
// comparing two columns of the relation are not indexable by a plain
// btree and are left out.
func FilterColumns(filter string, ours func(qualifier string) bool) (equality, rng []string) {
	if ours == nil {
		ours = func(q string) bool { return q == "" }
	}
	if len(filter) > maxFilter {
		return nil, nil
	}
	p := &parser{toks: tokenize(filter)}
	e := p.parseExpr(0)
	var conj []*expr
	flattenAnd(e, &conj, 0)
	seen := map[string]bool{}
	for _, c := range conj {
		col, class := predicate(c, ours)
		if col == "" || seen[col] {
			continue
		}
		seen[col] = true
		switch class {
		case classEq:
			equality = append(equality, col)
		case classRange:
			rng = append(rng, col)
		}
	}
	return equality, rng
}

// sortColumns returns the plain columns of the scanned relation among sort
// keys such as "o.created_at DESC" (up to the first key that is not one: an
// index serves a prefix of the sort only).
func sortColumns(keys []string, ours func(string) bool) []string {
	if ours == nil {
		ours = func(q string) bool { return q == "" }
	}
	var out []string
	for _, k := range keys {
		if len(k) > maxFilter {
			break
		}
		p := &parser{toks: tokenize(k)}
		e := p.parsePostfix(p.parsePrimary())
		if e == nil || e.kind != eCol || !ours(e.qual) {
			break
		}
		out = append(out, e.name)
	}
	return out
}

type predClass int

const (
	classNone predClass = iota
	classEq
	classRange
)

// predicate classifies one conjunct: "col op value" or "value op col".
func predicate(e *expr, ours func(string) bool) (string, predClass) {
	switch e.kind {
	case eNullTest:
		if len(e.args) == 1 && e.args[0].kind == eCol && ours(e.args[0].qual) {
			return e.args[0].name, classEq
		}
	case eCmp:
		if len(e.args) != 2 {
			return "", classNone
		}
		l, r := e.args[0], e.args[1]
		op := e.op
		lc := l.kind == eCol && ours(l.qual)
		rc := r.kind == eCol && ours(r.qual)
		switch {
		case lc && !mentions(r, ours):
		case rc && !mentions(l, ours) && !e.anyAll:
			l, op = r, mirror(op)
		default:
			return "", classNone
		}
		switch op {
		case "=":
			return l.name, classEq
		case "<", "<=", ">", ">=", "~~":
			if e.anyAll {
				return "", classNone
			}
			return l.name, classRange
		}
	}
	return "", classNone
}

// mirror turns "value < col" into "col > value".
func mirror(op string) string {
	switch op {
	case "<":
		return ">"
	case ">":
		return "<"
	case "<=":
		return ">="
	case ">=":
		return "<="
	case "~~":
		return "" // "pattern LIKE col" is not an index predicate on col
	}
	return op
}

// mentions reports whether an expression refers to a column of ours.
func mentions(e *expr, ours func(string) bool) bool {
	if e == nil {
		return false
	}
	if e.kind == eCol {
		return ours(e.qual)
	}
	for _, a := range e.args {
		if mentions(a, ours) {
			return true
		}
	}
	return false
}

func flattenAnd(e *expr, out *[]*expr, depth int) {
	if e == nil || depth > maxExprDepth {
		return
	}
	if e.kind == eAnd {
		for _, a := range e.args {
			flattenAnd(a, out, depth+1)
		}
		return
	}
	*out = append(*out, e)
}

// Tokens.

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tQIdent
	tStr
	tNum
	tParam
	tOp
	tLParen
	tRParen
	tLBrack
	tRBrack
	tComma
	tDot
	tCast
)

type token struct {
	kind tokKind
	s    string
}

const opChars = "+-*/<>=~!@#%^&|`?"

// punct are the one-byte tokens.
var punct = [256]tokKind{'(': tLParen, ')': tRParen, '[': tLBrack, ']': tRBrack, ',': tComma, '.': tDot}

// scan returns the index of the first byte from i on that is not in.
func scan(s string, i int, in func(byte) bool) int {
	for i < len(s) && in(s[i]) {
		i++
	}
	return i
}

func isNumByte(c byte) bool   { return isDigit(c) || c == '.' || c == 'e' || c == 'E' }
func isIdentByte(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }
func isOpByte(c byte) bool    { return strings.IndexByte(opChars, c) >= 0 }

func tokenize(s string) []token {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		kind, j := tEOF, i+1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '\'' || c == '"':
			kind = tStr
			if c == '"' {
				kind = tQIdent
			}
			var val string
			j, val = quoted(s, i, c)
			toks = append(toks, token{kind, val})
			i = j
			continue
		case c == '$':
			kind, j = tParam, scan(s, i+1, isDigit)
		case isDigit(c):
			kind, j = tNum, scan(s, i, isNumByte)
		case isIdentStart(c):
			kind, j = tIdent, scan(s, i, isIdentByte)
		case c == ':' && i+1 < len(s) && s[i+1] == ':':
			kind, j = tCast, i+2
		case punct[c] != tEOF:
			kind = punct[c]
		case isOpByte(c):
			kind, j = tOp, scan(s, i, isOpByte)
		}
		if kind != tEOF { // anything else is skipped
			toks = append(toks, token{kind, s[i:j]})
		}
		i = j
	}
	return toks
}

// quoted reads a quoted literal or identifier starting at s[i] (the quote),
// where a doubled quote stands for one. It returns the index after it.
func quoted(s string, i int, q byte) (int, string) {
	var b strings.Builder
	j := i + 1
	for j < len(s) {
		if s[j] == q {
			if j+1 < len(s) && s[j+1] == q {
				b.WriteByte(q)
				j += 2
				continue
			}
			return j + 1, b.String()
		}
		b.WriteByte(s[j])
		j++
	}
	return j, b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// Expressions.

type exprKind int

const (
	eOther exprKind = iota // anything not understood: a value for our purposes
	eCol
	eConst
	eCmp
	eAnd
	eOr
	eNullTest
)

type expr struct {
	kind   exprKind
	qual   string // eCol: qualifier, "" when unqualified
	name   string // eCol: column
	op     string // eCmp
	anyAll bool   // eCmp: right side is ANY(...)/ALL(...)
	args   []*expr
}

type parser struct {
	toks  []token
	pos   int
	depth int
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{kind: tEOF}
}

func (p *parser) next() token {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

func (p *parser) isKeyword(words ...string) bool {
	t := p.peek()
	if t.kind != tIdent {
		return false
	}
	for _, w := range words {
		if strings.EqualFold(t.s, w) {
			return true
		}
	}
	return false
}

// Binding strength of infix operators.
const (
	precOr    = 1
	precAnd   = 2
	precNot   = 3
	precCmp   = 4
	precOther = 5
)

var comparisons = map[string]bool{
	"=": true, "<>": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true,
	"~~": true, "!~~": true, "~~*": true, "!~~*": true,
}

// parseExpr parses operators binding at least minPrec. Every path consumes a
// token or returns, so hostile input ends.
func (p *parser) parseExpr(minPrec int) *expr {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		p.pos = len(p.toks)
		return &expr{kind: eOther}
	}
	left := p.parseUnary()
	for {
		t := p.peek()
		switch {
		case t.kind == tIdent && strings.EqualFold(t.s, "or") && minPrec <= precOr:
			p.next()
			right := p.parseExpr(precOr + 1)
			left = join(eOr, left, right)
		case t.kind == tIdent && strings.EqualFold(t.s, "and") && minPrec <= precAnd:
			p.next()
			right := p.parseExpr(precAnd + 1)
			left = join(eAnd, left, right)
		case t.kind == tIdent && strings.EqualFold(t.s, "is") && minPrec <= precCmp:
			p.next()
			not := false
			if p.isKeyword("not") {
				p.next()
				not = true
			}
			switch {
			case p.isKeyword("null"):
				p.next()
				if not {
					left = &expr{kind: eOther, args: []*expr{left}}
				} else {
					left = &expr{kind: eNullTest, args: []*expr{left}}
				}
			case p.isKeyword("distinct"):
				p.next()
				if p.isKeyword("from") {
					p.next()
				}
				right := p.parseExpr(precCmp + 1)
				left = &expr{kind: eOther, args: []*expr{left, right}}
			default: // IS TRUE / FALSE / UNKNOWN / DOCUMENT ...
				if p.peek().kind == tIdent {
					p.next()
				}
				left = &expr{kind: eOther, args: []*expr{left}}
			}
		case t.kind == tOp && comparisons[t.s] && minPrec <= precCmp:
			p.next()
			cmp := &expr{kind: eCmp, op: t.s}
			if p.isKeyword("any", "some", "all") {
				p.next()
				cmp.anyAll = true
				if p.isKeyword("all") || t.s != "=" {
					cmp.op = "any:" + t.s // only "= ANY" is an equality
				}
			}
			right := p.parseExpr(precCmp + 1)
			cmp.args = []*expr{left, right}
			left = cmp
		case t.kind == tOp && minPrec <= precOther:
			p.next()
			right := p.parseExpr(precOther + 1)
			left = &expr{kind: eOther, args: []*expr{left, right}}
		default:
			return left
		}
	}
}

func join(k exprKind, l, r *expr) *expr {
	var args []*expr
	for _, e := range []*expr{l, r} {
		if e.kind == k {
			args = append(args, e.args...)
		} else {
			args = append(args, e)
		}
	}
	return &expr{kind: k, args: args}
}

func (p *parser) parseUnary() *expr {
	switch t := p.peek(); {
	case t.kind == tIdent && strings.EqualFold(t.s, "not"):
		p.next()
		return &expr{kind: eOther, args: []*expr{p.parseExpr(precNot)}}
	case t.kind == tOp && (t.s == "-" || t.s == "+" || t.s == "~" || t.s == "!"):
		p.next()
		return &expr{kind: eOther, args: []*expr{p.parseExpr(precOther + 1)}}
	}
	return p.parsePostfix(p.parsePrimary())
}

func (p *parser) parsePrimary() *expr {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		p.pos = len(p.toks)
		return &expr{kind: eOther}
	}
	t := p.next()
	switch t.kind {
	case tStr, tNum, tParam:
		return &expr{kind: eConst}
	case tLParen:
		if p.isKeyword("hashed", "subplan", "initplan") || p.isKeyword("select") {
			p.skipTo(tRParen)
			return &expr{kind: eOther}
		}
		e := p.parseExpr(0)
		if p.peek().kind == tComma { // a row or list: (a, b)
			args := []*expr{e}
			for p.peek().kind == tComma {
				p.next()
				args = append(args, p.parseExpr(0))
			}
			e = &expr{kind: eOther, args: args}
		}
		if p.peek().kind == tRParen {
			p.next()
		}
		return e
	case tIdent:
		switch strings.ToLower(t.s) {
		case "null", "true", "false":
			return &expr{kind: eConst}
		case "array":
			if p.peek().kind == tLBrack {
				p.skipBalanced()
			}
			return &expr{kind: eConst}
		case "case":
			p.skipToKeyword("end")
			return &expr{kind: eOther}
		}
		return p.identTail(t.s)
	case tQIdent:
		return p.identTail(t.s)
	}
	return &expr{kind: eOther} // an unexpected token: consumed, taken as a value
}

// identTail reads a possibly qualified name or a function call after its
// first identifier.
func (p *parser) identTail(first string) *expr {
	parts := []string{first}
	for p.peek().kind == tDot {
		p.next()
		t := p.peek()
		if t.kind != tIdent && t.kind != tQIdent {
			break
		}
		p.next()
		parts = append(parts, t.s)
	}
	if p.peek().kind == tLParen { // a function call: not a plain column
		p.next()
		var args []*expr
		for p.peek().kind != tRParen && p.peek().kind != tEOF {
			before := p.pos
			args = append(args, p.parseExpr(0))
			if p.peek().kind == tComma {
				p.next()
			}
			if p.pos == before {
				p.next()
			}
		}
		p.next()
		return &expr{kind: eOther, args: args}
	}
	if len(parts) > 3 {
		return &expr{kind: eOther}
	}
	name := parts[len(parts)-1]
	qual := ""
	if len(parts) > 1 {
		qual = parts[len(parts)-2]
	}
	return &expr{kind: eCol, qual: qual, name: name}
}

// typeWords continue a multi-word type name after a cast.
var typeWords = map[string]bool{"varying": true, "precision": true, "without": true, "with": true, "time": true, "zone": true}

func (p *parser) parsePostfix(e *expr) *expr {
	for {
		switch p.peek().kind {
		case tCast: // a cast keeps the column: (status)::text is still status
			p.next()
			if t := p.peek(); t.kind == tIdent || t.kind == tQIdent {
				p.next()
			}
			for p.peek().kind == tDot {
				p.next()
				if t := p.peek(); t.kind == tIdent || t.kind == tQIdent {
					p.next()
				}
			}
			for p.peek().kind == tIdent && typeWords[strings.ToLower(p.peek().s)] {
				p.next()
			}
			if p.peek().kind == tLParen {
				p.skipBalanced()
			}
			for p.peek().kind == tLBrack {
				p.skipBalanced()
			}
		case tLBrack: // a subscript: no longer a plain column
			p.skipBalanced()
			e = &expr{kind: eOther, args: []*expr{e}}
		default:
			return e
		}
	}
}

// skipBalanced consumes an opening bracket and everything up to its match.
func (p *parser) skipBalanced() {
	closing := tRParen
	if p.next().kind == tLBrack {
		closing = tRBrack
	}
	p.skipTo(closing)
}

// skipTo consumes tokens up to and including the closing token at depth 0.
func (p *parser) skipTo(k tokKind) {
	depth := 0
	for {
		t := p.next()
		switch t.kind {
		case tEOF:
			return
		case tLParen, tLBrack:
			depth++
		case tRParen, tRBrack:
			if depth == 0 && t.kind == k {
				return
			}
			depth--
		}
	}
}

func (p *parser) skipToKeyword(w string) {
	for {
		t := p.next()
		if t.kind == tEOF || t.kind == tIdent && strings.EqualFold(t.s, w) {
			return
		}
	}
}
