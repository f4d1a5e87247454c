package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/chokepoint/chokepoint/internal/compare"
	"github.com/spf13/cobra"
)

type compareFlags struct {
	failOnRegression bool
	tolCapacity      string
	tolP99           string
	format           string
}

func newCompareCmd(env *Env) *cobra.Command {
	f := &compareFlags{}
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B",
		Short: "Compare two runs with statistics",
		Long: `compare reads two run directories (hunts or load runs; A is before, B after)
and says whether B improved, regressed or did not change significantly:
capacity with its uncertainty (each hunt brackets its capacity between the
highest rate that met the objective and the lowest that did not), p50/p99
per endpoint with a Mann-Whitney U test over one-second windows at matching
rates, and findings resolved, new and remaining. Runs whose targets,
objectives, rates, machines or chokepoint versions differ are flagged, and
called not comparable when the difference decides the result.

With --fail-on-regression it exits 1 when capacity fell by more than
--tolerance-capacity or an endpoint's p99 rose by more than --tolerance-p99
(significantly), or its error rate rose by more than one percentage point.`,
		Example: `  chokepoint compare runs/before runs/after
  chokepoint compare runs/main runs/pr --fail-on-regression --tolerance-p99 15%
  chokepoint compare runs/before runs/after --format markdown > comment.md`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCompare(cmd.Context(), env, f, args[0], args[1])
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.failOnRegression, "fail-on-regression", false, "exit 1 when B regressed beyond the tolerances")
	fl.StringVar(&f.tolCapacity, "tolerance-capacity", fmt.Sprintf("%g%%", compare.DefaultToleranceCapacityPct), "capacity change (percent) taken as no change")
	fl.StringVar(&f.tolP99, "tolerance-p99", fmt.Sprintf("%g%%", compare.DefaultToleranceP99Pct), "p99 change (percent) taken as no change")
	fl.StringVar(&f.format, "format", "text", "text, json or markdown")
	return cmd
}

func runCompare(ctx context.Context, env *Env, f *compareFlags, pathA, pathB string) error {
	switch f.format {
	case "text", "json", "markdown":
	default:
		return Usagef("--format %q: want text, json or markdown", f.format)
	}
	var opt compare.Options
	var err error
	if opt.ToleranceCapacityPct, err = parsePct("--tolerance-capacity", f.tolCapacity); err != nil {
		return err
	}
	if opt.ToleranceP99Pct, err = parsePct("--tolerance-p99", f.tolP99); err != nil {
		return err
	}
	a, err := compare.ReadRun(ctx, pathA)
	if err != nil {
		return readRunErr(ctx, err)
	}
	b, err := compare.ReadRun(ctx, pathB)
	if err != nil {
		return readRunErr(ctx, err)
	}
	res := compare.Compare(a, b, opt)
	var buf bytes.Buffer
	switch f.format {
	case "json":
		err = compare.WriteJSON(&buf, res)
	case "markdown":
		err = compare.WriteMarkdown(&buf, res)
	default:
		err = compare.WriteText(&buf, res)
	}
	if err != nil {
		return Exit(ExitInternal, err)
	}
	if _, err := env.Stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if f.failOnRegression && res.Regression {
		return Exit(ExitThreshold, errors.New("compare: B regressed beyond the tolerances"))
	}
	return nil
}

func readRunErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return Exit(ExitInterrupted, err)
	}
	return Exit(ExitUsage, err)
}

// parsePct reads a percentage: "5", "5%" or "2.5%", zero or more.
func parsePct(flag, s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
	if err != nil || v < 0 || v != v || v > 1e6 {
		return 0, Usagef("%s %q: want a percentage such as 5%%", flag, s)
	}
	return v, nil
}
