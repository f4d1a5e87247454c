package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/spf13/cobra"
)

type reportFlags struct {
	format string
	out    string
}

func newReportCmd(env *Env) *cobra.Command {
	f := &reportFlags{}
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Render a run's report again",
		Long: `report renders the report of a finished (or interrupted) hunt from its run
directory alone: report.json, and for --format html also timeline.jsonl and
the CPU profile of the saturated step. Nothing is sent to the target.`,
		Example: `  chokepoint report chokepoint-runs/20260101T120000Z
  chokepoint report runs/before --format markdown > comment.md
  chokepoint report runs/before --format html --out before.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), env, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "text", "text, json, markdown or html")
	fl.StringVar(&f.out, "out", "", "write to FILE instead of stdout")
	return cmd
}

func runReport(ctx context.Context, env *Env, f *reportFlags, dirPath string) error {
	switch f.format {
	case "text", "json", "markdown", "html":
	default:
		return Usagef("--format %q: want text, json, markdown or html", f.format)
	}
	rep, err := readRunReport(dirPath)
	if err != nil {
		return Exit(ExitUsage, err)
	}
	if err := ctx.Err(); err != nil {
		return Exit(ExitInterrupted, err)
	}
	var b bytes.Buffer
	switch f.format {
	case "json":
		err = report.WriteJSON(&b, rep)
	case "markdown":
		err = report.WriteMarkdown(&b, rep)
	case "html":
		opt, lerr := report.LoadHTMLInputs(dirPath, rep)
		if lerr != nil {
			return Exit(ExitUsage, fmt.Errorf("%s: %w", dirPath, lerr))
		}
		err = report.WriteHTML(&b, rep, opt)
	default:
		err = report.WriteText(&b, rep)
	}
	if err != nil {
		return Exit(ExitInternal, err)
	}
	if f.out == "" {
		_, err = env.Stdout.Write(b.Bytes())
		return err
	}
	if err := run.WriteFileAtomic(f.out, b.Bytes()); err != nil {
		return Exit(ExitUsage, fmt.Errorf("--out %s: %w", f.out, err))
	}
	return nil
}

// readRunReport reads RUN_DIR/report.json; its errors name the path.
func readRunReport(dirPath string) (*report.Report, error) {
	st, err := os.Stat(dirPath)
	if err != nil {
		return nil, fmt.Errorf("%s: not a run directory: %w", dirPath, unwrapPath(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a run directory", dirPath)
	}
	path := filepath.Join(dirPath, run.ReportFile)
	rep, err := report.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, lerr := os.Stat(filepath.Join(dirPath, load.SummaryFile)); lerr == nil {
			return nil, fmt.Errorf("%s: no %s: a load run has no report (its summary is %s)", dirPath, run.ReportFile, load.SummaryFile)
		}
		return nil, fmt.Errorf("%s: no %s: not a hunt's run directory", dirPath, run.ReportFile)
	}
	if err != nil {
		return nil, unwrapPath(err)
	}
	return rep, nil
}

// unwrapPath drops *fs.PathError's own path (the caller names it once).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Err != nil && err == error(pe) {
		return pe.Err
	}
	return err
}
