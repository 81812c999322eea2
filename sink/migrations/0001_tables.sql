-- fleetrun sink schema 1: requests, results (partitioned by time), dead_letters.
-- Applied by `fleetrun migrate` (sink/migrate.py) in one transaction, recorded in
-- schema_migrations with a checksum. Never edit this file once released: add 0003_....sql.

-- One row per request, merged from its status records (accepted, rejected, completed), which
-- may arrive in any order and more than once: the sink's upsert keeps the earliest accept or
-- reject and the latest completion (see sink/rows.py RequestRow.merge).
CREATE TABLE requests (
    request_id        uuid PRIMARY KEY,
    state             text GENERATED ALWAYS AS (
                          CASE WHEN completed_at IS NOT NULL THEN 'completed'
                               WHEN rejected_at IS NOT NULL THEN 'rejected'
                               ELSE 'accepted' END) STORED,
    principal         text,
    command           text,
    targets           text[],
    labels            jsonb,
    submitted_at      timestamptz,
    accepted_at       timestamptz,
    rejected_at       timestamptz,
    reject_reason     text,
    completed_at      timestamptz,
    targets_total     integer,
    duration_ms       bigint,
    count_ok                integer,
    count_failed            integer,
    count_timeout           integer,
    count_unreachable       integer,
    count_auth_failed       integer,
    count_host_key_mismatch integer,
    count_skipped           integer,
    count_expired           integer,
    count_error             integer,
    collector         text,
    first_status_at   timestamptz NOT NULL,
    last_status_at    timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX requests_submitted_at ON requests (submitted_at);
CREATE INDEX requests_principal_submitted_at ON requests (principal, submitted_at);

-- One row per (request_id, host, attempt): every field of fleetrun.result/1.
--
-- Partitioned by RANGE on finished_at, one partition per UTC day by default (sink/periods.py);
-- retention drops whole partitions, which costs nothing like a DELETE of tens of GB.
-- Why finished_at and not started_at: a result exists from the moment its outcome is known;
-- "results of the last hour", the latest result per host and retention are all about when
-- things finished; and a command that ran across midnight is kept as long as its outcome.
--
-- The idempotency key. PostgreSQL only enforces uniqueness on a partitioned table when the key
-- includes the partition column, so the primary key is (request_id, host, attempt, finished_at).
-- That still makes every redelivery harmless: Kafka redelivers the same bytes, so a replayed
-- result has the same finished_at, lands in the same partition and hits this key, and the
-- sink's INSERT ... ON CONFLICT DO NOTHING skips it. Two *different* records with the same
-- (request_id, host, attempt) would only come from a collector breaking the contract (one
-- final result per key); both are kept, and the views take the latest finished_at. To find them:
--   SELECT request_id, host, attempt FROM results GROUP BY 1, 2, 3 HAVING count(*) > 1;
-- The key's leading columns also serve "all results of a request" lookups.
CREATE TABLE results (
    request_id        uuid        NOT NULL,
    host              text        NOT NULL,
    attempt           smallint    NOT NULL CHECK (attempt >= 1),
    finished_at       timestamptz NOT NULL,
    port              integer     NOT NULL,
    ssh_user          text        NOT NULL,  -- the contract's "user" (a reserved word in SQL)
    status            text        NOT NULL CHECK (status IN ('ok', 'failed', 'timeout',
                          'unreachable', 'auth_failed', 'host_key_mismatch', 'skipped',
                          'expired', 'error')),
    exit_status       bigint,                -- uint32 on the wire
    exit_signal       text,
    -- Output as the contract writes it: text when the bytes are UTF-8 without NUL, else base64
    -- (say which in *_encoding). decode(stdout, stdout_encoding) gives the captured bytes.
    stdout            text        NOT NULL,
    stdout_encoding   text        NOT NULL CHECK (stdout_encoding IN ('utf-8', 'base64')),
    stderr            text        NOT NULL,
    stderr_encoding   text        NOT NULL CHECK (stderr_encoding IN ('utf-8', 'base64')),
    stdout_bytes      bigint      NOT NULL,  -- size of the whole stream, kept or not
    stderr_bytes      bigint      NOT NULL,
    stdout_truncated  boolean     NOT NULL,
    stderr_truncated  boolean     NOT NULL,
    stdout_sha256     text        NOT NULL,  -- of the whole stream: equal digests, equal output
    stderr_sha256     text        NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       bigint      NOT NULL,
    error_type        text,
    error_message     text,
    collector         text        NOT NULL,
    labels            jsonb       NOT NULL DEFAULT '{}',
    kafka_partition   integer     NOT NULL,  -- where the sink read it, for tracing
    kafka_offset      bigint      NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT results_pkey PRIMARY KEY (request_id, host, attempt, finished_at)
) PARTITION BY RANGE (finished_at);
CREATE INDEX results_host_finished_at ON results (host, finished_at DESC);
CREATE INDEX results_status_finished_at ON results (status, finished_at DESC);

-- Records the sink could not store, byte for byte, with why (also on the <prefix>dlq topic).
-- One row per source record: a redelivered poison record is not stored twice.
CREATE TABLE dead_letters (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    source_timestamp  timestamptz,
    request_id        uuid,                  -- when it could be read from the record
    key               bytea,
    value             bytea,
    error_type        text        NOT NULL,
    error_message     text        NOT NULL,
    stage             text        NOT NULL,
    instance          text        NOT NULL,
    dead_at           timestamptz NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_source UNIQUE (source_topic, source_partition, source_offset)
);
CREATE INDEX dead_letters_request_id ON dead_letters (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX dead_letters_dead_at ON dead_letters (dead_at);
