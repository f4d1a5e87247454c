package load

import (
	"testing"

	"github.com/chokepoint/chokepoint/internal/scenario"
)

// urls is a plain-URL source for tests.
func urls(tb testing.TB, u ...string) *scenario.Scenario {
	tb.Helper()
	s, err := scenario.FromURLs(u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
