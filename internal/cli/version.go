package cli

import (
	"fmt"

	"github.com/chokepoint/chokepoint/internal/version"
	"github.com/spf13/cobra"
)

func newVersionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print chokepoint's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(env.Stdout, "chokepoint %s (%s)\n", version.String(), version.Go())
			return err
		},
	}
}
