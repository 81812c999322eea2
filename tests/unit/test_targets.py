"""Target expressions: a table of expansions, a table of errors, and properties."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
import pytest
from ClusterShell.RangeSet import RangeSet, RangeSetException
from hypothesis import given
from hypothesis import strategies as st

import schemas
from schemas import SchemaError, Target, TargetError, check_targets, expand_targets, fold
from schemas.fields import TARGET

INVENTORY = {
    "web": ["web[01-03]"],
    "db": ["db1", "db2"],
    "all": ["@web", "@db"],
    "admins": ["root@web01:2222"],
    "loop": ["@loop2"],
    "loop2": ["@loop"],
    "broken": ["web[1-"],
    "empty": [],
}


def names(exprs: Sequence[str], **kwargs: object) -> list[str]:
    return [str(t) for t in expand_targets(exprs, INVENTORY, **kwargs)]  # type: ignore[arg-type]


EXPANSIONS = [
    (["web01"], ["web01"]),
    (["web[01-03].dc1"], ["web01.dc1", "web02.dc1", "web03.dc1"]),
    (["web[01-20].dc1"], [f"web{i:02d}.dc1" for i in range(1, 21)]),
    (["web[8-11]"], ["web8", "web9", "web10", "web11"]),
    (["web[008-010]"], ["web008", "web009", "web010"]),
    (["n[1-9/4]"], ["n1", "n5", "n9"]),
    (["web[03,01-02]"], ["web01", "web02", "web03"]),  # a bracket's numbers come out sorted
    (["db[1-3,7]-[a,b]"], ["db1-a", "db1-b", "db2-a", "db2-b", "db3-a", "db3-b", "db7-a", "db7-b"]),
    (["rack[1-2]-node[1-2]"], ["rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2"]),
    (["[eu,us]-web[1-2]"], ["eu-web1", "eu-web2", "us-web1", "us-web2"]),
    (["x[a-c]"], ["xa", "xb", "xc"]),
    (["x[c,a]"], ["xc", "xa"]),  # words keep the order given
    (["10.0.0.[1-5]"], ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]),
    (["host:2222"], ["host:2222"]),
    (["user@host"], ["user@host"]),
    (["deploy@web[1-2]:2200"], ["deploy@web1:2200", "deploy@web2:2200"]),
    (["[2001:db8::1]:2222"], ["[2001:db8::1]:2222"]),
    (["2001:DB8:0::1"], ["2001:db8::1"]),  # IPv6 normalised
    (["root@[::1]"], ["root@::1"]),
    (["@web"], ["web01", "web02", "web03"]),
    (["@all"], ["web01", "web02", "web03", "db1", "db2"]),
    (["@admins", "@web"], ["root@web01:2222", "web01", "web02", "web03"]),
    (["web[01-05]", "!web03"], ["web01", "web02", "web04", "web05"]),
    (["web[01-05]!web[02-04]"], ["web01", "web05"]),
    (["web[01-05]", "!@web"], ["web04", "web05"]),
    (["root@web1:22", "web1", "!web1"], []),  # no user/port: matches every user and port
    (["root@web1", "admin@web1", "!root@web1"], ["admin@web1"]),
    (["web1:22", "web1:23", "!web1:23"], ["web1:22"]),
    (["web[1-9]", "&web[5-20]"], ["web5", "web6", "web7", "web8", "web9"]),
    (["@all&db[1-9]"], ["db1", "db2"]),
    (["b", "a", "b", "c,a"], ["b", "a", "c"]),  # de-duplicated, order of first appearance
    (["a", "A"], ["a", "A"]),
    (["!a", "b"], ["b"]),
    (["web1", "!web1", "web1"], ["web1"]),
]


@pytest.mark.parametrize(
    ("exprs", "expected"), EXPANSIONS, ids=[" ".join(e) for e, _ in EXPANSIONS]
)
def test_expansion_table(exprs: list[str], expected: list[str]) -> None:
    assert names(exprs, allow_empty=True) == expected
    check_targets(exprs)  # what expands also passes the decoder's grammar check


ERRORS = [
    ([""], "targets[0]", "is empty"),
    (["web 1"], "targets[0]", "no spaces"),
    (["a^b"], "targets[0]", "symmetric difference is not supported"),
    (["web[1-3"], "targets[0]", "'[' is never closed"),
    (["web1-3]"], "targets[0]", "']' without '['"),
    (["web[[1-3]]"], "targets[0]", "cannot nest"),
    (["web[]"], "targets[0]", "empty item"),
    (["web[1,,2]"], "targets[0]", "empty item"),
    (["web[3-1]"], "targets[0]", "range 3-1 goes backwards"),
    (["web[1-9/0]"], "targets[0]", "step of at least 1"),
    (["web[01-100]"], "targets[0]", "same width"),
    (["web[1-3,x-y-z]"], "targets[0]", "mixes number ranges with words"),
    (["x[c-a]"], "targets[0]", "range c-a goes backwards"),
    (["ok", "a,,b"], "targets[1]", "empty name after ','"),
    ([",a"], "targets[0]", "starts with ','"),
    (["a,"], "targets[0]", "empty name"),
    (["-web"], "targets[0]", "cannot start with '-'"),
    (["web/2"], "targets[0]", "only allowed inside [...]"),
    (["host:0"], "targets[0]", "port '0' must be a number from 1 to 65535"),
    (["host:ssh"], "targets[0]", "port 'ssh' must be a number"),
    (["a@b@c"], "targets[0]", "more than one '@'"),
    (["1user@host"], "targets[0]", "is not a valid user name"),
    (["[2001:db8::zz]:22"], "targets[0]", "is not a valid IPv6 address"),
    (["[::1]x"], "targets[0]", "expected ':port' after ']'"),
    (["10.0.0.[250-256]"], "targets[0]", "'10.0.0.256' is not a valid IPv4 address"),
    (["@"], "targets[0]", "is not a valid group name"),
    (["@src:web"], "targets[0]", "is not a valid group name"),
    (["web1", "@nope"], "targets[1]", "'@nope' is not a group in the inventory"),
    (["@loop"], "targets[0]", "@loop includes itself (@loop → @loop2 → @loop)"),
    (["@broken"], "targets[0]", "in @broken: 'web[1-': '[' is never closed"),
    (["@empty"], "targets", "match no hosts"),
    (["web1", "!web1"], "targets", "match no hosts"),
    (["h" * 300], "targets[0]", "longer than 253 characters"),
    (
        ["n[1-1000000000000]"],
        "targets[0]",
        "expands to 1,000,000,000,000 hosts; the limit per request is 100,000",
    ),
    (["n[1-100]-[1-100]-[1-20]"], "targets[0]", "expands to 200,000 hosts"),
    (["a[1-60000]", "b[1-60000]"], "targets[1]", "takes the targets past 100,000 hosts"),
]


@pytest.mark.parametrize(
    ("exprs", "path", "problem"), ERRORS, ids=[" ".join(e)[:40] for e, _, _ in ERRORS]
)
def test_error_table(exprs: list[str], path: str, problem: str) -> None:
    with pytest.raises(TargetError) as caught:
        expand_targets(exprs, INVENTORY)
    assert caught.value.path == path
    assert problem in caught.value.problem
    assert isinstance(caught.value, SchemaError)
    assert caught.value.rule == "targets"


@pytest.mark.parametrize(
    ("exprs", "path", "problem"), ERRORS, ids=[" ".join(e)[:40] for e, _, _ in ERRORS]
)
def test_decoding_a_request_checks_the_grammar(exprs: list[str], path: str, problem: str) -> None:
    raw = schemas.encode(
        schemas.Request.new(principal="a", command="true", targets=["web01"]), validate=False
    ).replace(b'["web01"]', orjson.dumps(exprs))
    try:
        check_targets(exprs)
    except TargetError as error:
        grammar: TargetError | None = error
    else:
        grammar = None
    if grammar is None:  # needs the inventory, which only the collector has
        assert schemas.decode_request(raw).targets == tuple(exprs)
        return
    with pytest.raises(SchemaError) as caught:
        schemas.decode_request(raw)
    if all(e and TARGET.matches(e) and len(e) <= 1024 for e in exprs):
        assert caught.value.__reduce__() == grammar.__reduce__()
    else:  # the schema file's own pattern or length refuses it first
        assert caught.value.rule in ("pattern", "minLength")


def test_unknown_group_without_inventory() -> None:
    with pytest.raises(TargetError, match="'@web' is not a group in the inventory"):
        expand_targets(["@web"])


def test_groups_from_a_callable() -> None:
    lookup = {"web": ["w[1-2]"]}.get
    assert expand_targets(["@web"], lookup) == [Target("w1"), Target("w2")]


def test_cap_is_checked_before_anything_is_materialised() -> None:
    started = time.perf_counter()
    with pytest.raises(TargetError, match="expands to"):
        expand_targets(["n[0-99999999999999999999]-[0-99999999999999999999]"])
    assert time.perf_counter() - started < 0.1


def test_a_custom_cap_applies() -> None:
    assert len(expand_targets(["n[1-5]"], max_targets=5)) == 5
    with pytest.raises(TargetError, match="the limit per request is 4"):
        expand_targets(["n[1-5]"], max_targets=4)
    with pytest.raises(TargetError, match="the limit per request is 4"):
        check_targets(["n[1-5]"], max_targets=4)


def test_check_targets_accepts_groups_it_cannot_resolve() -> None:
    check_targets(["@anything", "!web[01-05]"])


@pytest.mark.parametrize(
    ("names", "folded"),
    [
        (["web01", "web02", "web03", "web07"], "web[01-03,07]"),
        (["web1.dc1", "web2.dc1", "db1"], "db1,web[1-2].dc1"),
        (["10.0.0.1", "10.0.0.2"], "10.0.0.[1-2]"),
        ([], ""),
    ],
)
def test_fold(names: list[str], folded: str) -> None:
    assert fold(names) == folded


@given(st.sets(st.from_regex(r"[a-z]{1,3}[0-9]{1,3}(\.[a-z]{1,3})?", fullmatch=True), max_size=40))
def test_fold_then_expand_gives_the_same_hosts(hosts: set[str]) -> None:
    folded = fold(hosts)
    if hosts:
        assert {t.name for t in expand_targets([folded])} == hosts


NUMERIC_ITEM = st.one_of(
    st.integers(0, 120).map(str),
    st.tuples(st.integers(0, 120), st.integers(0, 120)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 4)).map(
        lambda t: f"{t[0]}-{t[1]}/{t[2]}"
    ),
    st.tuples(st.integers(0, 9), st.integers(0, 120), st.integers(1, 3)).map(
        lambda t: f"{t[0]:0{t[2]}d}-{t[1]:0{t[2]}d}"
    ),
    st.tuples(st.integers(0, 9), st.integers(10, 120)).map(lambda t: f"0{t[0]}-{t[1]}"),
)


@given(st.lists(NUMERIC_ITEM, min_size=1, max_size=4))
def test_numeric_brackets_agree_with_clustershell(items: list[str]) -> None:
    content = ",".join(items)
    try:
        expected = list(RangeSet(content))
    except RangeSetException:
        expected = None
    try:
        got = [t.name[1:] for t in expand_targets([f"n[{content}]"])]
    except TargetError:
        got = None
    assert (got is None) == (expected is None), content
    if got is not None and expected is not None:
        assert got == expected


@given(st.lists(st.from_regex(r"[a-z]{1,4}[0-9]{0,2}", fullmatch=True), min_size=1, max_size=20))
def test_plain_names_expand_to_themselves_once(hosts: list[str]) -> None:
    assert [t.name for t in expand_targets(hosts)] == list(dict.fromkeys(hosts))
