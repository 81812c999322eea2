-- fleetrun sink schema 6: the audit of every admission decision (issue 14, item 8).
--
-- accepted and rejected statuses carry how the collector decided: the signing key's
-- fingerprint, whether the signature verified, the policy rule that allowed or denied, and the
-- template asked for with its parameters. Rejected requests have rows too (rejected_at,
-- reject_reason, principal, command, targets), so "who tried what, and why was it refused" is
-- one query on requests. Numbered 6 and independent of 5 (roles): it only adds columns and an
-- index, and touches no object another migration creates.

ALTER TABLE requests
    ADD COLUMN key_fingerprint text,
    ADD COLUMN verified boolean,
    ADD COLUMN policy_rule text,
    ADD COLUMN template text,
    ADD COLUMN params jsonb;

-- Refusals by principal, newest first: the question an incident starts with.
CREATE INDEX requests_rejected_principal ON requests (principal, rejected_at)
    WHERE rejected_at IS NOT NULL;
