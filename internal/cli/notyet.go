package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// errNotYet answers commands that are planned but not built.
var errNotYet = errors.New("not yet available in this version")

func notYet(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short + " (not yet available)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Exit(ExitUsage, errors.New(cmd.Name()+": "+errNotYet.Error()))
		},
	}
}

func newAnalyzeCmd(env *Env) *cobra.Command {
	return notYet("analyze logs|traces|profile|postgres", "Diagnose from offline evidence")
}
