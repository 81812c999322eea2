"""The environment deny-list: the names the contract refuses, the same in the codec, the schema
file and schemas.environment, and the allow-list a policy may add (narrowing only)."""

from __future__ import annotations

import re

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import fields
from schemas.environment import (
    DENIED_ENV_PATTERN,
    DENIED_NAMES,
    DENIED_PREFIXES,
    env_denied,
    env_refusal,
    refused_env,
)
from tests.support.records import make_request


def _request(env: dict[str, str]) -> schemas.Request:
    return schemas.Request.new(principal="alice", command="true", targets=["web1"], env=env)


DENIED = [
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "BASH_ENV", "ENV",
    "PATH", "IFS", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "PYTHONPATH",
    "PYTHONSTARTUP", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS",
    "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "GCONV_PATH", "HOSTALIASES", "LOCALDOMAIN",
    "RES_OPTIONS", "MALLOC_CHECK_", "GLIBC_TUNABLES", "SSH_AUTH_SOCK", "SSH_ASKPASS",
    "SUDO_ASKPASS", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "OPENSSL_CONF", "LESSOPEN",
]  # fmt: skip
ALLOWED = [
    "LANG", "LC_ALL", "TZ", "TMPDIR", "HOME_DIR", "DEPLOY_ID", "NODE_ENV", "MYPATH", "PATH_2",
    "PATHS", "ENVIRONMENT", "XLD_PRELOAD", "GIT_AUTHOR_NAME", "LD", "SSH", "_",
]  # fmt: skip


@pytest.mark.parametrize("name", DENIED)
def test_names_that_change_how_programs_load_or_start_are_refused(name: str) -> None:
    assert env_denied(name)
    with pytest.raises(schemas.SchemaError) as caught:
        _request(env={"LANG": "C", name: "x"})
    assert (caught.value.path, caught.value.rule) == (f"env.{name}", "not")
    assert str(caught.value).startswith(
        f"env.{name}: changes how programs load or start and is not allowed in a request"
    )


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_names_pass(name: str) -> None:
    assert not env_denied(name)
    assert _request(env={name: "x"}).env == {name: "x"}


def test_the_schema_file_refuses_the_same_names() -> None:
    validator = jsonschema.Draft202012Validator(schemas.load_schema("request"))
    base = schemas.as_document(make_request())
    for name in DENIED:
        errors = list(validator.iter_errors(base | {"env": {name: "x"}}))
        assert [e.validator for e in errors] == ["not"], name
    for name in ALLOWED:
        assert validator.is_valid(base | {"env": {name: "x"}}), name


def test_the_codec_marker_the_module_and_the_lists_agree() -> None:
    assert fields.ENV_NOT_DENIED.source == DENIED_ENV_PATTERN
    assert all(env_denied(prefix) and env_denied(prefix + "X_1") for prefix in DENIED_PREFIXES)
    assert all(env_denied(name) for name in DENIED_NAMES)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True))
def test_the_marker_is_the_negation_of_the_ecma_pattern(name: str) -> None:
    # ECMA-262 `$` is end of input; with names that cannot hold a newline, re.search agrees.
    denied = re.search(DENIED_ENV_PATTERN, name) is not None
    assert fields.ENV_NOT_DENIED.matches(name) is not denied
    assert fields.ENV_NOT_DENIED.matches(name) is not denied  # the second time, from the cache
    assert env_denied(name) is denied


def test_a_policy_allow_list_narrows_but_cannot_let_a_denied_name_through() -> None:
    env = {"LANG": "C", "DEPLOY_ID": "7"}
    assert refused_env(env) is None
    assert refused_env(env, allowed={"LANG", "DEPLOY_ID"}) is None
    assert refused_env(env, allowed={"LANG"}) == "DEPLOY_ID"
    assert env_refusal("DEPLOY_ID", {"LANG"}) == (
        "env.DEPLOY_ID: is not on this request's allow-list (allowed: LANG)"
    )
    assert refused_env({"LD_PRELOAD": "x"}, allowed={"LD_PRELOAD"}) == "LD_PRELOAD"
    assert env_refusal("LD_PRELOAD").startswith(
        "env.LD_PRELOAD: changes how programs load or start and is not allowed in a request"
    )
