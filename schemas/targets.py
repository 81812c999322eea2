"""Target expressions: which hosts a request runs on.

Grammar (one request's `targets` list reads as one expression, left to right):

    element  := [op] term (op term)*          op: "," union, "!" remove, "&" keep only
    term     := "@" group | [user "@"] host [":" port]
    host     := name with [ranges] | "[" IPv6 "]" | IPv6
    ranges   := "[" item ("," item)* "]"      item: 7 | 1-20 | 01-20 | 1-20/2 | word | a-c

`web[01-20].dc1` keeps zero padding, `db[1-3,7]-[a,b]` takes the cartesian product (leftmost
bracket slowest), `!web05` removes earlier matches (a term without user or port matches every
user and port), `@web` resolves through the collector's inventory. The result is de-duplicated in
order of first appearance and never larger than `max_targets`: sizes are computed from the
brackets before anything is materialised, so `h[1-1000000000]` fails fast instead of eating RAM.

ClusterShell's RangeSet expands each numeric bracket (padding, steps, lists) and NodeSet folds
names back for display. We do the product and the operators ourselves because NodeSet has no
alphabetic lists (`[a,b]`), treats `@` as its own group syntax (so `user@host` cannot pass
through it) and does not know ports.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ClusterShell.NodeSet import NodeSet
from ClusterShell.RangeSet import RangeSet, RangeSetException

from schemas import limits
from schemas.errors import SchemaError

GroupSource = Mapping[str, Sequence[str]] | Callable[[str], Sequence[str] | None]

_BAD_CHAR = re.compile(r"[^A-Za-z0-9_.,:@!&\[\]/-]")
_GROUP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_LITERAL = re.compile(r"[A-Za-z0-9_.-]*\Z")
_NUMERIC_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+)(?:/([0-9]+))?)?\Z")
_WORD_ITEM = re.compile(r"[A-Za-z0-9_]+\Z")
_LETTER_RANGE = re.compile(r"([a-z]-[a-z]|[A-Z]-[A-Z])\Z")
_DOTTED_QUAD = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\Z")
_MAX_GROUP_DEPTH = 16


class TargetError(SchemaError):
    """A target expression is malformed, names an unknown group, or expands too far."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem, "targets")


@dataclass(frozen=True, slots=True)
class Target:
    """One host to run on; user and port are None when the collector's configuration decides."""

    name: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.name}]" if ":" in self.name and self.port is not None else self.name
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True, slots=True)
class _Term:
    op: str  # "," | "!" | "&"
    text: str
    group: str | None = None
    segments: tuple[str | tuple[str, ...], ...] = ()  # literal text, or a bracket's content
    user: str | None = None
    port: int | None = None


class _Fail(Exception):
    """A problem with one expression; the caller adds the path."""


class _Cycle(_Fail):
    """A group that includes itself; the message already shows the whole chain."""


def check_targets(
    exprs: Sequence[str], *, max_targets: int = limits.MAX_TARGETS, path: str = "targets"
) -> None:
    """Check the grammar and size bounds of target expressions without resolving groups."""
    for i, expr in enumerate(exprs):
        try:
            for _ in _parse(expr, max_targets):
                pass
        except _Fail as exc:
            raise TargetError(f"{path}[{i}]", str(exc)) from None


def expand_targets(
    exprs: Sequence[str],
    groups: GroupSource | None = None,
    max_targets: int = limits.MAX_TARGETS,
    *,
    allow_empty: bool = False,
    path: str = "targets",
) -> list[Target]:
    """Expand target expressions into de-duplicated hosts in order of first appearance."""
    acc: dict[Target, None] = {}
    for i, expr in enumerate(exprs):
        try:
            _apply(acc, expr, groups, max_targets, stack=())
        except _Fail as exc:
            raise TargetError(f"{path}[{i}]", str(exc)) from None
    if not acc and not allow_empty:
        raise TargetError(path, "match no hosts (everything was excluded or the groups are empty)")
    return list(acc)


def fold(names: Iterable[str]) -> str:
    """Fold host names into a compact node set for display, e.g. `web[01-03,07]`."""
    return str(NodeSet.fromlist(list(names)))


def _apply(
    acc: dict[Target, None],
    expr: str,
    groups: GroupSource | None,
    max_targets: int,
    stack: tuple[str, ...],
) -> None:
    for term in _parse(expr, max_targets):
        found = _materialise(term, groups, max_targets, stack)
        if term.op == ",":
            for target in found:
                acc[target] = None
            if len(acc) > max_targets:
                raise _Fail(
                    f"{term.text!r} takes the targets past {max_targets:,} hosts, "
                    "the limit per request; split the request"
                )
        else:
            keys = {(t.name, t.user, t.port) for t in found}

            def matches(t: Target, keys: set[tuple[str, str | None, int | None]] = keys) -> bool:
                return not keys.isdisjoint(
                    (
                        (t.name, t.user, t.port),
                        (t.name, None, None),
                        (t.name, t.user, None),
                        (t.name, None, t.port),
                    )
                )

            keep = [t for t in acc if matches(t) == (term.op == "&")]
            acc.clear()
            acc.update(dict.fromkeys(keep))


def _materialise(
    term: _Term, groups: GroupSource | None, max_targets: int, stack: tuple[str, ...]
) -> list[Target]:
    if term.group is not None:
        return _group(term.group, groups, max_targets, stack)
    values = [_bracket_values(seg) if isinstance(seg, tuple) else (seg,) for seg in term.segments]
    out = []
    for parts in itertools.product(*values):
        name = "".join(parts)
        _check_name(name)
        out.append(Target(name, term.user, term.port))
    return out


def _group(
    name: str, groups: GroupSource | None, max_targets: int, stack: tuple[str, ...]
) -> list[Target]:
    if name in stack:
        raise _Cycle(
            f"@{name} includes itself (" + " → ".join(f"@{g}" for g in (*stack, name)) + ")"
        )
    if len(stack) >= _MAX_GROUP_DEPTH:
        raise _Fail(f"@{name}: groups nest deeper than {_MAX_GROUP_DEPTH} levels")
    members: Sequence[str] | None = None
    if callable(groups):
        members = groups(name)
    elif groups is not None:
        members = groups.get(name)
    if members is None:
        raise _Fail(f"'@{name}' is not a group in the inventory")
    acc: dict[Target, None] = {}
    for member in members:
        try:
            _apply(acc, member, groups, max_targets, stack=(*stack, name))
        except _Cycle:
            raise
        except _Fail as exc:
            message = str(exc)
            if message.startswith("in @"):  # nested: show the chain, outermost first
                raise _Fail(f"in @{name} → {message[3:]}") from None
            raise _Fail(f"in @{name}: {message}") from None
    return list(acc)


def _parse(expr: str, max_targets: int) -> Iterator[_Term]:
    if not expr:
        raise _Fail("is empty")
    bad = _BAD_CHAR.search(expr)
    if bad is not None:
        ch = bad.group()
        hint = " (symmetric difference is not supported)" if ch == "^" else ""
        if ch.isspace():
            hint = " (no spaces: separate hosts with ',')"
        raise _Fail(f"{expr!r}: {ch!r} is not allowed in a target expression{hint}")
    for op, text in _split(expr):
        yield _term(op, text, max_targets)


def _split(expr: str) -> Iterator[tuple[str, str]]:
    depth = 0
    op = ","
    start = 0
    if expr[0] in "!&":
        op, start = expr[0], 1
    elif expr[0] == ",":
        raise _Fail(f"{expr!r} starts with ','")
    for pos in range(start, len(expr) + 1):
        ch = expr[pos] if pos < len(expr) else None
        if ch == "[":
            if depth:
                raise _Fail(f"{expr!r}: brackets cannot nest")
            depth = 1
        elif ch == "]":
            if not depth:
                raise _Fail(f"{expr!r}: ']' without '['")
            depth = 0
        elif ch is None or (ch in ",!&" and not depth):
            if ch is None and depth:
                raise _Fail(f"{expr!r}: '[' is never closed")
            text = expr[start:pos]
            if not text:
                raise _Fail(f"{expr!r}: empty name after {op!r}")
            yield op, text
            if ch is not None:
                op, start = ch, pos + 1


def _term(op: str, text: str, max_targets: int) -> _Term:
    if text.startswith("@"):
        name = text[1:]
        if not _GROUP.match(name):
            raise _Fail(f"{text!r} is not a valid group name (letters, digits, _ . -)")
        return _Term(op, text, group=name)
    user = None
    rest = text
    if "@" in text:
        user, rest = text.split("@", 1)
        if not _USER.match(user) or len(user) > limits.MAX_USER_CHARS:
            raise _Fail(f"{text!r}: {user!r} is not a valid user name")
        if "@" in rest:
            raise _Fail(f"{text!r} has more than one '@'")
    host, port = _split_port(rest, text)
    if host.startswith("[") and ":" in host:
        return _Term(op, text, segments=(_ipv6(host[1:-1], text),), user=user, port=port)
    if host.count(":") >= 2:
        return _Term(op, text, segments=(_ipv6(host, text),), user=user, port=port)
    segments = _segments(host, text)
    size = 1
    for seg in segments:
        if isinstance(seg, tuple):
            size *= _bracket_size(seg, text)
    if size > max_targets:
        raise _Fail(f"{text!r} expands to {size:,} hosts; the limit per request is {max_targets:,}")
    return _Term(op, text, segments=segments, user=user, port=port)


def _split_port(rest: str, text: str) -> tuple[str, int | None]:
    if rest.startswith("[") and "]" in rest and ":" in rest[: rest.index("]")]:
        close = rest.index("]")
        host, tail = rest[: close + 1], rest[close + 1 :]
        if not tail:
            return host, None
        if not tail.startswith(":"):
            raise _Fail(f"{text!r}: expected ':port' after ']'")
        return host, _port(tail[1:], text)
    if rest.count(":") == 1:
        host, port_text = rest.split(":")
        return host, _port(port_text, text)
    return rest, None


def _port(port_text: str, text: str) -> int:
    if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
        raise _Fail(f"{text!r}: port {port_text!r} must be a number from 1 to 65535")
    return int(port_text)


def _ipv6(address: str, text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(address))
    except ValueError:
        raise _Fail(f"{text!r}: {address!r} is not a valid IPv6 address") from None


def _segments(host: str, text: str) -> tuple[str | tuple[str, ...], ...]:
    if not host:
        raise _Fail(f"{text!r} has no host name")
    if host[0] in "-.":
        raise _Fail(f"{text!r}: a host name cannot start with {host[0]!r}")
    out: list[str | tuple[str, ...]] = []
    for piece in re.split(r"(\[[^\]]*\])", host):
        if piece.startswith("["):
            items = tuple(piece[1:-1].split(","))
            if any(not item for item in items):
                raise _Fail(f"{text!r}: empty item in {piece}")
            out.append(items)
        elif piece:
            if not _LITERAL.match(piece):
                bad = next(ch for ch in piece if not _LITERAL.match(ch))
                raise _Fail(f"{text!r}: {bad!r} is only allowed inside [...] ranges")
            out.append(piece)
    return tuple(out)


def _bracket_size(items: tuple[str, ...], text: str) -> int:
    if all(_NUMERIC_ITEM.match(item) for item in items):
        return sum(_numeric_size(item, text) for item in items)
    size = 0
    for item in items:
        if _LETTER_RANGE.match(item):
            if item[0] > item[2]:
                raise _Fail(f"{text!r}: range {item} goes backwards")
            size += ord(item[2]) - ord(item[0]) + 1
        elif _WORD_ITEM.match(item):
            size += 1
        else:
            raise _Fail(
                f"{text!r}: [{','.join(items)}] mixes number ranges with words; "
                "use either numbers (1-5, 01-20, 1-9/2) or words and letters (a,b, a-c)"
            )
    return size


def _numeric_size(item: str, text: str) -> int:
    m = _NUMERIC_ITEM.match(item)
    assert m is not None
    lo, hi, step = m.group(1), m.group(2), m.group(3)
    if hi is None:
        return 1
    if int(hi) < int(lo):
        raise _Fail(f"{text!r}: range {item} goes backwards")
    if step is not None and int(step) < 1:
        raise _Fail(f"{text!r}: range {item} needs a step of at least 1")
    if len(lo) > 1 and lo.startswith("0") and len(hi) != len(lo):
        # ClusterShell's rule: a zero-padded range keeps one width (01-99, 001-100).
        raise _Fail(f"{text!r}: padded range {item} must have bounds of the same width")
    return (int(hi) - int(lo)) // int(step or 1) + 1


def _bracket_values(items: tuple[str, ...]) -> tuple[str, ...]:
    if all(_NUMERIC_ITEM.match(item) for item in items):
        try:
            return tuple(RangeSet(",".join(items)))
        except RangeSetException as exc:
            raise _Fail(f"[{','.join(items)}]: {exc}") from None
    values: list[str] = []
    for item in items:
        if _LETTER_RANGE.match(item):
            values.extend(chr(c) for c in range(ord(item[0]), ord(item[2]) + 1))
        else:
            values.append(item)
    return tuple(dict.fromkeys(values))


def _check_name(name: str) -> None:
    if len(name) > limits.MAX_HOST_CHARS:
        raise _Fail(f"host name {name[:40]!r}… is longer than {limits.MAX_HOST_CHARS} characters")
    if ":" not in name and _DOTTED_QUAD.match(name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise _Fail(f"{name!r} is not a valid IPv4 address") from None
