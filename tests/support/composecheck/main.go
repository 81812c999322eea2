// composecheck loads a Compose file with compose-spec/compose-go (the loader `docker compose`
// itself uses), which validates it against the Compose specification, and prints the resolved
// project as JSON for the Python tests to inspect. It needs no Docker engine.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck docker-compose.yml")
		os.Exit(2)
	}
	// "*" activates every profile, so services behind one (the CLI) are checked too.
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithName("fleetrun"), cli.WithProfiles([]string{"*"}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, _ = os.Stdout.Write(out)
}
