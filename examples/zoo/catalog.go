package zoo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// productCount is the catalogue's size: big enough that a per-request pass
// over every product name costs milliseconds, small enough to hold in memory.
const productCount = 8000

// Categories of the catalogue; each has three nouns.
var categories = []string{"lighting", "seating", "tables", "storage", "beds", "rugs", "textiles", "kitchen",
	"bath", "garden", "office", "kids", "decor", "mirrors", "shelving", "outdoor"}

var categoryNouns = [][]string{
	{"lamp", "pendant", "sconce"}, {"chair", "stool", "bench"}, {"table", "desk", "console"},
	{"cabinet", "dresser", "chest"}, {"bed", "headboard", "bunk"}, {"rug", "runner", "mat"},
	{"throw", "cushion", "curtain"}, {"kettle", "skillet", "pot"}, {"towel", "basin", "caddy"},
	{"planter", "trellis", "hose"}, {"monitor", "drawer", "filer"}, {"crib", "easel", "toybox"},
	{"vase", "candle", "clock"}, {"mirror", "frame", "panel"}, {"shelf", "rack", "ladder"},
	{"parasol", "hammock", "lounger"},
}

var adjectives = []string{"blue", "red", "green", "black", "white", "grey", "amber", "coral", "ivory", "olive",
	"slim", "round", "tall", "low", "wide", "folding", "modular", "classic", "rustic", "nordic"}

var materials = []string{"oak", "walnut", "pine", "birch", "steel", "brass", "copper", "rattan", "linen",
	"wool", "cotton", "marble"}

var fillerWords = []string{"crafted", "finish", "durable", "everyday", "design", "comfort", "natural",
	"detail", "quality", "assembled", "sustainably", "sourced", "timeless", "care", "wipe", "clean",
	"dimensions", "weight", "warranty", "years", "shipping", "included", "matching", "collection"}

// product is one catalogue entry.
type product struct {
	ID          int64
	SKU         string
	Name        string
	Category    string
	PriceCents  int64
	Description string
	words       []string // lower-case words of Name
	wordIDs     []int    // indexes into catalog.vocab, same order as words
}

// genProduct builds product i (1-based) deterministically: the seed and a
// zoo without a database agree on the catalogue.
func genProduct(i int64) product {
	r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	c := int(i) % len(categories)
	noun := categoryNouns[c][r.IntN(len(categoryNouns[c]))]
	name := adjectives[r.IntN(len(adjectives))] + " " + materials[r.IntN(len(materials))] + " " + noun
	var d strings.Builder
	d.WriteString("The " + name + ".")
	// Just below PostgreSQL's TOAST threshold (about 2 kB per row), so rows
	// stay inline and a listing of a category is about 1 MB.
	for d.Len() < 1850 {
		d.WriteByte(' ')
		d.WriteString(fillerWords[r.IntN(len(fillerWords))])
	}
	d.WriteByte('.')
	return product{
		ID:          i,
		SKU:         fmt.Sprintf("SKU-%06d", i),
		Name:        name,
		Category:    categories[c],
		PriceCents:  listPrice(fmt.Sprintf("SKU-%06d", i)),
		Description: d.String(),
	}
}

// catalog is the in-memory product catalogue.
type catalog struct {
	products []product        // by ID-1
	vocab    []string         // distinct words of product names
	byWord   map[string][]int // word -> indexes into products
	byCat    map[string][]int // category -> indexes into products
	wordID   map[string]int   // word -> index into vocab
	bySKU    map[string]*product
}

// loadCatalog reads the catalogue from the database, or generates it when
// pool is nil.
func loadCatalog(ctx context.Context, pool *pgxpool.Pool) (*catalog, error) {
	var ps []product
	if pool == nil {
		ps = make([]product, productCount)
		for i := range ps {
			ps[i] = genProduct(int64(i + 1))
		}
	} else {
		rows, err := pool.Query(ctx, "SELECT id, sku, name, category, price_cents, description FROM products ORDER BY id")
		if err != nil {
			return nil, fmt.Errorf("load catalogue: %w", err)
		}
		for rows.Next() {
			var p product
			if err := rows.Scan(&p.ID, &p.SKU, &p.Name, &p.Category, &p.PriceCents, &p.Description); err != nil {
				rows.Close()
				return nil, fmt.Errorf("load catalogue: %w", err)
			}
			ps = append(ps, p)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("load catalogue: %w", err)
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("load catalogue: no products (run zoo seed first)")
		}
	}
	return newCatalog(ps), nil
}

func newCatalog(ps []product) *catalog {
	c := &catalog{products: ps, byWord: map[string][]int{}, byCat: map[string][]int{},
		wordID: map[string]int{}, bySKU: map[string]*product{}}
	for i := range c.products {
		p := &c.products[i]
		p.words = strings.Fields(strings.ToLower(p.Name))
		for _, w := range p.words {
			id, ok := c.wordID[w]
			if !ok {
				id = len(c.vocab)
				c.wordID[w] = id
				c.vocab = append(c.vocab, w)
			}
			p.wordIDs = append(p.wordIDs, id)
			if l := c.byWord[w]; len(l) == 0 || l[len(l)-1] != i {
				c.byWord[w] = append(l, i)
			}
		}
		c.byCat[p.Category] = append(c.byCat[p.Category], i)
		c.bySKU[p.SKU] = p
	}
	return c
}

// byID returns product id, or nil.
func (c *catalog) byID(id int64) *product {
	if id < 1 || id > int64(len(c.products)) || c.products[id-1].ID != id {
		for i := range c.products {
			if c.products[i].ID == id {
				return &c.products[i]
			}
		}
		return nil
	}
	return &c.products[id-1]
}

// hit is one search result.
type hit struct {
	p     *product
	score int // edit distance of the closest word; lower is better
}

// searchLimit is how many results a search returns.
const searchLimit = 10

// search ranks every product by the edit distance between q and the closest
// word of its name, computing the distance for each word of each product.
func (c *catalog) search(q string) []hit {
	q = strings.ToLower(q)
	var top topHits
	for i := range c.products {
		p := &c.products[i]
		best := -1
		for _, w := range p.words {
			if d := editDistance(q, w); best < 0 || d < best {
				best = d
			}
		}
		top.add(hit{p: p, score: best})
	}
	return top.hits()
}

// searchIndexed returns the same ranking as search, computing the distance
// once per distinct word of the vocabulary.
func (c *catalog) searchIndexed(q string) []hit {
	q = strings.ToLower(q)
	dist := make([]int, len(c.vocab))
	for i, w := range c.vocab {
		dist[i] = editDistance(q, w)
	}
	var top topHits
	for i := range c.products {
		p := &c.products[i]
		best := -1
		for _, id := range p.wordIDs {
			if d := dist[id]; best < 0 || d < best {
				best = d
			}
		}
		top.add(hit{p: p, score: best})
	}
	return top.hits()
}

// topHits keeps the searchLimit best hits seen, best first; ties go to the
// lower product id (products are added in id order).
type topHits struct {
	h [searchLimit]hit
	n int
}

func (t *topHits) add(x hit) {
	if t.n == searchLimit && x.score >= t.h[t.n-1].score {
		return
	}
	i := min(t.n, searchLimit-1)
	for i > 0 && t.h[i-1].score > x.score {
		t.h[i] = t.h[i-1]
		i--
	}
	t.h[i] = x
	t.n = min(t.n+1, searchLimit)
}

func (t *topHits) hits() []hit { return slices.Clone(t.h[:t.n]) }

// editDistance is the Levenshtein distance between a and b, in runes. Words
// of up to 32 runes are compared without allocating.
func editDistance(a, b string) int {
	var abuf, bbuf [32]rune
	var pbuf, cbuf [33]int
	ra, rb := appendRunes(abuf[:0], a), appendRunes(bbuf[:0], b)
	prev, cur := pbuf[:0], cbuf[:0]
	if len(rb) >= len(pbuf) {
		prev, cur = make([]int, 0, len(rb)+1), make([]int, 0, len(rb)+1)
	}
	prev, cur = prev[:len(rb)+1], cur[:len(rb)+1]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// appendRunes appends the runes of s (invalid bytes as U+FFFD) to dst.
func appendRunes(dst []rune, s string) []rune {
	for _, r := range s {
		dst = append(dst, r)
	}
	return dst
}
