"""One frozen settings object per service, built at the edge from env + TOML (+ CLI overrides).

Each service declares a frozen dataclass whose fields carry their documentation:

    @dataclass(frozen=True, slots=True)
    class CollectorSettings:
        max_sessions: int = setting(500, "Global cap on concurrent SSH sessions.")
        pg_dsn: str = setting("", "PostgreSQL DSN.", secret=True)

and builds it once with `load(CollectorSettings, section="collector")`. Sources, lowest first:
field defaults < the local stack's env file (development convenience, only when present and no
other env file is named) < an env file named by FLEETRUN_ENV_FILE < a TOML file named by
FLEETRUN_CONFIG (top-level keys, then its `[<section>]` table) < process environment
(FLEETRUN_<FIELD>) < explicit overrides (CLI flags). `describe()` renders the result with the
source of every value and secrets masked, for `--show-config`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "FLEETRUN_"
T = TypeVar("T")


def default_instance_id() -> str:
    """hostname-pid: unique per process, readable in results, dead letters and logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(Exception):
    """A setting has a value that cannot be used; the message names it and where it came from."""

    retriable = False


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    """A settings field with its one-line documentation; secrets never appear in repr or logs."""
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for sequence defaults: settings are immutable")
    return dataclasses.field(
        default=default, repr=not secret, metadata={"help": help, "secret": secret}
    )


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value came from, for --show-config and error messages."""

    kind: str  # "default" | "env file" | "config file" | "environment" | "override"
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.where}".strip()


def load(
    cls: type[T],
    *,
    section: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build `cls` from every source; raise SettingsError naming the bad value and its source."""
    return load_with_sources(cls, section=section, environ=environ, overrides=overrides)[0]


def load_with_sources(
    cls: type[T],
    *,
    section: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[T, dict[str, Source]]:
    """Like `load`, also returning where each field's value came from."""
    values, sources = _collect(cls, section, os.environ if environ is None else environ)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = Source("override", "(command line)")
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        if f.name in values:
            kwargs[f.name] = _coerce(f.name, hints[f.name], values[f.name], sources[f.name])
    obj = cls(**kwargs)
    return obj, {f.name: sources.get(f.name, Source("default")) for f in _fields(obj)}


def _fields(obj_or_cls: Any) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(obj_or_cls)


def env_name(field_name: str) -> str:
    """The environment variable that sets `field_name`."""
    return ENV_PREFIX + field_name.upper()


def _collect(
    cls: type[Any], section: str, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Source]]:
    names = {f.name for f in _fields(cls)}
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}

    def take(items: Mapping[str, Any], source: Source) -> None:
        for key, value in items.items():
            if key in names:
                values[key] = value
                sources[key] = source

    for env_file in _env_files(environ):
        take(_env_to_fields(read_env_file(env_file)), Source("env file", str(env_file)))
    config = environ.get(ENV_PREFIX + "CONFIG")
    if config:
        data = _read_toml(Path(config))
        top = {k: v for k, v in data.items() if not isinstance(v, dict)}
        take(top, Source("config file", config))
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise SettingsError(f"{config}: [{section}] must be a table")
        unknown = sorted(set(table) - names)
        if unknown:
            raise SettingsError(
                f"{config}: [{section}] has unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        take(table, Source("config file", f"{config} [{section}]"))
    take(_env_to_fields(environ), Source("environment"))
    return values, sources


def _env_files(environ: Mapping[str, str]) -> list[Path]:
    named = environ.get(ENV_PREFIX + "ENV_FILE")
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"FLEETRUN_ENV_FILE={named}: no such file")
        return [path]
    from stack.config import StackConfig  # the local stack's settings, when it has run here

    stack_env = StackConfig.from_env().env_file
    return [stack_env] if stack_env.is_file() else []


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored; values taken literally."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {stripped!r}")
        out[key.strip()] = value.strip()
    return out


def _env_to_fields(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX)
    }


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"FLEETRUN_CONFIG={path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, hint: Any, raw: Any, source: Source) -> Any:
    """Turn a raw value (str from env, or a TOML value) into the field's type."""

    def bad(why: str) -> SettingsError:
        return SettingsError(f"{env_name(name)}={raw!r} (from {source}): {why}")

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            return None
        return _coerce(name, args[0], raw, source)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise bad("expected true or false")
    if hint is int:
        if isinstance(raw, bool):
            raise bad("expected a whole number")
        try:
            return int(str(raw).replace("_", "")) if not isinstance(raw, int) else raw
        except ValueError:
            raise bad("expected a whole number") from None
    if hint is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise bad("expected a number") from None
    if hint is Path:
        return Path(str(raw)).expanduser()
    if hint is str:
        return str(raw)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        items = raw if isinstance(raw, list | tuple) else [p for p in str(raw).split(",") if p]
        return tuple(_coerce(name, item, str(i).strip(), source) for i in items)
    raise bad(f"unsupported setting type {hint!r}")


_DSN_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*(@)")


def mask(value: Any, *, secret: bool) -> str:
    """A value fit for logs: secrets hidden, passwords inside URLs hidden."""
    if secret:
        if isinstance(value, str) and "://" in value:
            return _DSN_PASSWORD.sub(r"\1***\2", value)
        return "***" if value else "(unset)"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def describe(
    obj: Any, sources: Mapping[str, Source] | None = None
) -> list[tuple[str, str, str, str]]:
    """(env var, masked value, source, help) for every field, for --show-config and docs."""
    sources = sources or {}
    rows = []
    for f in _fields(obj):
        value = getattr(obj, f.name)
        source = sources.get(f.name, Source("default"))
        rows.append(
            (
                env_name(f.name),
                mask(value, secret=f.metadata["secret"]),
                str(source),
                f.metadata["help"],
            )
        )
    return rows


def render(obj: Any, sources: Mapping[str, Source] | None = None) -> str:
    """The settings as aligned text lines with their sources, secrets masked."""
    rows = describe(obj, sources)
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}} = {value}    # {source}" for name, value, source, _ in rows)
