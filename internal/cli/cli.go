// Package cli wires chokepoint's commands: flags in, library calls, an exit
// status out. All process state enters through Env, so the whole CLI runs
// in-process in tests.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses (CONTRACT.md §1).
const (
	ExitOK          = 0
	ExitThreshold   = 1 // thresholds or regression gates failed
	ExitUsage       = 2 // bad usage or input
	ExitUnreachable = 3 // the target could not be reached at all
	ExitInternal    = 4
	ExitInterrupted = 130
)

// Env is the process state a command may use.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable; nil means none is set (main
	// passes os.Getenv).
	Getenv func(string) string
	// Interactive reports whether Stderr is a terminal (live progress is
	// drawn only then).
	Interactive bool
}

// ExitError carries an exit status with the error that caused it.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with an exit status.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// Usagef is a bad-usage error (exit 2).
func Usagef(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Run runs chokepoint with args (without the program name) and returns the
// exit status.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	root := newRoot(&env)
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitInternal
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.Code
	case isCobraUsage(err):
		code = ExitUsage
	}
	if ee == nil || ee.Err != nil {
		fmt.Fprintf(env.Stderr, "chokepoint: %s\n", oneLine(err.Error()))
	}
	return code
}

// isCobraUsage recognises the errors cobra returns for bad flags and args.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "unknown command", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "bad flag syntax", "required flag"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func newRoot(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "chokepoint",
		Short: "Find what limits a backend service, and prove the fix",
		Long: `chokepoint load-tests a service until its objective breaks, watches every
source it can reach while it does (the process, the Go runtime, Prometheus
metrics, PostgreSQL, OpenTelemetry traces), names the principal bottleneck
with its evidence and fix, and compares runs before and after the fix.`,
		Example: `  chokepoint demo
  chokepoint hunt http://127.0.0.1:8080/orders --postgres "$DATABASE_URL"
  chokepoint load http://127.0.0.1:8080/ --rate 500 --duration 30s
  chokepoint compare runs/before runs/after --fail-on-regression`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Exit(ExitUsage, err) })
	root.AddCommand(
		newVersionCmd(env),
		newLoadCmd(env),
		newHuntCmd(env),
		newCompareCmd(env),
		newReportCmd(env),
		newAnalyzeCmd(env),
		newDemoCmd(env),
	)
	return root
}
