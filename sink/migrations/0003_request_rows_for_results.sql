-- fleetrun sink schema 3: every request with stored results has a requests row, and the
-- per-request summary is driven by `requests`, so it stays cheap on a big results table.
--
-- Status records can lag behind results, or be dead-lettered; until now such a request was
-- found only by scanning results. The sink now also inserts a bare requests row for each
-- request it stores results for (ON CONFLICT DO NOTHING); the status upsert fills it in
-- later. A bare row has no state yet (NULL) and no status times.

DROP VIEW request_summary;

ALTER TABLE requests DROP COLUMN state;
ALTER TABLE requests ADD COLUMN state text GENERATED ALWAYS AS (
    CASE WHEN completed_at IS NOT NULL THEN 'completed'
         WHEN rejected_at IS NOT NULL THEN 'rejected'
         WHEN accepted_at IS NOT NULL THEN 'accepted' END) STORED;
ALTER TABLE requests
    ALTER COLUMN first_status_at DROP NOT NULL,
    ALTER COLUMN last_status_at DROP NOT NULL;

INSERT INTO requests (request_id)
SELECT DISTINCT request_id FROM results
ON CONFLICT (request_id) DO NOTHING;

-- "The latest requests first" (fleetrun requests) reads this index and summarises only the
-- requests it lists.
CREATE INDEX requests_submitted_at_desc ON requests (submitted_at DESC NULLS LAST);

-- Per request: what its status records say, and what its stored results add up to.
-- hosts_missing > 0 means results are still in flight (or were dead-lettered: see
-- dead_letters WHERE request_id = ...). duration is first start to last finish.
-- Filter it (WHERE request_id = ...) or page it (ORDER BY submitted_at DESC LIMIT n): the
-- results of each listed request are then read through the results key only.
CREATE VIEW request_summary AS
SELECT q.request_id,
       q.state,
       q.principal,
       q.command,
       q.targets,
       q.labels,
       q.submitted_at,
       q.accepted_at,
       q.rejected_at,
       q.reject_reason,
       q.completed_at,
       q.targets_total,
       r.hosts_reported,
       q.targets_total - r.hosts_reported AS hosts_missing,
       r.ok,
       r.failed,
       r.timeout,
       r.unreachable,
       r.auth_failed,
       r.host_key_mismatch,
       r.skipped,
       r.expired,
       r.error,
       r.first_started_at,
       r.last_finished_at,
       r.last_finished_at - r.first_started_at AS duration
FROM requests AS q
CROSS JOIN LATERAL (
    SELECT count(*)                                            AS hosts_reported,
           count(*) FILTER (WHERE status = 'ok')                AS ok,
           count(*) FILTER (WHERE status = 'failed')            AS failed,
           count(*) FILTER (WHERE status = 'timeout')           AS timeout,
           count(*) FILTER (WHERE status = 'unreachable')       AS unreachable,
           count(*) FILTER (WHERE status = 'auth_failed')       AS auth_failed,
           count(*) FILTER (WHERE status = 'host_key_mismatch') AS host_key_mismatch,
           count(*) FILTER (WHERE status = 'skipped')           AS skipped,
           count(*) FILTER (WHERE status = 'expired')           AS expired,
           count(*) FILTER (WHERE status = 'error')             AS error,
           min(started_at)                                     AS first_started_at,
           max(finished_at)                                    AS last_finished_at
    FROM final_results AS f
    WHERE f.request_id = q.request_id
) AS r;
