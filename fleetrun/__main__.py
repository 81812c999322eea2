"""`python -m fleetrun …`: the same as the `fleetrun` command."""

from fleetrun.cli.main import main

main()
