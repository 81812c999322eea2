-- fleetrun sink schema 4: who cancelled a request, and why.
--
-- A `completed` status of a cancelled request (or the `rejected` status of one whose cancel came
-- first) carries cancelled_by and cancel_reason; the requests row keeps them, and
-- request_summary shows them (new columns at the end, so the view is replaced in place).

ALTER TABLE requests
    ADD COLUMN cancelled_by text,
    ADD COLUMN cancel_reason text;

CREATE OR REPLACE VIEW request_summary AS
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
       r.last_finished_at - r.first_started_at AS duration,
       q.cancelled_by,
       q.cancel_reason
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
