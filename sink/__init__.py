"""The sink: batch results from Kafka into PostgreSQL, idempotently, committing after the DB."""
