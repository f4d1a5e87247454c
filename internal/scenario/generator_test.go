package scenario

import (
	"encoding/json"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string, dir string, headers []Header) *Scenario {
	t.Helper()
	s, err := Parse("test.yaml", []byte(src), dir, headers)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWeightsMix(t *testing.T) {
	// Weights 1:3:6 over n draws: each share must lie within 5 standard
	// deviations of the binomial expectation (fails by chance ~1 in 10^6).
	s := mustParse(t, `version: 1
base_url: http://127.0.0.1:8080
requests:
  - {name: a, url: /a}
  - {name: b, url: /b, weight: 3}
  - {name: c, url: /c, weight: 6}
`, "", nil)
	if got, want := s.Endpoints(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Endpoints() = %v, want %v", got, want)
	}
	const n = 100000
	counts := make([]int, 3)
	g := s.NewGenerator(42)
	var r Request
	for range n {
		g.Next(&r)
		counts[r.Endpoint]++
		if want := "http://127.0.0.1:8080/" + s.endpoints[r.Endpoint]; r.URL != want {
			t.Fatalf("endpoint %d has URL %s, want %s", r.Endpoint, r.URL, want)
		}
	}
	for i, w := range []float64{0.1, 0.3, 0.6} {
		sd := math.Sqrt(n * w * (1 - w))
		if d := math.Abs(float64(counts[i]) - n*w); d > 5*sd {
			t.Errorf("endpoint %d drawn %d times, want %.0f ± %.0f", i, counts[i], n*w, 5*sd)
		}
	}
}

func TestVariables(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"users.csv": "\ufeffid,email,name\n1,a@example.com,Ann\n2,b@example.com,Bob\n3,c@example.com,Cy Young\n",
	})
	s := mustParse(t, `version: 1
base_url: http://127.0.0.1:8080/api/
vars:
  account: {int: {min: -2, max: 3}}
  order:   {seq: {start: 7}}
  plain:   {seq: {}}
  sku:     {pick: [AB-12, CD-34, 5]}
  user:    {csv: {file: users.csv, column: email}}
  uid:     {csv: {file: users.csv, column: id}}
  uname:   {csv: {file: users.csv, column: name}}
requests:
  - name: one
    method: post
    url: /orders/{{ account }}?sku={{sku}}&u={{uname}}
    headers: {X-User: '{{user}}'}
    body: '{"seq": {{order}}, "again": {{order}}, "plain": {{plain}}, "uid": {{uid}}, "name": "{{uname}}"}'
`, dir, nil)
	users := map[string][2]string{"1": {"a@example.com", "Ann"}, "2": {"b@example.com", "Bob"}, "3": {"c@example.com", "Cy Young"}}
	g := s.NewGenerator(1)
	var r Request
	seenInt := map[int]bool{}
	seenSKU := map[string]bool{}
	seenUID := map[string]bool{}
	for i := range 1000 {
		g.Next(&r)
		if r.Method != "POST" {
			t.Fatalf("method %q, want POST", r.Method)
		}
		u, err := url.Parse(r.URL)
		if err != nil {
			t.Fatalf("URL %q does not parse: %v", r.URL, err)
		}
		acc, err := strconv.Atoi(strings.TrimPrefix(u.Path, "/api/orders/"))
		if err != nil || acc < -2 || acc > 3 {
			t.Fatalf("account in %q is not an int within [-2, 3]", r.URL)
		}
		seenInt[acc] = true
		seenSKU[u.Query().Get("sku")] = true
		var body struct {
			Seq, Again, Plain int
			UID               int
			Name              string
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("body %q: %v", r.Body, err)
		}
		if body.Seq != 7+i || body.Again != body.Seq || body.Plain != 1+i {
			t.Fatalf("request %d: seq %d, again %d, plain %d; want %d, %d, %d", i, body.Seq, body.Again, body.Plain, 7+i, 7+i, 1+i)
		}
		row := users[strconv.Itoa(body.UID)]
		seenUID[strconv.Itoa(body.UID)] = true
		if len(r.Header) != 1 || r.Header[0] != (Header{"X-User", row[0]}) || body.Name != row[1] || u.Query().Get("u") != row[1] {
			t.Fatalf("csv values not from one row: uid %d, header %v, name %q, query u %q", body.UID, r.Header, body.Name, u.Query().Get("u"))
		}
		if strings.Contains(r.URL, " ") {
			t.Fatalf("URL %q has an unescaped space", r.URL)
		}
	}
	if len(seenInt) != 6 {
		t.Errorf("int drew %d distinct values of 6", len(seenInt))
	}
	if want := map[string]bool{"AB-12": true, "CD-34": true, "5": true}; !mapsEqual(seenSKU, want) {
		t.Errorf("pick drew %v, want %v", seenSKU, want)
	}
	if len(seenUID) != 3 {
		t.Errorf("csv drew %d distinct rows of 3", len(seenUID))
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func TestHeaderPrecedence(t *testing.T) {
	defaults := []Header{{"Authorization", "Bearer from-flag"}, {"X-Flag", "flag"}, {"accept", "text/plain"}, {"X-Req", "flag"}}
	s := mustParse(t, `version: 1
base_url: http://127.0.0.1:8080
headers:
  Accept: application/json
  X-File: file
  x-req: file
requests:
  - name: own
    url: /a
    headers: {X-REQ: request, X-Only: here}
  - name: plain
    url: /b
`, "", defaults)
	want := map[string][]Header{
		"own":   {{"Authorization", "Bearer from-flag"}, {"X-Flag", "flag"}, {"Accept", "application/json"}, {"X-REQ", "request"}, {"X-File", "file"}, {"X-Only", "here"}},
		"plain": {{"Authorization", "Bearer from-flag"}, {"X-Flag", "flag"}, {"Accept", "application/json"}, {"x-req", "file"}, {"X-File", "file"}},
	}
	g := s.NewGenerator(3)
	var r Request
	seen := map[string]bool{}
	for range 50 {
		g.Next(&r)
		name := s.Endpoints()[r.Endpoint]
		seen[name] = true
		if !slices.Equal(r.Header, want[name]) {
			t.Fatalf("%s: headers\n got %v\nwant %v", name, r.Header, want[name])
		}
	}
	if len(seen) != 2 {
		t.Fatalf("drew only %v", seen)
	}
}

func TestDefaultNamesAndOrigins(t *testing.T) {
	s := mustParse(t, `version: 1
base_url: http://LOCALHOST:8080/v1
requests:
  - url: /orders?account=1
  - {method: delete, url: '/orders/{{id}}'}
  - url: https://127.0.0.1/health#x
  - url: http://[::1]:9000
vars:
  id: {seq: {}}
`, "", nil)
	if got, want := s.Endpoints(), []string{"GET /v1/orders", "DELETE /v1/orders/{{id}}", "GET /health", "GET /"}; !slices.Equal(got, want) {
		t.Errorf("Endpoints() = %q, want %q", got, want)
	}
	if got, want := s.URLs(), []string{"http://localhost:8080", "https://127.0.0.1:443", "http://[::1]:9000"}; !slices.Equal(got, want) {
		t.Errorf("URLs() = %q, want %q", got, want)
	}
}

func TestFromURLs(t *testing.T) {
	s, err := FromURLs([]string{"http://127.0.0.1:8080/fast?x=1", "http://127.0.0.1:8080/slow", "http://127.0.0.1:8080/fast?x=2"}, []Header{{"X-A", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Endpoints(), []string{"GET /fast", "GET /slow"}; !slices.Equal(got, want) {
		t.Errorf("Endpoints() = %q, want %q", got, want)
	}
	if got, want := s.URLs(), []string{"http://127.0.0.1:8080"}; !slices.Equal(got, want) {
		t.Errorf("URLs() = %q, want %q", got, want)
	}
	counts := map[string]int{}
	g := s.NewGenerator(9)
	var r Request
	for range 3000 {
		g.Next(&r)
		counts[r.URL]++
		if r.Method != "GET" || len(r.Header) != 1 || r.Header[0] != (Header{"X-A", "1"}) || len(r.Body) != 0 {
			t.Fatalf("request %+v", r)
		}
		if (r.Endpoint == 0) != strings.Contains(r.URL, "/fast") {
			t.Fatalf("URL %s has endpoint %d", r.URL, r.Endpoint)
		}
	}
	for u, c := range counts {
		if c < 850 || c > 1150 { // 1000 ± 5 sd of Binomial(3000, 1/3)
			t.Errorf("%s drawn %d times of 3000, want about 1000", u, c)
		}
	}

	bad := []struct {
		urls []string
		want string
	}{
		{nil, "no URL given"},
		{[]string{"127.0.0.1:8080/x"}, "URL 1 (127.0.0.1:8080/x): not a URL: first path segment in URL cannot contain colon"},
		{[]string{"http://h/", "ftp://h/x"}, "URL 2 (ftp://h/x): scheme must be http or https"},
		{[]string{"/x"}, "URL 1 (/x): not absolute: want http://host[:port]/path"},
		{[]string{"http://user:s3cret@/x"}, "URL 1 (http://user:xxxxx@/x): no host"},
		{[]string{"http://user:s3cret@h:port/x"}, "URL 1 (URL with credentials): not a URL: invalid port \":port\" after host"},
		{[]string{"http://h:99999/x"}, "URL 1 (http://h:99999/x): port out of range"},
		{[]string{"http://user:s3cret@h/x"}, "URL 1 (http://user:xxxxx@h/x): user info is not sent: give credentials as a header (-H 'Authorization: Basic ...')"},
	}
	for _, tt := range bad {
		t.Run(tt.want, func(t *testing.T) {
			_, err := FromURLs(tt.urls, nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("FromURLs(%q) error %v, want %q", tt.urls, err, tt.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in      string
		want    Header
		wantErr string
	}{
		{"Accept: application/json", Header{"Accept", "application/json"}, ""},
		{"  X-Token :  s3cret value ", Header{"X-Token", "s3cret value"}, ""},
		{"X-Empty:", Header{"X-Empty", ""}, ""},
		{"Authorization: Bearer a:b:c", Header{"Authorization", "Bearer a:b:c"}, ""},
		{"Bearer s3cret", Header{}, "header: want 'Name: value', found no ':'"},
		{": s3cret", Header{}, "header: header name is empty"},
		{"X Token: s3cret", Header{}, "header: header name has an invalid character at position 2 (want letters, digits and !#$%&'*+-.^_`|~)"},
		{"X-Token: s3cret\r\nEvil: 1", Header{}, "header X-Token: header value has a control character at position 7"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHeader(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q leaks the value", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseHeader(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"orders.yaml": "version: 1\nbase_url: http://127.0.0.1:8080\nvars:\n  user: {csv: {file: users.csv, column: email}}\nrequests:\n  - url: /u?e={{user}}\n",
		"users.csv":   "email\nx@example.com\n",
		"bad.yaml":    "version: 1\nrequests:\n  - url: /x\n    weight: 0\n",
	})
	// Run from elsewhere: the CSV path must resolve against the file's directory.
	t.Chdir(t.TempDir())
	s, err := Load(filepath.Join(dir, "orders.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var r Request
	s.NewGenerator(0).Next(&r)
	if r.URL != "http://127.0.0.1:8080/u?e=x@example.com" {
		t.Errorf("URL %s", r.URL)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if _, err := Load(bad, nil); err == nil || err.Error() != bad+":4: requests[0].weight: must be a number above 0 and at most 1073741824" {
		t.Errorf("Load(bad.yaml) error %v", err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := Load(missing, nil); err == nil || err.Error() != missing+": cannot read: no such file or directory" {
		t.Errorf("Load(missing.yaml) error %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	s := mustParse(t, "version: 1\nvars:\n  n: {int: {min: 1, max: 1000000}}\nrequests:\n  - url: http://127.0.0.1:1/{{n}}\n  - url: http://127.0.0.1:1/b\n", "", nil)
	draw := func(seed uint64) []string {
		g := s.NewGenerator(seed)
		var out []string
		var r Request
		for range 20 {
			g.Next(&r)
			out = append(out, r.URL)
		}
		return out
	}
	if a, b := draw(5), draw(5); !slices.Equal(a, b) {
		t.Errorf("same seed, different requests:\n%v\n%v", a, b)
	}
	if a, b := draw(5), draw(6); slices.Equal(a, b) {
		t.Errorf("different seeds, same requests: %v", a)
	}
}

func TestURLValueEscaping(t *testing.T) {
	s := mustParse(t, "version: 1\nvars:\n  q: {pick: ['a b#c\"<>', 'x/y?z=1&w=%41']}\nrequests:\n  - url: http://127.0.0.1:1/s?q={{q}}\n    body: '{{q}}'\n", "", nil)
	g := s.NewGenerator(0)
	var r Request
	seen := map[string]string{}
	for range 100 {
		g.Next(&r)
		seen[string(r.Body)] = r.URL
	}
	want := map[string]string{
		`a b#c"<>`:      "http://127.0.0.1:1/s?q=a%20b%23c%22%3C%3E",
		"x/y?z=1&w=%41": "http://127.0.0.1:1/s?q=x/y?z=1&w=%41",
	}
	for body, u := range want {
		if seen[body] != u {
			t.Errorf("value %q: URL %q, want %q (body keeps the value as is)", body, seen[body], u)
		}
	}
}

func TestNextAllocations(t *testing.T) {
	static := mustParse(t, "version: 1\nheaders: {Accept: a}\nrequests:\n  - url: http://127.0.0.1:1/a\n    body: '{\"a\": 1}'\n  - url: http://127.0.0.1:1/b\n", "", []Header{{"X-A", "b"}})
	dynamic := mustParse(t, "version: 1\nvars:\n  n: {int: {min: 1, max: 9}}\nrequests:\n  - url: http://127.0.0.1:1/a/{{n}}\n    body: '{\"a\": {{n}}}'\n", "", nil)
	for _, tt := range []struct {
		name string
		s    *Scenario
		max  float64
	}{{"static", static, 0}, {"dynamic", dynamic, 1}} {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.s.NewGenerator(1)
			var r Request
			g.Next(&r) // grow r's buffers
			if got := testing.AllocsPerRun(1000, func() { g.Next(&r) }); got > tt.max {
				t.Errorf("Next allocates %.1f times per request, want at most %.0f", got, tt.max)
			}
		})
	}
}

func BenchmarkNext(b *testing.B) {
	dir := writeFiles(b, map[string]string{"users.csv": "email\na@example.com\nb@example.com\n"})
	s := mustParse(b, `version: 1
base_url: http://127.0.0.1:8080
headers: {Accept: application/json}
vars:
  account: {int: {min: 1, max: 5000}}
  order:   {seq: {start: 1}}
  sku:     {pick: [AB-12, CD-34]}
  user:    {csv: {file: users.csv, column: email}}
requests:
  - name: list orders
    weight: 3
    url: /orders?account={{account}}
    headers: {X-Request-Source: chokepoint}
  - name: create order
    method: POST
    url: /orders
    headers: {X-User: '{{user}}'}
    body: '{"sku": "{{sku}}", "seq": {{order}}}'
  - name: health
    url: /health
`, dir, nil)
	g := s.NewGenerator(1)
	var r Request
	b.ReportAllocs()
	for b.Loop() {
		g.Next(&r)
	}
}

func TestSeqUniqueAcrossGenerators(t *testing.T) {
	// The load engine runs one generator per worker; a seq (an order number,
	// say) must still never repeat within the run.
	s := mustParse(t, "version: 1\nvars:\n  id: {seq: {start: 10}}\nrequests:\n  - url: http://127.0.0.1:1/o\n    body: '{{id}}'\n", "", nil)
	const workers, each = 4, 1000
	got := make([][]int, workers)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			g := s.NewGenerator(uint64(w))
			var r Request
			for range each {
				g.Next(&r)
				n, err := strconv.Atoi(string(r.Body))
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], n)
			}
		}()
	}
	for range workers {
		<-done
	}
	var all []int
	for _, g := range got {
		if !slices.IsSorted(g) {
			t.Errorf("one generator's seq values are not increasing")
		}
		all = append(all, g...)
	}
	slices.Sort(all)
	for i, n := range all {
		if n != 10+i {
			t.Fatalf("seq values are not 10..%d, each once: position %d holds %d", 10+workers*each-1, i, n)
		}
	}
}

func TestURLLiteralEscaping(t *testing.T) {
	s := mustParse(t, "version: 1\nvars:\n  n: {seq: {}}\nrequests:\n  - url: 'http://127.0.0.1:1/a b/{{ n }}/ü?q=x y#frag'\n", "", nil)
	if got, want := s.Endpoints(), []string{"GET /a%20b/{{ n }}/%C3%BC"}; !slices.Equal(got, want) {
		t.Errorf("Endpoints() = %q, want %q", got, want)
	}
	var r Request
	s.NewGenerator(0).Next(&r)
	if want := "http://127.0.0.1:1/a%20b/1/%C3%BC?q=x%20y#frag"; r.URL != want {
		t.Errorf("URL %q, want %q", r.URL, want)
	}
}
