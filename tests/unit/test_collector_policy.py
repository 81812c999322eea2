"""The command policy: rules table by table, templates with typed parameters, shell quoting."""

from __future__ import annotations

import shlex
import tomllib
from typing import Any

import msgspec
import pytest

from collector.policy import DEFAULT_DENY, Policy, PolicyError
from collector.templates import TemplateError, load_template
from schemas import Request, Target, expand_targets

POLICY = """
[principals]
ops = ["alice", "ops-*", "!ops-intern"]

[templates.restart_service]
command = "systemctl restart {name}"
params.name = { one_of = ["nginx", "haproxy"] }

[templates.tail_log]
command = "tail -n {lines} {path}"
params.path = { glob = "/var/log/*.log" }
params.lines = { int = [1, 1000] }

[templates.say]
command = "echo {words}"
params.words = { pattern = ".*" }

[[rules]]
name = "no-db-on-fridays"
effect = "deny"
principals = ["ops-bob"]
targets = ["db[1-2]"]

[[rules]]
name = "ops-web"
principals = ["@ops"]
targets = ["@web"]
commands = ["uptime", "uname -r"]
templates = ["restart_service", "tail_log", "say"]
max_hosts = 3
max_concurrency = 10
max_timeout_s = 120
env = ["LANG"]

[[rules]]
name = "root-anything"
principals = ["root@ops"]
commands = ["*"]
overrides = ["user", "port", "outside_inventory"]
"""
GROUPS = {"web": ["web[1-4]"], "db": ["db[1-2]"]}
INVENTORY_HOSTS = {"web1", "web2", "web3", "web4", "db1", "db2"}
P = Policy.parse(tomllib.loads(POLICY))


def _request(principal: str = "alice", **fields: Any) -> Request:
    fields.setdefault("targets", ("web[1-2]",))
    if "template" not in fields:
        fields.setdefault("command", "uptime")
    return Request.new(principal=principal, **fields)


def _decide(request: Request) -> tuple[bool, str, str, str | None]:
    """allowed, rule, reason, command (the rule's caps lowered what the request asked)."""
    hosts = expand_targets(request.targets, GROUPS)
    decision = P.decide(request, hosts, GROUPS, INVENTORY_HOSTS)
    return decision.allowed, decision.rule, decision.reason, decision.command


def test_an_allowed_command() -> None:
    assert _decide(_request()) == (True, "ops-web", "allowed by policy rule 'ops-web'", "uptime")


@pytest.mark.parametrize(
    ("request_fields", "rule", "why"),
    [
        ({"command": "rm -rf /"}, "ops-web", "command 'rm -rf /' is not allowed"),
        ({"targets": ("web[1-4]",)}, "ops-web", "4 hosts, more than max_hosts 3"),
        ({"timeout_s": 600}, "ops-web", "timeout_s 600 is over max_timeout_s 120"),
        ({"env": {"DEBUG_LEVEL": "9"}}, "ops-web", "env DEBUG_LEVEL not allowed"),
        ({"targets": ("db1",)}, "ops-web", "target 'db1' is outside the rule's targets"),
        ({"targets": ("root@web1",)}, "ops-web", "choosing the login user is not allowed"),
        ({"targets": ("web1:22",)}, "ops-web", "choosing the port is not allowed"),
        ({"template": "tail_log", "params": {"lines": "5"}}, "ops-web", "path is missing"),
        ({"principal": "mallory"}, DEFAULT_DENY, "no rule applies to principal 'mallory'"),
        ({"principal": "ops-intern"}, DEFAULT_DENY, "no rule applies"),
        ({"principal": "ops-bob", "targets": ("db1",)}, "no-db-on-fridays", "'no-db-on-fridays'"),
    ],
)
def test_denials_name_the_rule_and_why(request_fields: dict[str, Any], rule: str, why: str) -> None:
    allowed, decided_by, reason, _ = _decide(_request(**request_fields))
    assert not allowed
    assert decided_by == rule
    assert why in reason


def test_concurrency_is_lowered_to_the_rules_cap() -> None:
    request = _request(concurrency=50)
    decision = P.decide(request, expand_targets(request.targets, GROUPS), GROUPS, INVENTORY_HOSTS)
    assert (decision.allowed, decision.concurrency) == (True, 10)
    request = _request(concurrency=5)
    decision = P.decide(request, expand_targets(request.targets, GROUPS), GROUPS, INVENTORY_HOSTS)
    assert (decision.allowed, decision.concurrency) == (True, None)


def test_overrides_are_per_rule() -> None:
    request = _request("root@ops", targets=("admin@10.9.9.9:2222",), command="id")
    assert _decide(request)[:2] == (True, "root-anything")


def test_the_operators_overrides_add_to_every_rules() -> None:
    request = _request(targets=("web1:2222",))
    hosts = expand_targets(request.targets, GROUPS)
    refused = P.decide(request, hosts, GROUPS, INVENTORY_HOSTS)
    assert (refused.allowed, refused.rule) == (False, "ops-web")
    assert "choosing the port is not allowed" in refused.reason
    allowed = P.decide(request, hosts, GROUPS, INVENTORY_HOSTS, allowed=("port",))
    assert (allowed.allowed, allowed.rule) == (True, "ops-web")


@pytest.mark.parametrize(
    ("template", "params", "command"),
    [
        ("restart_service", {"name": "nginx"}, "systemctl restart nginx"),
        (
            "tail_log",
            {"path": "/var/log/syslog.log", "lines": "050"},
            "tail -n 50 /var/log/syslog.log",
        ),
        # A value its type lets through is still one word for the shell.
        ("say", {"words": "nginx; touch /tmp/x"}, "echo 'nginx; touch /tmp/x'"),
        ("say", {"words": "$(id) `id` 'q'"}, "echo " + shlex.quote("$(id) `id` 'q'")),
    ],
)
def test_templates_render_quoted(template: str, params: dict[str, str], command: str) -> None:
    allowed, rule, _, rendered = _decide(_request(template=template, params=params))
    assert (allowed, rule, rendered) == (True, "ops-web", command)
    if template == "say":  # the shell reads the value back as one word, unchanged
        assert shlex.split(command)[1:] == [params["words"]]


@pytest.mark.parametrize(
    ("template", "params", "problem"),
    [
        ("restart_service", {"name": "nginx; touch /tmp/x"}, "is not one of nginx|haproxy"),
        ("restart_service", {"name": "nginx", "extra": "1"}, "has no parameter extra"),
        ("tail_log", {"path": "/var/log/../../etc/shadow.log", "lines": "5"}, "'..' segment"),
        ("tail_log", {"path": "/var/log/a/b.log", "lines": "5"}, "does not match glob"),
        ("tail_log", {"path": "/var/log/x.log", "lines": "1001"}, "not an integer in 1..1000"),
        ("tail_log", {"path": "/var/log/x.log", "lines": "-1"}, "not an integer"),
        ("tail_log", {"path": "/var/log/x.log", "lines": "1e3"}, "not an integer"),
        ("tail_log", {"path": "/var/log/x.log", "lines": "\uff15"}, "not an integer"),
        ("nope", {}, "template 'nope' is not allowed"),
    ],
)
def test_template_parameters_are_typed(template: str, params: dict[str, str], problem: str) -> None:
    allowed, rule, reason, _ = _decide(_request(template=template, params=params))
    assert not allowed
    assert rule == "ops-web"
    assert problem in reason


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"command": "x {a}"}, "placeholders ['a'] and declared params [] differ"),
        ({"command": "x {a!r}", "params": {"a": {"one_of": ["b"]}}}, "no ! or :"),
        ({"command": "x {a}", "params": {"a": {"int": [1]}}}, "is not one_of"),
        ({"command": "x {a}", "params": {"a": {"one_of": ["b"], "int": [1, 2]}}}, "exactly one"),
        ({"params": {}}, "needs command"),
    ],
)
def test_bad_templates_are_refused_at_load(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(TemplateError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_template("t", table, "policy")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no \\[\\[rules\\]\\]"),
        ('[[rules]]\nprincipals = ["a"]', "needs a name"),
        ('[[rules]]\nname = "r"\nprincipals = ["@nope"]', "@nope is not a group"),
        ('[[rules]]\nname = "r"\nprincipals = ["a"]\ntemplates = ["t"]', "'t' is not defined"),
        ('[[rules]]\nname = "r"\nprincipals = ["a"]\nmax_hosts = -1', "positive number"),
        ('[[rules]]\nname = "r"\nprincipals = ["a"]\noverrides = ["all"]', "overrides are"),
        ('[[rules]]\nname = "r"\nprincipals = ["a"]\ntargets = ["web[1-"]', "targets"),
        ('[[rules]]\nname = "r"\nprincipals = ["a"]\ncommand = ["x"]', "unknown keys"),
        ('[rule]\nname = "r"', "unknown tables"),
    ],
)
def test_bad_policy_files_say_what_to_fix(text: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        Policy.parse(tomllib.loads(text))


def test_rule_targets_must_name_inventory_groups() -> None:
    policy = Policy.parse(
        tomllib.loads('[[rules]]\nname = "r"\nprincipals = ["a"]\ntargets = ["@x"]')
    )
    with pytest.raises(PolicyError, match="rule 'r'"):
        policy.check_groups(GROUPS)


def test_a_template_request_reaching_a_rule_without_templates_is_denied() -> None:
    request = msgspec.structs.replace(
        _request("root@ops", command="id"), command=msgspec.UNSET, template="say", params={}
    )
    hosts = [Target("web1")]
    decision = P.decide(request, hosts, GROUPS, INVENTORY_HOSTS)
    assert (decision.allowed, decision.rule) == (False, "root-anything")
