package sqlnorm

type kwID uint8

// Keywords the normaliser looks at. Everything else is kwNone.
const (
	kwNone kwID = iota
	kwAll
	kwAnd
	kwAny
	kwArray
	kwAs
	kwAsc
	kwBetween
	kwBit
	kwBy
	kwCase
	kwCast
	kwChar
	kwCharacter
	kwCurrentTime
	kwCurrentTimestamp
	kwDelete
	kwDesc
	kwDistinct
	kwDouble
	kwElse
	kwEscape
	kwExcept
	kwExplain
	kwExtract
	kwFalse
	kwFetch
	kwFor
	kwFrom
	kwGroup
	kwGroups
	kwHaving
	kwIlike
	kwIn
	kwInsert
	kwIntersect
	kwIs
	kwLike
	kwLimit
	kwLocaltime
	kwLocaltimestamp
	kwMerge
	kwNational
	kwNot
	kwNull
	kwNulls
	kwOffset
	kwOn
	kwOr
	kwOrder
	kwOver
	kwPassword
	kwPlacing
	kwPrecision
	kwPrepare
	kwRange
	kwReturn
	kwReturning
	kwRows
	kwSelect
	kwSet
	kwSimilar
	kwSome
	kwTable
	kwThen
	kwTo
	kwTrue
	kwUnion
	kwUpdate
	kwUsing
	kwValues
	kwVarying
	kwWhen
	kwWhere
	kwWindow
	kwWith
)

var keywords = map[string]kwID{
	"all": kwAll, "and": kwAnd, "any": kwAny, "array": kwArray, "as": kwAs, "asc": kwAsc,
	"between": kwBetween, "bit": kwBit, "by": kwBy, "case": kwCase, "cast": kwCast,
	"char": kwChar, "character": kwCharacter, "current_time": kwCurrentTime,
	"current_timestamp": kwCurrentTimestamp, "delete": kwDelete, "desc": kwDesc,
	"distinct": kwDistinct, "double": kwDouble, "else": kwElse, "escape": kwEscape,
	"except": kwExcept, "explain": kwExplain, "extract": kwExtract, "false": kwFalse, "fetch": kwFetch,
	"for": kwFor, "from": kwFrom, "group": kwGroup, "groups": kwGroups, "having": kwHaving,
	"ilike": kwIlike, "in": kwIn, "insert": kwInsert, "intersect": kwIntersect, "is": kwIs,
	"like": kwLike, "limit": kwLimit, "localtime": kwLocaltime,
	"localtimestamp": kwLocaltimestamp, "merge": kwMerge, "national": kwNational,
	"not": kwNot, "null": kwNull, "nulls": kwNulls, "offset": kwOffset, "on": kwOn,
	"or": kwOr, "order": kwOrder, "over": kwOver, "password": kwPassword,
	"placing": kwPlacing, "precision": kwPrecision, "prepare": kwPrepare,
	"range": kwRange, "return": kwReturn, "returning": kwReturning, "rows": kwRows,
	"select": kwSelect, "set": kwSet, "similar": kwSimilar, "some": kwSome,
	"table": kwTable, "then": kwThen, "to": kwTo, "true": kwTrue, "union": kwUnion,
	"update": kwUpdate, "using": kwUsing, "values": kwValues, "varying": kwVarying,
	"when": kwWhen, "where": kwWhere, "window": kwWindow, "with": kwWith,
}

// maxKeywordLen is the length of the longest key of keywords.
const maxKeywordLen = len("current_timestamp")

// keyword returns the keyword s spells in any case, or kwNone.
func keyword(s string) kwID {
	if len(s) > maxKeywordLen {
		return kwNone
	}
	var buf [maxKeywordLen]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return keywords[string(buf[:len(s)])]
}

// startsExpression reports whether an expression may follow the keyword,
// so that a minus sign after it is unary.
func startsExpression(k kwID) bool {
	switch k {
	case kwSelect, kwWhere, kwAnd, kwOr, kwNot, kwThen, kwElse, kwWhen, kwCase, kwBy,
		kwLimit, kwOffset, kwValues, kwSet, kwReturning, kwBetween, kwOn, kwHaving,
		kwFrom, kwFor, kwDistinct, kwAll, kwAny, kwSome, kwLike, kwIlike, kwSimilar,
		kwTo, kwIn, kwIs, kwWith, kwReturn, kwEscape, kwUsing, kwPlacing, kwArray:
		return true
	}
	return false
}

// byListEnds reports whether the keyword ends an ORDER BY / GROUP BY list.
func byListEnds(k kwID) bool {
	switch k {
	case kwLimit, kwOffset, kwFetch, kwFor, kwHaving, kwWindow, kwUnion, kwIntersect,
		kwExcept, kwRows, kwRange, kwGroups, kwOrder:
		return true
	}
	return false
}
