"""One frozen settings object per service, on pydantic-settings, built at the edge.

Each service declares a `ServiceSettings` subclass with its own variable prefix; a field's
`description` is its documentation (README, `--show-config`):

    class SinkSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="FLEETRUN_SINK_")  # TOML table [sink]
        linger_ms: float = Field(250.0, description="Flush a batch when ...")
        pg_dsn: SecretStr = Field(SecretStr("postgresql://..."), description="PostgreSQL DSN.")

`load(SinkSettings)` is the one place settings are read; constructing the class directly gives
defaults and arguments only (tests, benchmarks). Sources, lowest first: defaults < the env file
named by FLEETRUN_ENV_FILE < the TOML file named by FLEETRUN_CONFIG (top-level keys, then the
service's table) < the process environment < explicit overrides (command-line options).

Variables are FLEETRUN_<SERVICE>_<FIELD>. The connection settings in SHARED are also read as
FLEETRUN_<FIELD> and as top-level TOML keys; within one source the service's own name wins.
pydantic-settings' sources are asked one at a time, which is how every value keeps its source for
`--show-config` and for error messages.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

from dotenv.parser import parse_stream
from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_FILE = "FLEETRUN_ENV_FILE"
CONFIG = "FLEETRUN_CONFIG"
SHARED_PREFIX = "FLEETRUN_"
# Kafka's security settings are shared too: one broker and one CA for every service, while each
# service sets its own user and password under its own prefix (fleetrun/runtime/kafkaauth.py).
SHARED = (
    "kafka_bootstrap",
    "topic_prefix",
    "pg_dsn",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_sasl_password_file",
    "kafka_ssl_ca_file",
)
SECTIONS = ("collector", "sink", "cli", "web")

T = TypeVar("T")


def default_instance_id() -> str:
    """hostname-pid: unique per process, readable in results, dead letters and logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(Exception):
    """A setting has a value that cannot be used; the message names it and where it came from."""

    retriable = False


def _none_if_blank(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


def _split_commas(value: object) -> object:
    return (
        tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value
    )


# Field types whose text form is the one users write: "" or "none" unsets an optional setting,
# a list is comma-separated, `~` in a path is the home directory.
Maybe = Annotated[T | None, BeforeValidator(_none_if_blank)]
CommaSeparated = Annotated[tuple[T, ...], BeforeValidator(_split_commas)]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value came from, for --show-config and error messages."""

    kind: str  # "default" | "env file" | "config file" | "environment" | "command line"
    where: str = ""  # the file, and the TOML table
    via: str = ""  # the shared variable the value came in as (FLEETRUN_PG_DSN), if it did

    def __str__(self) -> str:
        text = f"{self.kind} {self.where}".strip()
        return f"{text} (as {self.via})" if self.via else text


DEFAULT = Source("default")


class ServiceSettings(BaseSettings):
    """The base of every service's settings: frozen, unknown keys refused, secrets hidden."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        enable_decoding=False,  # lists are comma-separated (CommaSeparated), not JSON
        hide_input_in_errors=True,  # a rejected value may be a password
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Constructing the class reads nothing but its arguments; `load` reads the sources."""
        return (init_settings,)

    @classmethod
    def section(cls) -> str:
        """The service's TOML table: FLEETRUN_SINK_ -> sink."""
        return cls.model_config["env_prefix"].removeprefix(SHARED_PREFIX).strip("_").lower()

    @classmethod
    def env_name(cls, field: str) -> str:
        """The service's own variable for `field`."""
        return cls.model_config["env_prefix"] + field.upper()

    @classmethod
    def env_names(cls, field: str) -> tuple[str, ...]:
        """Every variable that sets `field`, the winning one first."""
        shared = (SHARED_PREFIX + field.upper(),) if field in SHARED else ()
        return (cls.env_name(field), *shared)


S = TypeVar("S", bound=ServiceSettings)


def load(
    cls: type[S],
    *,
    section: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """Build `cls` from every source; raise SettingsError naming the bad value and its source."""
    return load_with_sources(cls, section=section, environ=environ, overrides=overrides)[0]


def load_with_sources(
    cls: type[S],
    *,
    section: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[S, dict[str, Source]]:
    """Like `load`, also returning where each field's value came from.

    `section` is implied by the class (its prefix); it is accepted for callers that name it.
    """
    if section not in (None, cls.section()):
        raise ValueError(f"{cls.__name__} is configured by [{cls.section()}], not [{section}]")
    values: dict[str, Any] = {}
    origin: dict[str, Source] = {}
    layers = _layers(cls, os.environ if environ is None else environ)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for source, found in [*layers, (Source("command line"), given)]:
        values.update(found)
        origin.update(dict.fromkeys(found, source))
    try:
        settings = cls.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_explain(cls, exc, values, origin)) from None
    return settings, {name: origin.get(name, DEFAULT) for name in cls.model_fields}


def _layers(
    cls: type[ServiceSettings], environ: Mapping[str, str]
) -> Iterator[tuple[Source, dict[str, Any]]]:
    """(source, {field: raw value}) for every source, lowest first."""
    # Only a file named here: a service never picks up settings (or passwords) it was not
    # pointed at, such as the local development stack's.
    if named := environ.get(ENV_FILE):
        if not Path(named).is_file():
            raise SettingsError(f"{ENV_FILE}={named}: no such file")
        yield from _variables(cls, read_env_file(Path(named)), Source("env file", named))
    if config := environ.get(CONFIG):
        data = _read_toml(config)
        yield Source("config file", config), {k: v for k, v in data.items() if k in SHARED}
        table = data.get(cls.section(), {})
        if not isinstance(table, dict):
            raise SettingsError(f"{config}: [{cls.section()}] must be a table")
        yield Source("config file", f"{config} [{cls.section()}]"), table
    yield from _variables(cls, environ, Source("environment"))


class _Variables(DotEnvSettingsSource):
    """pydantic-settings' env-file source over variables already read (an env file, or the
    environment). With `match_prefix` it also hands on unknown <prefix>* names, which the model
    then refuses as extra keys."""

    def __init__(
        self, cls: type[BaseSettings], variables: Mapping[str, str], prefix: str, *, extra: bool
    ) -> None:
        self._given = {k.lower(): v for k, v in variables.items()}  # names are case-insensitive
        super().__init__(
            cls,
            env_file=None,
            env_prefix=prefix,
            dotenv_filtering="match_prefix" if extra else "only_existing",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given


def _variables(
    cls: type[ServiceSettings], variables: Mapping[str, str], source: Source
) -> Iterator[tuple[Source, dict[str, Any]]]:
    """The shared names (FLEETRUN_PG_DSN) first, then the service's own, which win."""
    shared = _Variables(cls, variables, SHARED_PREFIX, extra=False)()
    for name in SHARED:
        if name in shared and name in cls.model_fields:
            yield replace(source, via=SHARED_PREFIX + name.upper()), {name: shared[name]}
    yield source, _Variables(cls, variables, cls.model_config["env_prefix"], extra=True)()


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines in dotenv syntax (# comments, quotes, `export`), without interpolation."""
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for binding in parse_stream(f):
            if binding.error or (binding.key is not None and binding.value is None):
                raise SettingsError(f"{path}:{binding.original.line}: expected KEY=VALUE")
            if binding.key is not None and binding.value is not None:
                out[binding.key] = binding.value
    return out


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"{CONFIG}={path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{CONFIG}={path}: not valid TOML: {exc}") from None
    stray = [key for key in data if key not in SHARED + SECTIONS]
    if stray:
        raise SettingsError(
            f"{path}: unknown top-level key(s) {', '.join(stray)}; the top level holds only "
            f"{', '.join(SHARED)}, other settings go in a [collector], [sink], [cli] or [web] table"
        )
    return data


_WHY = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "int_type": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
}


def _explain(
    cls: type[ServiceSettings],
    exc: ValidationError,
    values: Mapping[str, Any],
    origin: Mapping[str, Source],
) -> str:
    """One line for all of a validation's errors: each names its variable, value and source."""
    return "; ".join(_problem(cls, e, values, origin) for e in exc.errors(include_url=False))


def _problem(
    cls: type[ServiceSettings],
    error: ErrorDetails,
    values: Mapping[str, Any],
    origin: Mapping[str, Source],
) -> str:
    ctx = error.get("ctx", {})
    if not error["loc"]:  # a check across fields: its message names them
        return str(ctx.get("error", error["msg"]))
    name = str(error["loc"][0])
    source = origin.get(name, DEFAULT)
    if error["type"] == "extra_forbidden":  # named as written: a TOML key, or a variable
        by_key = source.kind in ("config file", "command line")
        known = list(cls.model_fields) if by_key else [cls.env_name(f) for f in cls.model_fields]
        key = name if by_key else cls.env_name(name)
        renamed = {SHARED_PREFIX + f.upper(): cls.env_name(f) for f in cls.model_fields}
        close = [renamed[key]] if key in renamed else difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{key} (from {source}): unknown {cls.section()} setting{hint}"
    raw = values.get(name)
    annotation = cls.model_fields[name].annotation
    secret = annotation is SecretStr or SecretStr in get_args(annotation)
    shown = repr(mask(raw, secret=True)) if secret else repr(raw)
    if error["type"] in _WHY:
        why = _WHY[error["type"]]
    elif error["type"] == "value_error":
        why = str(ctx["error"])
    elif error["type"] == "greater_than_equal":
        why = f"must be at least {ctx['ge']}"
    elif error["type"] == "literal_error":
        why = f"expected one of {ctx['expected']}"
    else:
        why = error["msg"][:1].lower() + error["msg"][1:]
    return f"{source.via or cls.env_name(name)}={shown} (from {source}): {why}"


_DSN_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*(@)")
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&\s]*")


def mask(value: object, *, secret: bool = False) -> str:
    """A value fit for logs: secrets hidden, passwords inside URLs hidden."""
    if isinstance(value, SecretStr):
        value, secret = value.get_secret_value(), True
    if secret:
        if isinstance(value, str) and "://" in value:
            return _QUERY_PASSWORD.sub(r"\1***", _DSN_PASSWORD.sub(r"\1***\2", value))
        return "***" if value else "(unset)"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def describe(
    settings: ServiceSettings, sources: Mapping[str, Source] | None = None
) -> list[tuple[str, str, str, str]]:
    """(variable, masked value, source, help) for every field, for --show-config."""
    sources = sources or {}
    return [
        (
            settings.env_name(name),
            # An optional setting left out is "(unset)", not Python's None.
            "(unset)" if getattr(settings, name) is None else mask(getattr(settings, name)),
            str(sources.get(name, DEFAULT)),
            field.description or "",
        )
        for name, field in type(settings).model_fields.items()
    ]


def render(settings: ServiceSettings, sources: Mapping[str, Source] | None = None) -> str:
    """The settings as aligned text lines with their sources, secrets masked."""
    rows = describe(settings, sources)
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}} = {value}    # {source}" for name, value, source, _ in rows)
