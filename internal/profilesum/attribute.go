package profilesum

import (
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// Options says which code is the application's.
//
// A function is application code unless it is in the standard library (its
// package path's first element has no dot, except main), the runtime, or a
// package under one of LibraryPrefixes; AppPrefixes overrides both, for
// modules without a dot in their path or a library under study.
// The zero value uses DefaultLibraryPrefixes.
type Options struct {
	AppPrefixes     []string
	LibraryPrefixes []string // nil means DefaultLibraryPrefixes()
}

// DefaultLibraryPrefixes returns the third-party libraries whose frames are
// charged to their application caller: drivers, RPC and telemetry stacks,
// routers, loggers and encoders common in Go services.
func DefaultLibraryPrefixes() []string {
	return []string{
		"github.com/jackc/", "github.com/lib/pq", "github.com/go-sql-driver/",
		"github.com/jmoiron/sqlx", "gorm.io/", "github.com/uptrace/bun",
		"github.com/redis/", "github.com/go-redis/", "github.com/bradfitz/gomemcache",
		"google.golang.org/", "go.opentelemetry.io/", "golang.org/x/",
		"github.com/prometheus/", "github.com/grpc-ecosystem/", "github.com/golang/protobuf",
		"github.com/gorilla/", "github.com/go-chi/", "github.com/gin-gonic/",
		"github.com/labstack/", "github.com/julienschmidt/httprouter", "github.com/valyala/",
		"github.com/gofiber/", "go.uber.org/", "github.com/sirupsen/logrus", "github.com/rs/zerolog",
		"github.com/json-iterator/", "github.com/goccy/", "github.com/bytedance/sonic",
		"gopkg.in/", "go.yaml.in/", "github.com/google/", "github.com/klauspost/",
		"github.com/cespare/xxhash", "github.com/felixge/", "github.com/mattn/",
		"modernc.org/", "github.com/aws/", "cloud.google.com/go", "k8s.io/",
	}
}

// PackagePath returns the import path of a function as Go's profiles print
// it: "net/http" for "net/http.(*conn).serve", "main" for "main.main.func1".
func PackagePath(fn string) string {
	if fn == NoFunction {
		return ""
	}
	// Cut at the receiver or type parameters: "pkg/path.(*T).M", "pkg.F[...]".
	if i := strings.IndexAny(fn, "([ "); i >= 0 {
		fn = fn[:i]
	}
	slash := strings.LastIndexByte(fn, '/')
	if dot := strings.IndexByte(fn[slash+1:], '.'); dot >= 0 {
		return fn[:slash+1+dot]
	}
	return fn
}

// TrimWrapper removes the suffix of a compiler-generated wrapper
// (".deferwrap1" for `defer mu.Unlock()`, ".gowrap2" for `go f(x)`, "-fm"
// for a method value such as `http.HandlerFunc(s.search)`), so the cost is
// charged to the function the programmer wrote.
func TrimWrapper(fn string) string {
	fn = strings.TrimSuffix(fn, "-fm")
	for {
		i := strings.LastIndexByte(fn, '.')
		if i < 0 {
			return fn
		}
		suffix := fn[i+1:]
		rest, ok := strings.CutPrefix(suffix, "deferwrap")
		if !ok {
			rest, ok = strings.CutPrefix(suffix, "gowrap")
		}
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" {
			return fn
		}
		fn = fn[:i]
	}
}

// IsStandard reports whether a function is in Go's standard library or
// runtime (its package path's first element has no dot; main excepted).
func IsStandard(fn string) bool {
	pkg := PackagePath(fn)
	if pkg == "main" || pkg == "command-line-arguments" || fn == NoFunction {
		return false
	}
	first, _, _ := strings.Cut(pkg, "/")
	return !strings.Contains(first, ".")
}

// IsApplication reports whether a function is the application's own code.
func (o Options) IsApplication(fn string) bool {
	if fn == NoFunction || fn == "" {
		return false
	}
	for _, p := range o.AppPrefixes {
		if p != "" && strings.HasPrefix(fn, p) {
			return true
		}
	}
	if IsStandard(fn) {
		return false
	}
	libs := o.LibraryPrefixes
	if libs == nil {
		libs = DefaultLibraryPrefixes()
	}
	for _, p := range libs {
		if p != "" && strings.HasPrefix(fn, p) {
			return false
		}
	}
	return true
}

// Share is one function's part of a sample type's total.
type Share struct {
	Function string  `json:"function"`
	Value    int64   `json:"value"`
	Share    float64 `json:"share"` // of the profile's total, 0..1
	// Application is false for stacks with no application frame, which are
	// charged to their outermost frame (runtime.gcBgMarkWorker,
	// net/http.(*conn).serve, ...).
	Application bool `json:"application"`
}

// Attribution is a profile's cost charged to application functions.
type Attribution struct {
	SampleType string  `json:"sample_type"`
	Total      int64   `json:"total"`
	Shares     []Share `json:"shares"` // highest first
}

// Lookup returns a function's share.
func (a Attribution) Lookup(fn string) (Share, bool) {
	for _, s := range a.Shares {
		if s.Function == fn {
			return s, true
		}
	}
	return Share{}, false
}

// Top returns the n largest shares (all if n <= 0).
func (a Attribution) Top(n int) []Share { return head(a.Shares, n) }

// TopApplication returns the largest share charged to an application
// function, and false when no sample had an application frame.
func (a Attribution) TopApplication() (Share, bool) {
	for _, s := range a.Shares {
		if s.Application {
			return s, true
		}
	}
	return Share{}, false
}

// appFrame returns the innermost application frame of a stack and the frame
// it called (the library or runtime function where the cost was spent, ""
// when the cost is in the application frame itself). A stack without an
// application frame is charged to its outermost frame.
func (o Options) appFrame(fs []string) (fn, callee string, app bool) {
	for i, f := range fs {
		if o.IsApplication(f) {
			if i > 0 {
				callee = fs[i-1]
			}
			return TrimWrapper(f), callee, true
		}
	}
	if len(fs) == 0 {
		return NoFunction, "", false
	}
	return fs[len(fs)-1], "", false
}

// Attribute charges each sample's value of a sample type to the innermost
// application frame on its stack: time spent in the runtime, the standard
// library or a third-party library counts for the application function that
// called into it.
func Attribute(p *profile.Profile, sampleType string, o Options) (Attribution, error) {
	i, err := SampleIndex(p, sampleType)
	if err != nil {
		return Attribution{}, err
	}
	type acc struct {
		v   int64
		app bool
	}
	by := map[string]*acc{}
	var tot int64
	for s, v := range values(p, i) {
		tot += v
		fn, _, app := o.appFrame(frames(s))
		a := by[fn]
		if a == nil {
			a = &acc{app: app}
			by[fn] = a
		}
		a.v += v
	}
	out := Attribution{SampleType: p.SampleType[i].Type, Total: tot}
	for fn, a := range by {
		out.Shares = append(out.Shares, Share{Function: fn, Value: a.v, Share: share(a.v, tot), Application: a.app})
	}
	sortShares(out.Shares)
	return out, nil
}

func sortShares(s []Share) {
	sort.SliceStable(s, func(a, b int) bool {
		if s[a].Value != s[b].Value {
			return s[a].Value > s[b].Value
		}
		return s[a].Function < s[b].Function
	})
}
