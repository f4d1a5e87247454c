package sqlnorm

// The lexer follows PostgreSQL's scan.l closely enough to find the tokens
// pg_stat_statements replaces: string constants of every form, numbers,
// $n parameters, and the operators, words and punctuation around them.
// It never fails: unterminated strings, comments and identifiers run to the
// end of the input.

type tokKind uint8

const (
	tWord   tokKind = iota // identifier or keyword
	tQIdent                // "quoted identifier" or U&"..."
	tString                // '...', E'...', B'...', X'...', N'...', U&'...', $tag$...$tag$
	tNumber                // 42, 4.2, .42, 4e2
	tParam                 // $1
	tOp                    // operator (+, -, <=, @>, ...)
	tPunct                 // ( ) [ ] , ; . : ::
	tOther                 // anything else, one byte
)

type token struct {
	kind  tokKind
	space bool // whitespace or a comment came before it
	nl    bool // that whitespace held a newline
	start int
	end   int
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == '$'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isOpChar(c byte) bool {
	switch c {
	case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?':
		return true
	}
	return false
}

// lex appends the tokens of s to toks and returns it.
func lex(s string, toks []token) []token {
	i := 0
	space, nl := false, false
	for i < len(s) {
		c := s[i]
		// Whitespace and comments.
		if isSpace(c) {
			space = true
			if c == '\n' || c == '\r' {
				nl = true
			}
			i++
			continue
		}
		if c == '-' && i+1 < len(s) && s[i+1] == '-' {
			space = true
			for i < len(s) && s[i] != '\n' && s[i] != '\r' {
				i++
			}
			continue
		}
		if c == '/' && i+1 < len(s) && s[i+1] == '*' {
			space = true
			i = skipBlockComment(s, i)
			continue
		}
		t := token{space: space, nl: nl, start: i}
		space, nl = false, false
		switch {
		case c == '\'':
			t.kind, i = tString, skipQuoted(s, i+1, '\'', false)
		case c == '"':
			t.kind, i = tQIdent, skipQuoted(s, i+1, '"', false)
		case (c == 'e' || c == 'E') && i+1 < len(s) && s[i+1] == '\'':
			t.kind, i = tString, skipQuoted(s, i+2, '\'', true)
		case (c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') && i+1 < len(s) && s[i+1] == '\'':
			t.kind, i = tString, skipQuoted(s, i+2, '\'', false)
		case (c == 'u' || c == 'U') && i+2 < len(s) && s[i+1] == '&' && (s[i+2] == '\'' || s[i+2] == '"'):
			if s[i+2] == '\'' {
				t.kind = tString
			} else {
				t.kind = tQIdent
			}
			i = skipQuoted(s, i+3, s[i+2], false)
		case isIdentStart(c):
			t.kind = tWord
			i++
			for i < len(s) && isIdentCont(s[i]) {
				i++
			}
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			t.kind, i = tNumber, skipNumber(s, i)
		case c == '$':
			t.kind, i = lexDollar(s, i)
		case c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == ';' || c == '.':
			t.kind = tPunct
			i++
		case c == ':':
			t.kind = tPunct
			i++
			if i < len(s) && s[i] == ':' {
				i++
			}
		case isOpChar(c):
			t.kind, i = tOp, skipOperator(s, i)
		default:
			t.kind = tOther
			i++
		}
		t.end = i
		toks = append(toks, t)
	}
	return toks
}

// skipBlockComment returns the index after the (nested) comment at i.
func skipBlockComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && i+1 < len(s) && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// skipQuoted returns the index after the closing quote q of a literal whose
// body starts at i; a doubled quote is an escaped quote, and so is a
// backslash-quote when backslash is set (E” strings).
func skipQuoted(s string, i int, q byte, backslash bool) int {
	for i < len(s) {
		c := s[i]
		switch {
		case backslash && c == '\\':
			i += 2
		case c == q:
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

func skipDigits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// skipNumber returns the index after the numeric literal at i.
func skipNumber(s string, i int) int {
	i = skipDigits(s, i)
	// A fraction, but not the ".." of a range or a qualified name like 1.a.
	if i < len(s) && s[i] == '.' && !(i+1 < len(s) && s[i+1] == '.') {
		i = skipDigits(s, i+1)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			i = skipDigits(s, j)
		}
	}
	return i
}

// lexDollar lexes a $n parameter or a $tag$...$tag$ string at i.
func lexDollar(s string, i int) (tokKind, int) {
	j := i + 1
	if j < len(s) && isDigit(s[j]) {
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		return tParam, j
	}
	// $tag$: the tag is an identifier without $, possibly empty.
	if j < len(s) && isIdentStart(s[j]) {
		for j < len(s) && isIdentCont(s[j]) && s[j] != '$' {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return tOther, i + 1
	}
	delim := s[i : j+1]
	body := j + 1
	for k := body; k+len(delim) <= len(s); k++ {
		if s[k] == '$' && s[k:k+len(delim)] == delim {
			return tString, k + len(delim)
		}
	}
	return tString, len(s)
}

// skipOperator returns the end of the operator at i, following scan.l: the
// operator stops before a comment start, and a multi-character operator
// ending in + or - loses that tail unless it contains one of ~!@#%^&|`?
// (so "=-1" is "=", "-", "1").
func skipOperator(s string, i int) int {
	start := i
	special := false
	for i < len(s) && isOpChar(s[i]) {
		if i > start && (s[i] == '-' && i+1 < len(s) && s[i+1] == '-' || s[i] == '/' && i+1 < len(s) && s[i+1] == '*') {
			break
		}
		switch s[i] {
		case '~', '!', '@', '#', '%', '^', '&', '|', '`', '?':
			special = true
		}
		i++
	}
	if !special {
		for i-start > 1 && (s[i-1] == '+' || s[i-1] == '-') {
			i--
		}
	}
	return i
}
