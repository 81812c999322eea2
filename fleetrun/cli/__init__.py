"""The `fleetrun` command line: a thin front end over the contract, Kafka and PostgreSQL."""
