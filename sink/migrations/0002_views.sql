-- fleetrun sink schema 2: views for the common questions. Each is meant to be filtered
-- (WHERE request_id = ... or WHERE host = ...); the filters reach the indexes through the views.

-- The final result of each (request, host): a higher attempt supersedes a lower one.
CREATE VIEW final_results AS
SELECT DISTINCT ON (request_id, host) *
FROM results
ORDER BY request_id, host, attempt DESC, finished_at DESC;

-- Per request: what its status records say, and what its stored results add up to.
-- hosts_missing > 0 means results are still in flight (or were dead-lettered: see
-- dead_letters WHERE request_id = ...). duration is first start to last finish.
CREATE VIEW request_summary AS
SELECT ids.request_id,
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
       coalesce(r.hosts_reported, 0)                     AS hosts_reported,
       q.targets_total - coalesce(r.hosts_reported, 0)   AS hosts_missing,
       coalesce(r.ok, 0)                AS ok,
       coalesce(r.failed, 0)            AS failed,
       coalesce(r.timeout, 0)           AS timeout,
       coalesce(r.unreachable, 0)       AS unreachable,
       coalesce(r.auth_failed, 0)       AS auth_failed,
       coalesce(r.host_key_mismatch, 0) AS host_key_mismatch,
       coalesce(r.skipped, 0)           AS skipped,
       coalesce(r.expired, 0)           AS expired,
       coalesce(r.error, 0)             AS error,
       r.first_started_at,
       r.last_finished_at,
       r.last_finished_at - r.first_started_at AS duration
FROM (SELECT request_id FROM requests UNION SELECT request_id FROM results) AS ids
LEFT JOIN requests AS q ON q.request_id = ids.request_id
LEFT JOIN (
    SELECT request_id,
           count(*)                                            AS hosts_reported,
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
    FROM final_results
    GROUP BY request_id
) AS r ON r.request_id = ids.request_id;

-- The most recent result of every host, whatever the request.
CREATE VIEW host_latest_result AS
SELECT DISTINCT ON (host) *
FROM results
ORDER BY host, finished_at DESC, attempt DESC;

-- Hosts of a request grouped by identical outcome and output (like clubak): one row per
-- distinct (status, exit, stdout digest, stderr digest), with the sorted host list and the
-- output of one of them (digests are of the whole streams, so equal digests, equal output).
CREATE VIEW request_output_groups AS
SELECT g.request_id,
       g.status,
       g.exit_status,
       g.exit_signal,
       g.stdout_sha256,
       g.stderr_sha256,
       g.host_count,
       g.hosts,
       g.sample_host,
       s.stdout            AS sample_stdout,
       s.stdout_encoding   AS sample_stdout_encoding,
       s.stdout_truncated  AS sample_stdout_truncated,
       s.stdout_bytes      AS sample_stdout_bytes,
       s.stderr            AS sample_stderr,
       s.stderr_encoding   AS sample_stderr_encoding,
       s.stderr_truncated  AS sample_stderr_truncated,
       s.stderr_bytes      AS sample_stderr_bytes
FROM (
    SELECT request_id, status, exit_status, exit_signal, stdout_sha256, stderr_sha256,
           count(*)                      AS host_count,
           array_agg(host ORDER BY host) AS hosts,
           min(host)                     AS sample_host
    FROM final_results
    GROUP BY request_id, status, exit_status, exit_signal, stdout_sha256, stderr_sha256
) AS g
CROSS JOIN LATERAL (
    SELECT f.stdout, f.stdout_encoding, f.stdout_truncated, f.stdout_bytes,
           f.stderr, f.stderr_encoding, f.stderr_truncated, f.stderr_bytes
    FROM final_results AS f
    WHERE f.request_id = g.request_id AND f.host = g.sample_host
) AS s;
