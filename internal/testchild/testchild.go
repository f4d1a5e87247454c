// Package testchild starts the running test binary again as a child
// process, for tests that need a real process of their own (one to watch in
// /proc, one serving pprof, a proxy and its backend). The child finds its
// role in its environment, from TestMain.
package testchild

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Start runs the test binary (no tests: -test.run=^$) with args and env
// (KEY=VALUE) added to this process's environment, and returns its pid and
// the first line it printed, trimmed: by convention it prints one line when
// it is ready. The child is stopped when the test ends: its stdin is closed
// (a child should exit when it reads EOF there), then it is killed.
func Start(tb testing.TB, args []string, env ...string) (pid int, firstLine string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("child %v: first line %q: %v", env, line, err)
	}
	return cmd.Process.Pid, strings.TrimSpace(line)
}
