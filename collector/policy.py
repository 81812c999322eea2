"""The command policy: who may run what, where, and how much (a TOML file the collector loads).

Why a small TOML format of our own and not Cedar (`cedarpy`) or casbin: the decisions fleetrun
needs are few and concrete — a principal (or a group of them), a set of inventory hosts, exact
commands or typed templates, a few numeric limits, env names, target overrides. Cedar could
state them, but the template parameters still need our own typing and rendering, the hosts
still need our own expansion against the inventory (Cedar would only see what we hand it), and
a Cedar refusal by default names no rule, whereas an operator needs "denied by rule X: why".
casbin's model files are a language of their own for the same few checks. A TOML file that
reads like the inventory beside it, checked when the collector starts (a bad file stops the
collector with the line to fix), is less to learn and to audit, and costs microseconds per
request. The format (README, "Command policy"):

    [principals]                       # groups of principals (patterns allowed)
    ops = ["alice", "bob", "ci-*"]

    [templates.restart_service]
    command = "systemctl restart {name}"
    params.name = { one_of = ["nginx", "haproxy"] }

    [[rules]]                          # tried in order; a deny rule that matches ends it,
    name = "ops-demo"                  # the first allow rule that allows the request wins
    principals = ["@ops"]
    targets = ["@demo"]                # the request's hosts must all be among these
    commands = ["uptime"]              # exact command lines ("*": any)
    templates = ["restart_service"]
    max_hosts = 50                     # limits: the request may not ask for more
    max_concurrency = 10               # (a request asking for more runs at this)
    max_timeout_s = 300
    env = ["LANG"]                     # env names a request may set
    overrides = []                     # "user" (user@host), "port" (host:port), "outside_inventory"
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from collector.sshsig import match_patterns
from collector.templates import Template, TemplateError, load_template
from schemas import Request, SchemaError, Target, check_targets, expand_targets

DEFAULT_DENY: Final = "default-deny"
OVERRIDES: Final = frozenset({"user", "port", "outside_inventory"})
_RULE_KEYS: Final = frozenset(
    {"name", "effect", "principals", "targets", "commands", "templates", "max_hosts",
     "max_concurrency", "max_timeout_s", "env", "overrides"}
)  # fmt: skip


class PolicyError(ValueError):
    """The policy file cannot be used: says where and what to fix."""


class Decision(NamedTuple):
    """The policy's answer: allowed or not, the rule that decided, why, and the command line
    to run (the rendered template, or the request's command)."""

    allowed: bool
    rule: str
    reason: str
    command: str | None = None
    concurrency: int | None = None  # lowered to the rule's max_concurrency, when it asked more


@dataclass(frozen=True, slots=True)
class Rule:
    """One [[rules]] entry."""

    name: str
    effect: Literal["allow", "deny"]
    principals: tuple[str, ...]
    targets: tuple[str, ...] | None
    commands: tuple[str, ...] | None
    templates: tuple[str, ...] | None
    max_hosts: int | None
    max_concurrency: int | None
    max_timeout_s: float | None
    env: tuple[str, ...]
    overrides: frozenset[str]


class Policy:
    """The loaded policy; `decide` is pure (no I/O) and cheap (rule targets are expanded once
    per inventory)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        templates: Mapping[str, Template],
        groups: Mapping[str, Sequence[str]],
        path: Path | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.templates = dict(templates)
        self.groups = {name: tuple(members) for name, members in groups.items()}
        self.path = path
        self._hosts: dict[tuple[str, int], frozenset[str]] = {}

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read and check the policy file; PolicyError says where it is wrong."""
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: not TOML: {exc}") from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path | None = None) -> Policy:
        """A policy from the parsed TOML document."""
        where = str(path or "policy")
        unknown = set(data) - {"principals", "templates", "rules"}
        if unknown:
            raise PolicyError(f"{where}: unknown tables {sorted(unknown)}")
        groups = data.get("principals", {})
        if not isinstance(groups, dict) or not all(_strings(v) for v in groups.values()):
            raise PolicyError(f"{where}: [principals] maps group names to lists of principals")
        try:
            templates = {
                name: load_template(name, table, f"{where}: templates.{name}")
                for name, table in data.get("templates", {}).items()
            }
        except TemplateError as exc:
            raise PolicyError(str(exc)) from None
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list) or not raw_rules:
            raise PolicyError(f"{where}: no [[rules]]: every request would be denied")
        rules = [_rule(r, i, where, templates, groups) for i, r in enumerate(raw_rules)]
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise PolicyError(f"{where}: rule names must be unique, got {names}")
        return cls(rules, templates, groups, path)

    def decide(
        self,
        request: Request,
        hosts: Sequence[Target],
        groups: Mapping[str, Sequence[str]],
        inventory_hosts: Collection[str] | None = None,
        allowed: Collection[str] = (),
    ) -> Decision:
        """Whether `request`, whose targets expanded to `hosts`, may run, and by which rule.

        `allowed`: the target overrides the operator allows every request (the collector's
        `allow_targets`); a rule's `overrides` add to them for its principals."""
        rendered: list[str | TemplateError] = []
        first_refusal: tuple[str, str] | None = None
        for rule in self.rules:
            if not self._principal_matches(rule, request.principal):
                continue
            if rule.effect == "deny":
                if self._deny_matches(rule, request, hosts, groups):
                    return Decision(False, rule.name, f"denied by policy rule {rule.name!r}")
                continue
            why = self._refusal(
                rule, request, hosts, groups, inventory_hosts, rendered, frozenset(allowed)
            )
            if why is None:
                command = rendered[0] if rendered else request.command
                assert isinstance(command, str)
                cap = rule.max_concurrency
                concurrency = cap if cap is not None and request.concurrency > cap else None
                reason = f"allowed by policy rule {rule.name!r}"
                return Decision(True, rule.name, reason, command, concurrency)
            first_refusal = first_refusal or (rule.name, why)
        if first_refusal is not None:
            name, why = first_refusal
            return Decision(False, name, f"denied by policy rule {name!r}: {why}")
        return Decision(
            False,
            DEFAULT_DENY,
            f"denied by policy: no rule applies to principal {request.principal!r}",
        )

    def check_groups(self, groups: Mapping[str, Sequence[str]]) -> None:
        """PolicyError when a rule's targets name a group the inventory does not have."""
        for rule in self.rules:
            if rule.targets is not None:
                try:
                    self._allowed_hosts(rule, groups)
                except SchemaError as exc:
                    raise PolicyError(
                        f"{self.path or 'policy'}: rule {rule.name!r}: {exc}"
                    ) from None

    def _principal_matches(self, rule: Rule, principal: str) -> bool:
        patterns: list[str] = []
        for item in rule.principals:
            negated, name = (True, item[1:]) if item.startswith("!") else (False, item)
            members = self.groups.get(name[1:], ()) if name.startswith("@") else (name,)
            patterns += [f"!{m}" if negated else m for m in members]
        return match_patterns(principal, patterns)

    def _allowed_hosts(self, rule: Rule, groups: Mapping[str, Sequence[str]]) -> frozenset[str]:
        assert rule.targets is not None
        key = (rule.name, id(groups))
        names = self._hosts.get(key)
        if names is None:
            expanded = expand_targets(rule.targets, groups, allow_empty=True, path=rule.name)
            names = self._hosts[key] = frozenset(t.name for t in expanded)
        return names

    def _deny_matches(
        self, rule: Rule, request: Request, hosts: Sequence[Target], groups: Mapping[str, Any]
    ) -> bool:
        if rule.targets is not None:
            denied = self._allowed_hosts(rule, groups)
            if not any(h.name in denied for h in hosts):
                return False
        if rule.commands is not None and not _command_listed(rule.commands, request):
            return False
        return rule.templates is None or request.template in rule.templates

    def _refusal(
        self,
        rule: Rule,
        request: Request,
        hosts: Sequence[Target],
        groups: Mapping[str, Sequence[str]],
        inventory_hosts: Collection[str] | None,
        rendered: list[str | TemplateError],
        allowed: frozenset[str],
    ) -> str | None:
        """Why `rule` does not allow the request, or None when it does."""
        if isinstance(request.template, str):
            if request.template not in (rule.templates or ()):
                return f"template {request.template!r} is not allowed"
            if not rendered:
                rendered.append(self._render(request))
            if isinstance(rendered[0], TemplateError):
                return str(rendered[0])
        elif not _command_listed(rule.commands or (), request):
            return f"command {request.command!r} is not allowed"
        if rule.max_hosts is not None and len(hosts) > rule.max_hosts:
            return f"{len(hosts)} hosts, more than max_hosts {rule.max_hosts}"
        if rule.max_timeout_s is not None and request.timeout_s > rule.max_timeout_s:
            return f"timeout_s {request.timeout_s:g} is over max_timeout_s {rule.max_timeout_s:g}"
        refused_env = sorted(set(request.env) - set(rule.env))
        if refused_env:
            allowed_env = ", ".join(rule.env) or "none"
            return f"env {', '.join(refused_env)} not allowed (allowed: {allowed_env})"
        overrides = rule.overrides | allowed
        within = self._allowed_hosts(rule, groups) if rule.targets is not None else None
        for host in hosts:
            if within is not None and host.name not in within:
                return (
                    f"target {host.name!r} is outside the rule's targets {list(rule.targets or ())}"
                )
            if host.user is not None and "user" not in overrides:
                return f"target {host.user}@{host.name}: choosing the login user is not allowed"
            if host.port is not None and "port" not in overrides:
                return f"target {host.name}:{host.port}: choosing the port is not allowed"
            if (
                inventory_hosts is not None
                and host.name not in inventory_hosts
                and "outside_inventory" not in overrides
            ):
                return f"target {host.name!r} is not a host of the inventory"
        return None

    def _render(self, request: Request) -> str | TemplateError:
        assert isinstance(request.template, str)
        template = self.templates.get(request.template)
        if template is None:
            return TemplateError(f"template {request.template!r} is not defined in the policy")
        params = request.params if isinstance(request.params, dict) else {}
        try:
            return template.render(params)
        except TemplateError as exc:
            return exc


def _command_listed(commands: Sequence[str], request: Request) -> bool:
    return isinstance(request.command, str) and ("*" in commands or request.command in commands)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _rule(
    raw: Any,
    index: int,
    where: str,
    templates: Mapping[str, Template],
    groups: Mapping[str, Any],
) -> Rule:
    at = f"{where}: rules[{index}]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{at}: expected a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{at}: unknown keys {sorted(unknown)} (known: {sorted(_RULE_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise PolicyError(f"{at}: every rule needs a name (the audit records it)")
    at = f"{where}: rule {name!r}"
    effect = raw.get("effect", "allow")
    if effect not in ("allow", "deny"):
        raise PolicyError(f"{at}: effect must be allow or deny")

    def strings(key: str, required: bool = False) -> tuple[str, ...] | None:
        value: Any = raw.get(key)
        if value is None and not required:
            return None
        if not _strings(value) or (required and not value):
            raise PolicyError(f"{at}: {key} must be a list of strings")
        return tuple(value)

    def number(key: str, kind: type) -> Any:
        value = raw.get(key)
        if value is not None and (type(value) not in (kind, int) or value <= 0):
            raise PolicyError(f"{at}: {key} must be a positive number")
        return value

    principals = strings("principals", required=True) or ()
    for p in principals:
        if p.lstrip("!").startswith("@") and p.lstrip("!")[1:] not in groups:
            raise PolicyError(f"{at}: {p} is not a group of [principals]")
    listed = strings("templates")
    for t in listed or ():
        if t not in templates:
            raise PolicyError(f"{at}: template {t!r} is not defined in [templates]")
    targets = strings("targets")
    if targets is not None:
        try:
            check_targets(targets, path="targets")
        except SchemaError as exc:
            raise PolicyError(f"{at}: {exc}") from None
    overrides = frozenset(strings("overrides") or ())
    if not overrides <= OVERRIDES:
        raise PolicyError(
            f"{at}: overrides are {sorted(OVERRIDES)}, not {sorted(overrides - OVERRIDES)}"
        )
    return Rule(
        name=name,
        effect=effect,
        principals=principals,
        targets=targets,
        commands=strings("commands"),
        templates=listed,
        max_hosts=number("max_hosts", int),
        max_concurrency=number("max_concurrency", int),
        max_timeout_s=number("max_timeout_s", float),
        env=strings("env") or (),
        overrides=overrides,
    )
