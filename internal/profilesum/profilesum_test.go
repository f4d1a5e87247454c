package profilesum

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// synth builds a profile: each sample is a leaf-first stack and its values.
func synth(types []string, samples ...sample) *profile.Profile {
	p := &profile.Profile{TimeNanos: 1}
	for _, t := range types {
		typ, unit, _ := strings.Cut(t, "/")
		p.SampleType = append(p.SampleType, &profile.ValueType{Type: typ, Unit: unit})
	}
	fns := map[string]*profile.Function{}
	locs := map[string]*profile.Location{}
	for _, s := range samples {
		ps := &profile.Sample{Value: s.values}
		for _, name := range s.stack {
			loc := locs[name]
			if loc == nil {
				fn := &profile.Function{ID: uint64(len(fns) + 1), Name: name, SystemName: name}
				fns[name] = fn
				p.Function = append(p.Function, fn)
				loc = &profile.Location{ID: uint64(len(locs) + 1), Line: []profile.Line{{Function: fn}}}
				locs[name] = loc
				p.Location = append(p.Location, loc)
			}
			ps.Location = append(ps.Location, loc)
		}
		p.Sample = append(p.Sample, ps)
	}
	return p
}

type sample struct {
	stack  []string
	values []int64
}

func st(values []int64, stack ...string) sample { return sample{stack: stack, values: values} }

func v(x ...int64) []int64 { return x }

func TestPackagePathAndApplication(t *testing.T) {
	tests := []struct {
		fn, pkg  string
		std, app bool
		opt      Options
	}{
		{fn: "main.main", pkg: "main", app: true},
		{fn: "main.(*store).get.func1", pkg: "main", app: true},
		{fn: "runtime.mallocgc", pkg: "runtime", std: true},
		{fn: "net/http.(*conn).serve", pkg: "net/http", std: true},
		{fn: "sync.(*Mutex).Lock", pkg: "sync", std: true},
		{fn: "internal/runtime/atomic.Load", pkg: "internal/runtime/atomic", std: true},
		{fn: "vendor/golang.org/x/net/http2/hpack.(*Decoder).Write", pkg: "vendor/golang.org/x/net/http2/hpack", std: true},
		{fn: "github.com/acme/shop/store.(*DB).Orders", pkg: "github.com/acme/shop/store", app: true},
		{fn: "github.com/acme/shop/store.Map[...]", pkg: "github.com/acme/shop/store", app: true},
		{fn: "github.com/jackc/pgx/v5.(*Conn).Query", pkg: "github.com/jackc/pgx/v5"},
		{fn: "google.golang.org/grpc.(*Server).serveStreams", pkg: "google.golang.org/grpc"},
		{fn: "gopkg.in/yaml.v3.(*parser).parse", pkg: "gopkg.in/yaml"},
		{fn: "github.com/jackc/pgx/v5.(*Conn).Query", pkg: "github.com/jackc/pgx/v5", app: true,
			opt: Options{AppPrefixes: []string{"github.com/jackc/"}}},
		{fn: "zoo/internal/shop.Handle", pkg: "zoo/internal/shop", std: true},
		{fn: "zoo/internal/shop.Handle", pkg: "zoo/internal/shop", std: true, app: true,
			opt: Options{AppPrefixes: []string{"zoo/"}}},
		{fn: "github.com/acme/lib.F", pkg: "github.com/acme/lib",
			opt: Options{LibraryPrefixes: []string{"github.com/acme/lib"}}},
		{fn: NoFunction, pkg: ""},
	}
	for _, tt := range tests {
		t.Run(tt.fn, func(t *testing.T) {
			if got := PackagePath(tt.fn); got != tt.pkg {
				t.Errorf("PackagePath = %q, want %q", got, tt.pkg)
			}
			if got := IsStandard(tt.fn); got != tt.std {
				t.Errorf("IsStandard = %v, want %v", got, tt.std)
			}
			if got := tt.opt.IsApplication(tt.fn); got != tt.app {
				t.Errorf("IsApplication = %v, want %v", got, tt.app)
			}
		})
	}
}

func TestAttributeSynthetic(t *testing.T) {
	cpu := []string{"samples/count", "cpu/nanoseconds"}
	p := synth(cpu,
		// 60: JSON encoding called from the handler: charged to the handler.
		st(v(6, 60), "encoding/json.(*encodeState).marshal", "encoding/json.Marshal", "main.(*api).list", "net/http.HandlerFunc.ServeHTTP", "net/http.(*conn).serve"),
		// 25: the handler's own code.
		st(v(2, 25), "main.(*api).list", "net/http.HandlerFunc.ServeHTTP", "net/http.(*conn).serve"),
		// 10: pgx on behalf of the store (library frames skipped).
		st(v(1, 10), "runtime.memmove", "github.com/jackc/pgx/v5.(*Conn).Query", "main.(*store).orders", "main.(*api).list", "net/http.(*conn).serve"),
		// 5: GC with no application frame: charged to its root.
		st(v(1, 5), "runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"),
	)
	a, err := Attribute(p, "cpu", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Share{
		{Function: "main.(*api).list", Value: 85, Share: 0.85, Application: true},
		{Function: "main.(*store).orders", Value: 10, Share: 0.10, Application: true},
		{Function: "runtime.gcBgMarkWorker", Value: 5, Share: 0.05},
	}
	if a.Total != 100 || len(a.Shares) != len(want) {
		t.Fatalf("attribution = %+v", a)
	}
	for i, w := range want {
		g := a.Shares[i]
		if g.Function != w.Function || g.Value != w.Value || math.Abs(g.Share-w.Share) > 1e-9 || g.Application != w.Application {
			t.Errorf("share %d = %+v, want %+v", i, g, w)
		}
	}
	top, ok := a.TopApplication()
	if !ok || top.Function != "main.(*api).list" {
		t.Errorf("TopApplication = %+v, %v", top, ok)
	}

	tab, err := Functions(p, "cpu/nanoseconds")
	if err != nil {
		t.Fatal(err)
	}
	if f := tab.TopFlat(1); len(f) != 1 || f[0].Function != "encoding/json.(*encodeState).marshal" || f[0].Flat != 60 {
		t.Errorf("TopFlat = %+v", f)
	}
	if c := tab.TopCum(2); len(c) != 2 || c[0].Cum != 95 || c[1].Cum != 95 || math.Abs(c[0].CumShare-0.95) > 1e-9 {
		t.Errorf("TopCum = %+v", c)
	}
	if e, ok := tab.Lookup("net/http.(*conn).serve"); !ok || e.Flat != 0 || e.Cum != 95 {
		t.Errorf("conn.serve entry = %+v", e)
	}
	if e, ok := tab.Lookup("main.(*api).list"); !ok || e.Flat != 25 || e.Cum != 95 {
		t.Errorf("list entry = %+v", e)
	}

	if _, err := Attribute(p, "alloc_space", Options{}); err == nil {
		t.Error("missing sample type: no error")
	}
}

func TestTrimWrapper(t *testing.T) {
	for in, want := range map[string]string{
		"main.(*c).inc.deferwrap1":  "main.(*c).inc",
		"main.run.gowrap12":         "main.run",
		"main.run.func1":            "main.run.func1",
		"main.deferwrap":            "main.deferwrap",
		"main.(*c).f.func2.gowrap1": "main.(*c).f.func2",
	} {
		if got := TrimWrapper(in); got != want {
			t.Errorf("TrimWrapper(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRecursionCountsOnceInCum(t *testing.T) {
	p := synth([]string{"cpu/nanoseconds"}, st(v(10), "main.walk", "main.walk", "main.walk", "main.main"))
	tab, err := Functions(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := tab.Lookup("main.walk"); e.Cum != 10 || e.Flat != 10 {
		t.Errorf("walk = %+v, want flat 10 cum 10", e)
	}
}

func TestGCSynthetic(t *testing.T) {
	p := synth([]string{"samples/count", "cpu/nanoseconds"},
		st(v(1, 30), "runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"),
		st(v(1, 10), "runtime.gcAssistAlloc1", "runtime.gcAssistAlloc", "runtime.mallocgc", "runtime.newobject", "main.handler"),
		st(v(1, 20), "runtime.nextFreeFast", "runtime.mallocgcSmallNoscan", "runtime.mallocgc", "runtime.makeslice", "main.handler"),
		st(v(1, 40), "main.handler"),
	)
	g, err := GC(p)
	if err != nil {
		t.Fatal(err)
	}
	if g.Total != 100 || g.GC != 40 || g.Alloc != 20 || math.Abs(g.Share-0.6) > 1e-9 {
		t.Errorf("GC = %+v, want total 100, gc 40, alloc 20", g)
	}
}

func TestLockDelaySynthetic(t *testing.T) {
	types := []string{"contentions/count", "delay/nanoseconds"}
	p := synth(types,
		st(v(5, 900), "sync.(*Mutex).Unlock", "main.(*cache).put", "main.handler"),
		st(v(1, 100), "sync.(*Mutex).Lock", "main.(*cache).get", "main.handler"),
	)
	sites, tot, err := LockDelay(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tot != 1000 || len(sites) != 2 {
		t.Fatalf("sites = %+v total %d", sites, tot)
	}
	if s := sites[0]; s.Function != "main.(*cache).put" || s.Via != "sync.(*Mutex).Unlock" || s.Delay != 900 || s.Contentions != 5 || math.Abs(s.Share-0.9) > 1e-9 {
		t.Errorf("top site = %+v", s)
	}
}

func TestHeapGrowthSynthetic(t *testing.T) {
	types := []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}
	prev := synth(types,
		st(v(10, 1000, 5, 500), "runtime.mallocgc", "main.(*sessions).add"),
		st(v(10, 1000, 1, 300), "runtime.mallocgc", "encoding/json.Marshal", "main.render"),
	)
	cur := synth(types,
		st(v(20, 9000, 90, 9000), "runtime.mallocgc", "main.(*sessions).add"),
		st(v(20, 2000, 1, 200), "runtime.mallocgc", "encoding/json.Marshal", "main.render"),
	)
	sites, tot, err := HeapSites(cur, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tot != 9200 || sites[0].Function != "main.(*sessions).add" || sites[0].InuseObjects != 90 {
		t.Errorf("sites = %+v total %d", sites, tot)
	}
	g, err := HeapGrowthBetween(prev, cur, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || g[0].Function != "main.(*sessions).add" || g[0].Delta != 8500 || g[1].Delta != -100 {
		t.Errorf("growth = %+v", g)
	}
	// Delta of the cumulative allocation counts.
	d, err := Delta(prev, cur)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := Total(d, "alloc_space"); got != 9000 {
		t.Errorf("delta alloc_space = %d, want 9000", got)
	}
}

//go:noinline
func burnCPU(until time.Time) (x uint64) {
	for time.Now().Before(until) {
		for i := range 10000 {
			x += uint64(i) * 2654435761
		}
	}
	return x
}

var sink uint64

// TestRealCPUProfile profiles this process while a function burns CPU and
// checks the attribution names it.
func TestRealCPUProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("profiles for 400ms")
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Skipf("cpu profiling busy: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 2 {
		wg.Go(func() {
			x := burnCPU(time.Now().Add(400 * time.Millisecond))
			mu.Lock()
			sink += x
			mu.Unlock()
		})
	}
	wg.Wait()
	pprof.StopCPUProfile()
	p, err := Decode(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Attribute(p, "cpu", Options{})
	if err != nil {
		t.Fatal(err)
	}
	const fn = "github.com/chokepoint/chokepoint/internal/profilesum.burnCPU"
	s, ok := a.Lookup(fn)
	if !ok || s.Share < 0.5 || !s.Application {
		t.Errorf("burnCPU share = %+v (found %v), want > 0.5 of %d ns; top %+v", s, ok, a.Total, a.Top(5))
	}
	// time.Now is standard library: its cost is charged to burnCPU, never listed.
	if _, ok := a.Lookup("time.Now"); ok {
		t.Error("time.Now listed as an attribution target")
	}
	if _, err := GC(p); err != nil {
		t.Error(err)
	}
}

type counter struct {
	mu sync.Mutex
	n  int
}

//go:noinline
func (c *counter) slowInc() {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := time.Now().Add(200 * time.Microsecond)
	for time.Now().Before(end) {
	}
	c.n++
}

// TestRealMutexProfile contends a mutex in this process and checks the
// mutex profile's delta names the function taking the lock.
func TestRealMutexProfile(t *testing.T) {
	prevFrac := runtime.SetMutexProfileFraction(1)
	defer runtime.SetMutexProfileFraction(prevFrac)
	snap := func() *profile.Profile {
		var b bytes.Buffer
		if err := pprof.Lookup("mutex").WriteTo(&b, 0); err != nil {
			t.Fatal(err)
		}
		p, err := Decode(&b, 0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	before := snap()
	var c counter
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c.slowInc()
			}
		})
	}
	wg.Wait()
	after := snap()
	d, err := Delta(before, after)
	if err != nil {
		t.Fatal(err)
	}
	sites, tot, err := LockDelay(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tot <= 0 || len(sites) == 0 {
		t.Fatalf("no mutex delay recorded: %+v", sites)
	}
	const fn = "github.com/chokepoint/chokepoint/internal/profilesum.(*counter).slowInc"
	if sites[0].Function != fn || sites[0].Share < 0.9 {
		t.Errorf("top lock site = %+v, want %s", sites[0], fn)
	}
	if !strings.HasPrefix(sites[0].Via, "sync.(*Mutex).") {
		t.Errorf("via = %q, want sync.(*Mutex).Unlock", sites[0].Via)
	}
}

var retained [][]byte

//go:noinline
func retain(n, size int) {
	for range n {
		retained = append(retained, make([]byte, size))
	}
}

func TestRealHeapAndGoroutines(t *testing.T) {
	prevRate := runtime.MemProfileRate
	runtime.MemProfileRate = 512
	defer func() { runtime.MemProfileRate = prevRate; retained = nil }()
	heap := func() *profile.Profile {
		runtime.GC()
		var b bytes.Buffer
		if err := pprof.Lookup("heap").WriteTo(&b, 0); err != nil {
			t.Fatal(err)
		}
		p, err := Decode(&b, 0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The heap profile publishes a GC cycle late: two GCs between snapshots.
	runtime.GC()
	h0 := heap()
	retain(2000, 4096)
	runtime.GC()
	h1 := heap()
	g, err := HeapGrowthBetween(h0, h1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const fn = "github.com/chokepoint/chokepoint/internal/profilesum.retain"
	if len(g) == 0 || g[0].Function != fn || g[0].Delta < 4<<20 {
		t.Errorf("growth = %+v, want %s first with >= 4 MiB", head(g, 3), fn)
	}

	stop := make(chan struct{})
	var wg, started sync.WaitGroup
	started.Add(20)
	for range 20 {
		wg.Go(func() { parked(&started, stop) })
	}
	started.Wait() // every goroutine is inside parked
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 0); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	p, err := Decode(&b, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Goroutines(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := a.Lookup("github.com/chokepoint/chokepoint/internal/profilesum.parked"); !ok || s.Value != 20 {
		t.Errorf("parked goroutines = %+v (%v); top %+v", s, ok, a.Top(3))
	}
}

//go:noinline
func parked(started *sync.WaitGroup, stop chan struct{}) {
	started.Done()
	<-stop
}

func TestDecodeBounds(t *testing.T) {
	p := synth([]string{"cpu/nanoseconds"}, st(v(1), "main.main"))
	var gz bytes.Buffer
	if err := p.Write(&gz); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if err := p.WriteUncompressed(&raw); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		max     int64
		wantErr error
		ok      bool
	}{
		{name: "gzip", data: gz.Bytes(), ok: true},
		{name: "uncompressed", data: raw.Bytes(), ok: true},
		{name: "compressed over bound", data: gz.Bytes(), max: int64(gz.Len() - 1), wantErr: ErrTooLarge},
		{name: "decompressed over bound", data: gzipOf(t, make([]byte, 1<<20)), max: 64 << 10, wantErr: ErrTooLarge},
		{name: "garbage", data: []byte("not a profile")},
		{name: "empty", data: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(bytes.NewReader(tt.data), tt.max)
			if tt.ok {
				if err != nil || len(got.Sample) != 1 {
					t.Fatalf("Decode = %v, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func gzipOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
