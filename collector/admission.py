"""Admission: may this request run? Signature, freshness, then the policy — before anything runs.

Two steps, around the ledger (collector.handler): `verify` before anything else (a record that
fails it never reaches the ledger), `authorize` once the targets are expanded (the policy
judges hosts, not spellings). Either raises `Refused`, which the handler turns into a
`rejected` status (with the audit fields) and a dead letter; nothing runs.

- A signed request is verified against the allowed-signers file over its canonical bytes
  (schemas.signing), for its own `principal`, and a new one must be fresh (`check_fresh`, once
  the ledger says it is new): `submitted_at` within `signature_window_s` of the collector's
  clock; the ledger's one-run-per-id does the rest of replay protection.
- With a policy or `require_signatures`, an unsigned request is refused.
- The policy (collector.policy) names the rule that allowed or denied; a template request is
  rendered here, so everything after sees an ordinary request with its command.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson
from msgspec import UNSET

from collector.confine import OVERRIDES, Override
from collector.fanout import H, Plan
from collector.policy import Policy
from collector.settings import CollectorSettings
from collector.sshsig import AllowedSigners, Signature, SignatureError
from schemas import (
    SIGNATURE_NAMESPACE,
    Audit,
    Request,
    SchemaError,
    canonical_bytes,
    decode_request,
    expand_targets,
    parse_timestamp,
)

log = logging.getLogger("fleetrun.collector")

UNVERIFIED: Final = Audit(verified=False)
_SIGNED_FIELDS: Final = tuple(f for f in Request.__struct_fields__ if f != "signature")


class Refused(Exception):
    """The request may not run: `str()` is the reason, `audit` what was learnt on the way,
    `why` its kind for the metrics (unsigned, signature, stale, policy)."""

    def __init__(self, reason: str, audit: Audit, why: str = "policy") -> None:
        super().__init__(reason)
        self.audit = audit
        self.why = why


class Admission:
    """The collector's admission checks, built once from its settings."""

    def __init__(
        self,
        *,
        signers: AllowedSigners | None = None,
        policy: Policy | None = None,
        require_signatures: bool = False,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signers = signers
        self.policy = policy
        self.require_signatures = require_signatures or policy is not None
        self.window_s = window_s
        self.clock = clock
        self._names: tuple[Any, frozenset[str]] | None = None
        self._reload: _Reload | None = None

    @classmethod
    def from_settings(
        cls, settings: CollectorSettings, groups: Mapping[str, Sequence[str]]
    ) -> Admission:
        """Load the allowed-signers and policy files the settings name (ValueError/OSError when
        one is unusable: the collector does not start with a policy it cannot read)."""
        signers = (
            AllowedSigners.load(settings.allowed_signers) if settings.allowed_signers else None
        )
        policy = Policy.load(settings.policy) if settings.policy else None
        if policy is not None:
            policy.check_groups(groups)
        if (policy is not None or settings.require_signatures) and signers is None:
            raise ValueError(
                "a policy or require_signatures needs FLEETRUN_COLLECTOR_ALLOWED_SIGNERS "
                "(an OpenSSH allowed-signers file) to verify requests against"
            )
        admission = cls(
            signers=signers,
            policy=policy,
            require_signatures=settings.require_signatures,
            window_s=settings.signature_window_s,
        )
        admission._reload = _Reload(settings.allowed_signers, settings.policy, groups)
        return admission

    def refresh(self) -> None:
        """Pick up edited allowed-signers and policy files (checked every few seconds): keys
        rotate and rules change without a restart. A file that no longer loads is logged and
        the previous version kept."""
        if self._reload is None:
            return
        loaded = self._reload.changed()
        if loaded is not None:
            self.signers = loaded[0] or self.signers
            self.policy = loaded[1] or self.policy

    def verify(self, raw: bytes | None, request: Request) -> Audit:
        """The request's signature; Refused when it may not go further (freshness comes once
        the ledger says the request is new: `check_fresh`)."""
        self.refresh()
        signature = request.signature
        if not isinstance(signature, str):
            if self.require_signatures:
                raise Refused(
                    "unsigned request: this collector accepts only requests signed with an "
                    "allowed key (signature: ssh-keygen -Y sign -n fleetrun over the canonical "
                    "bytes, schemas/README.md)",
                    UNVERIFIED,
                    "unsigned",
                )
            return UNVERIFIED
        try:
            parsed = Signature.parse(signature)
        except SignatureError as exc:
            raise Refused(f"signature refused: {exc}", UNVERIFIED, "signature") from None
        audit = Audit(key_fingerprint=parsed.fingerprint, verified=False)
        if self.signers is None:
            if self.require_signatures:  # never trust a principal no key vouched for
                raise Refused(
                    "signature refused: no allowed signers to verify against", audit, "signature"
                )
            return audit  # nothing to verify against, and nothing requires it
        try:
            document = orjson.loads(raw or b"")
            message = canonical_bytes(document)
            fingerprint = self.signers.verify(
                parsed, message, request.principal, SIGNATURE_NAMESPACE
            )
            # What was verified must be what runs: decoded again from the canonical bytes, the
            # request must be the same (duplicate member names read differently by different
            # JSON parsers are the way to make them differ).
            verified = decode_request(message)
        except (SignatureError, SchemaError, orjson.JSONDecodeError) as exc:
            raise Refused(f"signature refused: {exc}", audit, "signature") from None
        if any(getattr(verified, f) != getattr(request, f) for f in _SIGNED_FIELDS):
            raise Refused(
                "signature refused: the request reads differently from what was signed "
                "(duplicate member names?)",
                audit,
                "signature",
            )
        return Audit(key_fingerprint=fingerprint, verified=True)

    def planning_overrides(
        self, allowed: Collection[Override], resolver: Any
    ) -> Collection[Override]:
        """The target overrides a request is planned with. Without a policy, the operator's
        (`allow_targets`). With one, every override the policy can check: a rule may allow
        more for its principals, and `authorize` refuses what neither allows — except targets
        outside the inventory when the resolver cannot list its hosts (nothing to check)."""
        if self.policy is None:
            return allowed
        if self._known_names(resolver) is None:
            return frozenset(allowed) | (frozenset(OVERRIDES) - {"outside_inventory"})
        return OVERRIDES

    def authorize(
        self, plan: Plan[H], audit: Audit, resolver: Any, allowed: Collection[Override] = ()
    ) -> tuple[Plan[H], Audit]:
        """The policy's decision on the expanded request; a template request comes back
        rendered. Refused names the rule that denied it. `allowed`: the operator's overrides
        (a rule's own add to them)."""
        request = plan.request
        if self.policy is None:
            if isinstance(request.template, str):
                raise Refused(
                    f"template {request.template!r}: this collector has no policy, so it has "
                    "no templates (FLEETRUN_COLLECTOR_POLICY)",
                    audit,
                )
            return plan, audit
        groups: Mapping[str, Sequence[str]] = resolver.groups
        try:
            decision = self.policy.decide(
                request,
                [h.target for h in plan.hosts],
                groups,
                self._known_names(resolver),
                allowed,
            )
        except Exception as exc:  # a bug must deny, never allow nor stop the collector
            log.exception("policy could not decide", extra={"request_id": request.request_id})
            raise Refused(f"denied: the policy could not decide ({exc})", audit) from None
        audit = msgspec.structs.replace(audit, policy_rule=decision.rule)
        if not decision.allowed:
            raise Refused(decision.reason, audit)
        changes: dict[str, Any] = {}
        if isinstance(request.template, str) and decision.command is not None:
            # From here on an ordinary request with its command; the audit keeps the template.
            changes |= {"command": decision.command, "template": UNSET, "params": UNSET}
            params = request.params if isinstance(request.params, dict) else {}
            audit = msgspec.structs.replace(audit, template=request.template, params=params)
        if decision.concurrency is not None:
            changes["concurrency"] = decision.concurrency
        if changes:
            plan = dataclasses.replace(plan, request=msgspec.structs.replace(request, **changes))
        return plan, audit

    def _known_names(self, resolver: Any) -> Collection[str] | None:
        """The names the inventory knows: its hosts and every member of its groups (once per
        inventory); None when the resolver does not list its hosts."""
        hosts: Collection[str] | None = getattr(resolver, "hosts", None)
        if hosts is None:
            return None
        if self._names is None or self._names[0] is not resolver:
            groups = resolver.groups
            members = expand_targets([f"@{g}" for g in groups], groups, allow_empty=True)
            self._names = (resolver, frozenset(hosts) | {t.name for t in members})
        return self._names[1]

    def check_fresh(self, request: Request, audit: Audit) -> None:
        """A verified request must be new: `submitted_at` within the window of the clock.

        Called for requests the ledger has not seen (not for a duplicate or a request resumed
        from an earlier owner, which were fresh when first admitted: refusing them later would
        leave an accepted request without its completed status)."""
        if not audit.verified:
            return
        skew = self.clock() - parse_timestamp(request.submitted_at).timestamp()
        if abs(skew) > self.window_s:
            when = "in the past" if skew > 0 else "in the future"
            raise Refused(
                f"stale request: submitted_at {request.submitted_at} is {abs(skew):.0f} s {when}; "
                f"signed requests must be within {self.window_s:g} s of the collector's clock",
                audit,
                "stale",
            )


class _Reload:
    """Reloads the files when their modification time or size changes."""

    INTERVAL_S: Final = 2.0

    def __init__(
        self, signers: Path | None, policy: Path | None, groups: Mapping[str, Sequence[str]]
    ) -> None:
        self.signers, self.policy, self.groups = signers, policy, groups
        self.seen = self._stamps()
        self.next_check = time.monotonic() + self.INTERVAL_S

    def _stamps(self) -> tuple[tuple[int, int] | None, ...]:
        out = []
        for path in (self.signers, self.policy):
            try:
                st = path.stat() if path is not None else None
            except OSError:
                st = None
            out.append(None if st is None else (st.st_mtime_ns, st.st_size))
        return tuple(out)

    def changed(self) -> tuple[AllowedSigners | None, Policy | None] | None:
        """The reloaded (signers, policy) — None for a file unchanged — or None."""
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + self.INTERVAL_S
        stamps = self._stamps()
        if stamps == self.seen:
            return None
        try:
            signers = (
                AllowedSigners.load(self.signers)
                if self.signers is not None and stamps[0] != self.seen[0]
                else None
            )
            policy = None
            if self.policy is not None and stamps[1] != self.seen[1]:
                policy = Policy.load(self.policy)
                policy.check_groups(self.groups)
        except (ValueError, OSError) as exc:
            log.error("policy or allowed signers not reloaded; the previous ones stay",
                      extra={"error": str(exc)})  # fmt: skip
            self.seen = stamps  # said once per edit, not every few seconds
            return None
        self.seen = stamps
        log.info("policy or allowed signers reloaded",
                 extra={"signers": signers is not None, "policy": policy is not None})  # fmt: skip
        return signers, policy
