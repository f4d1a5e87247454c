package scenario

import (
	"math/rand/v2"
	"strconv"
)

// Generator draws requests from a scenario: a weighted pick of the request
// template, then its variables. Each Generator has its own random stream;
// seq counters belong to the Scenario, so generators used side by side
// never draw the same seq value. A Generator is not safe for concurrent use.
type Generator struct {
	s   *Scenario
	rng *rand.Rand
	num [][]byte // the drawn value of each int or seq variable, formatted
	str []string // the drawn value of each pick or csv variable
	row []int    // the drawn row of each CSV file
	buf []byte   // scratch for URLs and header values
}

// seedStream is PCG's second seed word; any fixed odd constant will do
// (this one is from the golden ratio, as in splitmix64).
const seedStream = 0x9e3779b97f4a7c15

// NewGenerator returns a generator whose random draws are fixed by seed:
// the same scenario and seed give the same requests (seq values aside when
// other generators of the scenario draw too).
func (s *Scenario) NewGenerator(seed uint64) *Generator {
	g := &Generator{
		s:   s,
		rng: rand.New(rand.NewPCG(seed, seedStream)),
		num: make([][]byte, len(s.vars)),
		str: make([]string, len(s.vars)),
		row: make([]int, len(s.groupRows)),
	}
	return g
}

// Next fills r with the next request, reusing r.Header's and r.Body's
// storage: the caller must not keep them across calls. Variables are drawn
// once per request, so {{x}} used twice in one request has one value; all
// CSV variables of one file take the same row. Requests without variables
// do not allocate.
func (g *Generator) Next(r *Request) {
	s := g.s
	t := &s.reqs[g.pick()]
	for _, grp := range t.groups {
		g.row[grp] = g.rng.IntN(s.groupRows[grp])
	}
	for _, vi := range t.vars {
		g.draw(vi)
	}
	r.Endpoint = t.endpoint
	r.Method = t.method
	r.URL = g.expandString(&t.url, true)
	r.Header = r.Header[:0]
	for i := range t.headers {
		h := &t.headers[i]
		r.Header = append(r.Header, Header{Name: h.Name, Value: g.expandString(&h.value, false)})
	}
	r.Body = g.expand(r.Body[:0], &t.body, false)
}

// pick returns the index of a request template, by weight.
func (g *Generator) pick() int {
	cum := g.s.cum
	if len(cum) == 1 {
		return 0
	}
	x := g.rng.Float64() * cum[len(cum)-1]
	lo, hi := 0, len(cum)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cum[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

func (g *Generator) draw(vi int) {
	v := &g.s.vars[vi]
	switch v.kind {
	case varInt:
		n := v.min
		if span := uint64(v.max-v.min) + 1; span == 0 {
			n = int64(g.rng.Uint64())
		} else {
			n += int64(g.rng.Uint64N(span))
		}
		g.num[vi] = strconv.AppendInt(g.num[vi][:0], n, 10)
	case varSeq:
		g.num[vi] = strconv.AppendInt(g.num[vi][:0], v.next.Add(1)-1, 10)
	case varPick:
		g.str[vi] = v.values[g.rng.IntN(len(v.values))]
	case varCSV:
		g.str[vi] = v.values[g.row[v.group]]
	}
}

// expandString returns t expanded; without variables it returns the
// template's own string, without allocating.
func (g *Generator) expandString(t *template, inURL bool) string {
	if t.static() {
		return t.text
	}
	g.buf = g.expand(g.buf[:0], t, inURL)
	return string(g.buf)
}

// expand appends t, with the values drawn for this request, to dst. In a
// URL, bytes that cannot appear in one are percent-encoded.
func (g *Generator) expand(dst []byte, t *template, inURL bool) []byte {
	if t.static() {
		return append(dst, t.text...)
	}
	for _, p := range t.parts {
		switch {
		case p.v < 0:
			dst = append(dst, p.lit...)
		case g.s.vars[p.v].kind == varInt || g.s.vars[p.v].kind == varSeq:
			dst = append(dst, g.num[p.v]...)
		case inURL:
			dst = appendURLValue(dst, g.str[p.v])
		default:
			dst = append(dst, g.str[p.v]...)
		}
	}
	return dst
}
