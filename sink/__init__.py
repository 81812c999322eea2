"""The sink: batch results from Kafka into PostgreSQL, idempotently, committing after the DB.

sink.app has the entry points: serve(settings) (until a signal), run_sink(settings, stop),
run_migrations(settings); `fleetrun sink` and `fleetrun migrate` are their command lines.
"""
