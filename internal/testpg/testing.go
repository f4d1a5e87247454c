package testpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// sharedStartTimeout bounds starting the shared cluster.
const sharedStartTimeout = 2 * time.Minute

// shared is the test binary's one cluster. It is package state on purpose:
// all tests of a binary share one server (a second each is too slow to start
// per test), and Main stops it when they are done.
var shared struct {
	mu      sync.Mutex
	started bool
	c       *Cluster
	err     error
	n       int // databases created, for unique names
}

// Main runs the tests and then stops the binary's shared cluster if one was
// started:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
//
// Without it the cluster still stops when the test binary exits (the
// parent-death signal), and its directory is swept by a later Start.
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	c := shared.c
	shared.c, shared.started = nil, false
	shared.mu.Unlock()
	if c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "testpg: %v\n", err)
		}
	}
	return code
}

// Shared returns the binary's shared cluster, starting it on first use.
// When the server binaries are missing the test is skipped with how to
// install them, or fails when CI=true.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), sharedStartTimeout)
		shared.c, shared.err = Start(ctx, Options{})
		cancel()
	}
	if shared.err != nil {
		skipOrFail(tb, shared.err)
	}
	return shared.c
}

// NewDB creates a fresh database in the shared cluster, drops it when the
// test ends (whether it passed or not), and returns its DSN.
func NewDB(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	shared.mu.Lock()
	shared.n++
	name := dbName(tb.Name(), shared.n)
	shared.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	dsn, err := c.CreateDatabase(ctx, name)
	if err != nil {
		tb.Fatalf("testpg: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			tb.Errorf("testpg: %v", err)
		}
	})
	return dsn
}

// dbName makes a database name from a test name: lower-case letters, digits
// and underscores, short enough for PostgreSQL's 63-byte identifiers.
func dbName(test string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	const keep = 40
	if len(s) > keep {
		s = s[len(s)-keep:]
	}
	return fmt.Sprintf("t%d_%s", n, s)
}

// skipOrFail ends a test that cannot have its database: a failure under CI
// (CI=true), where the binaries must be installed, else a skip.
func skipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("testpg: %v", err)
	}
	if errors.Is(err, ErrUnavailable) {
		tb.Skipf("testpg: %v", err)
	}
	tb.Fatalf("testpg: %v", err)
}
