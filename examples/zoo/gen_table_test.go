package zoo

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestReadmeTableMatchesModes checks README.md's ground-truth table is
// Modes(); with ZOO_PRINT_TABLE=1 it prints the table to paste there.
func TestReadmeTableMatchesModes(t *testing.T) {
	var b strings.Builder
	b.WriteString("| mode | endpoint | function | query | table (columns) | downstream | resource, limit | fix |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range Modes() {
		l := m.Truth
		code := func(s string) string {
			if s == "" {
				return ""
			}
			return "`" + s + "`"
		}
		tc := code(l.Table)
		if len(l.Columns) > 0 {
			tc += " (" + code(strings.Join(l.Columns, ", ")) + ")"
		}
		rl := l.Resource
		if l.Limit > 0 {
			rl += fmt.Sprintf(", %d", l.Limit)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | %s |\n", m.Name, code(l.Endpoint), code(l.Function),
			code(l.Query), tc, code(l.Downstream), rl, m.Fix)
	}
	if os.Getenv("ZOO_PRINT_TABLE") == "1" {
		t.Log("\n" + b.String())
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if !strings.Contains(string(readme), line+"\n") {
			t.Errorf("README.md lacks the row\n%s", line)
		}
	}
}
