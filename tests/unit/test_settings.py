"""Settings: sources in order, per-service and shared names, clear errors, secrets masked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from collector.settings import CollectorSettings
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.settings import (
    ServiceSettings,
    SettingsError,
    load,
    load_with_sources,
    mask,
    read_env_file,
    render,
)
from sink.settings import SinkSettings

SERVICES: list[type[ServiceSettings]] = [CollectorSettings, SinkSettings, CliSettings]


class Files:
    """An environment naming an env file and a TOML file written by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.env_file = tmp_path / "fleetrun.env"
        self.config = tmp_path / "fleetrun.toml"

    def environ(
        self, env_file: str = "", toml: str | None = None, **environ: str
    ) -> dict[str, str]:
        self.env_file.write_text(env_file)
        env = {"FLEETRUN_ENV_FILE": str(self.env_file), **environ}
        if toml is not None:
            self.config.write_text(toml)
            env["FLEETRUN_CONFIG"] = str(self.config)
        return env


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def _raises(message: str) -> Any:
    """The whole one-line message; one ending in "..." only begins so."""
    if message.endswith("..."):
        return pytest.raises(SettingsError, match=f"^{re.escape(message[:-3])}")
    return pytest.raises(SettingsError, match=f"^{re.escape(message)}$")


# -- precedence -----------------------------------------------------------------------------

# Every place the sink's kafka_bootstrap can come from, lowest first:
# (where it is written, under what name, its value, how --show-config names its source).
LAYERS = {
    "env file, shared name": (
        "env file", "FLEETRUN_KAFKA_BOOTSTRAP", "a:1",
        "env file {env_file} (as FLEETRUN_KAFKA_BOOTSTRAP)",
    ),
    "env file": ("env file", "FLEETRUN_SINK_KAFKA_BOOTSTRAP", "b:1", "env file {env_file}"),
    "config file, top level": ("toml", "kafka_bootstrap", "c:1", "config file {config}"),
    "config file, [sink]": ("[sink]", "kafka_bootstrap", "d:1", "config file {config} [sink]"),
    "environment, shared name": (
        "environ", "FLEETRUN_KAFKA_BOOTSTRAP", "e:1",
        "environment (as FLEETRUN_KAFKA_BOOTSTRAP)",
    ),
    "environment": ("environ", "FLEETRUN_SINK_KAFKA_BOOTSTRAP", "f:1", "environment"),
    "command line": ("override", "kafka_bootstrap", "g:1", "command line"),
}  # fmt: skip
ORDER = list(LAYERS)


@pytest.mark.parametrize(
    ("present", "winner"),
    [
        *(((layer,), layer) for layer in ORDER),  # each source alone
        *((tuple(ORDER[: i + 1]), ORDER[i]) for i in range(1, len(ORDER))),  # all up to it
        # a source wins over every lower one whichever name it uses...
        (("env file", "config file, top level"), "config file, top level"),
        (("config file, [sink]", "environment, shared name"), "environment, shared name"),
        (("environment", "command line"), "command line"),
        # ...and within one source the service's own name wins over the shared one
        (("env file", "env file, shared name"), "env file"),
        (("environment", "environment, shared name"), "environment"),
    ],
)
def test_sources_override_in_order(files: Files, present: tuple[str, ...], winner: str) -> None:
    written: dict[str, dict[str, str]] = {w: {} for w in ("env file", "toml", "[sink]")}
    written |= {"environ": {}, "override": {}}
    for layer in present:
        where, name, value, _ = LAYERS[layer]
        written[where][name] = value
    env = files.environ(
        "".join(f"{k}={v}\n" for k, v in written["env file"].items()),
        "".join(f'{k} = "{v}"\n' for k, v in written["toml"].items())
        + "[sink]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in written["[sink]"].items()),
        **written["environ"],
    )
    got, sources = load_with_sources(SinkSettings, environ=env, overrides=written["override"])
    _, _, value, shown = LAYERS[winner]
    source = shown.format(env_file=files.env_file, config=files.config)
    assert (got.kafka_bootstrap, str(sources["kafka_bootstrap"])) == (value, source)


def test_defaults_apply_without_any_source() -> None:
    for cls in SERVICES:
        got, sources = load_with_sources(cls, environ={})
        assert got == cls()
        assert {str(s) for s in sources.values()} == {"default"}


def test_constructing_a_class_reads_no_source(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests and benchmarks build settings directly: only their arguments count.
    env = files.environ("FLEETRUN_COLLECTOR_MAX_SESSIONS=1\n", "[collector]\nmax_sessions = 2\n")
    for key, value in {**env, "FLEETRUN_COLLECTOR_MAX_CONNECTIONS": "3"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FLEETRUN_COLLECTOR_MAX_SESSIONS", raising=False)
    got = CollectorSettings(ssh_user="ops")
    assert (got.max_sessions, got.max_connections, got.ssh_user) == (500, 1000, "ops")
    loaded = load(CollectorSettings)  # os.environ: only `load` reads it
    assert (loaded.max_sessions, loaded.max_connections) == (2, 3)


def test_overrides_of_none_leave_the_value_alone(files: Files) -> None:
    env = files.environ("FLEETRUN_COLLECTOR_INVENTORY=/inv.toml\n")
    got, sources = load_with_sources(CollectorSettings, environ=env, overrides={"inventory": None})
    assert got.inventory == Path("/inv.toml")
    assert str(sources["inventory"]) == f"env file {files.env_file}"


def test_section_is_the_class_own(files: Files) -> None:
    assert [cls.section() for cls in SERVICES] == ["collector", "sink", "cli"]
    assert load(SinkSettings, section="sink", environ={}) == SinkSettings()
    with pytest.raises(ValueError, match=r"configured by \[sink\], not \[collector\]"):
        load(SinkSettings, section="collector", environ={})


# -- one prefix per service; only the connection settings are shared ------------------------


def test_shared_names_feed_every_service_that_has_the_setting(files: Files) -> None:
    env = files.environ(
        "FLEETRUN_PG_DSN=postgresql://u:pw@db:5/fleet\n",
        'topic_prefix = "team."\n',
        FLEETRUN_KAFKA_BOOTSTRAP="k:9092",
    )
    for cls in SERVICES:
        got = load(cls, environ=env).model_dump(include={"kafka_bootstrap", "topic_prefix"})
        assert got == {"kafka_bootstrap": "k:9092", "topic_prefix": "team."}, cls
    for dsn in (load(SinkSettings, environ=env).pg_dsn, load(CliSettings, environ=env).pg_dsn):
        assert dsn.get_secret_value() == "postgresql://u:pw@db:5/fleet"
    assert "pg_dsn" not in CollectorSettings.model_fields  # the collector has no database


@pytest.mark.parametrize(
    ("env_file", "toml", "environ"),
    [
        pytest.param(
            "FLEETRUN_SINK_GROUP_ID=sinks\nFLEETRUN_SINK_SESSION_TIMEOUT_MS=1\n",
            None,
            {"FLEETRUN_SINK_OPS_PORT": "1", "FLEETRUN_SINK_KAFKA_BOOTSTRAP": "sink:1"},
            id="sink variables",
        ),
        pytest.param(
            "",
            '[sink]\ngroup_id = "sinks"\nops_port = 1\nkafka_bootstrap = "sink:1"\n',
            {},
            id="sink table",
        ),
        pytest.param(
            "FLEETRUN_GROUP_ID=sinks\nFLEETRUN_SESSION_TIMEOUT_MS=1\n",
            None,
            {"FLEETRUN_OPS_PORT": "1", "FLEETRUN_LOG_LEVEL": "DEBUG"},
            id="unprefixed names of settings that are not shared",
        ),
    ],
)
def test_a_value_for_the_sink_does_not_feed_the_collector(
    files: Files, env_file: str, toml: str | None, environ: dict[str, str]
) -> None:
    env = files.environ(env_file, toml, **environ)
    assert load(CollectorSettings, environ=env) == CollectorSettings()
    assert load(CliSettings, environ=env) == CliSettings()


def test_variable_names() -> None:
    assert CollectorSettings.env_name("max_sessions") == "FLEETRUN_COLLECTOR_MAX_SESSIONS"
    assert SinkSettings.env_names("linger_ms") == ("FLEETRUN_SINK_LINGER_MS",)
    assert CliSettings.env_names("pg_dsn") == ("FLEETRUN_CLI_PG_DSN", "FLEETRUN_PG_DSN")


# -- values ---------------------------------------------------------------------------------


def test_text_values_are_parsed_as_users_write_them(files: Files) -> None:
    env = files.environ(
        FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS="/k/a, ~/k/b,",
        FLEETRUN_COLLECTOR_SSH_CIPHERS="",
        FLEETRUN_COLLECTOR_SSH_VERIFY_HOST_KEYS="no",
        FLEETRUN_COLLECTOR_MAX_SESSIONS="1_000",
        FLEETRUN_COLLECTOR_RETRY_BACKOFF_S="0.5",
        FLEETRUN_COLLECTOR_INVENTORY="~/inventory.toml",
        FLEETRUN_COLLECTOR_SSH_USER="none",
        FLEETRUN_COLLECTOR_SSH_CONFIG="",
    )
    got = load(CollectorSettings, environ=env)
    assert got.ssh_client_keys == (Path("/k/a"), Path("~/k/b").expanduser())
    assert got.ssh_ciphers == ()
    assert (got.ssh_verify_host_keys, got.max_sessions, got.retry_backoff_s) == (False, 1000, 0.5)
    assert got.inventory == Path("~/inventory.toml").expanduser()
    assert (got.ssh_user, got.ssh_config) == (None, None)


def test_toml_values_keep_their_types(files: Files) -> None:
    toml = '[collector]\nssh_client_keys = ["/k/a", "/k/b"]\nssh_verify_host_keys = false\n'
    got = load(CollectorSettings, environ=files.environ("", toml + "max_sessions = 7\n"))
    assert got.ssh_client_keys == (Path("/k/a"), Path("/k/b"))
    assert (got.ssh_verify_host_keys, got.max_sessions) == (False, 7)


def test_the_env_file_is_dotenv_syntax(files: Files) -> None:
    files.env_file.write_text(
        '# comment\n\nexport FLEETRUN_CLI_PRINCIPAL="ops team"\nFLEETRUN_CLI_PG_TIMEOUT_S=3 # s\n'
        "FLEETRUN_STACK_DIR=/elsewhere\n"
    )
    assert read_env_file(files.env_file) == {
        "FLEETRUN_CLI_PRINCIPAL": "ops team",
        "FLEETRUN_CLI_PG_TIMEOUT_S": "3",
        "FLEETRUN_STACK_DIR": "/elsewhere",  # not a settings name: ignored by every service
    }
    got = load(CliSettings, environ={"FLEETRUN_ENV_FILE": str(files.env_file)})
    assert (got.principal, got.pg_timeout_s) == ("ops team", 3.0)


def test_settings_are_frozen_and_refuse_unknown_arguments() -> None:
    got = CollectorSettings()
    with pytest.raises(ValidationError, match="frozen"):
        setattr(got, "max_sessions", 4)  # noqa: B010 - the attribute is typed; this is the point
    assert {got: 1}[CollectorSettings()] == 1  # hashable, equal by value
    misspelled: dict[str, Any] = {"max_sesions": 4}
    with pytest.raises(ValidationError, match="max_sesions"):
        CollectorSettings(**misspelled)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "env_file", "toml", "environ", "overrides", "message"),
    [
        pytest.param(
            CollectorSettings, "", None, {"FLEETRUN_COLLECTOR_MAX_SESSIONS": "lots"}, {},
            "FLEETRUN_COLLECTOR_MAX_SESSIONS='lots' (from environment): expected a whole number",
            id="environment",
        ),
        pytest.param(
            CollectorSettings, "FLEETRUN_COLLECTOR_SSH_VERIFY_HOST_KEYS=maybe\n", None, {}, {},
            "FLEETRUN_COLLECTOR_SSH_VERIFY_HOST_KEYS='maybe' (from env file {env_file}): "
            "expected true or false",
            id="env file",
        ),
        pytest.param(
            SinkSettings, "", '[sink]\nlinger_ms = "soon"\n', {}, {},
            "FLEETRUN_SINK_LINGER_MS='soon' (from config file {config} [sink]): expected a number",
            id="config file table",
        ),
        pytest.param(
            CliSettings, "", "kafka_bootstrap = 9092\n", {}, {},
            "FLEETRUN_CLI_KAFKA_BOOTSTRAP=9092 (from config file {config}): "
            "input should be a valid string",
            id="config file top level",
        ),
        pytest.param(
            CliSettings, "FLEETRUN_CLI_PG_TIMEOUT_S=x\n", None, {}, {},
            "FLEETRUN_CLI_PG_TIMEOUT_S='x' (from env file {env_file}): expected a number",
            id="cli",
        ),
        pytest.param(
            CollectorSettings, "", None, {}, {"max_sessions": "many"},
            "FLEETRUN_COLLECTOR_MAX_SESSIONS='many' (from command line): expected a whole number",
            id="command line",
        ),
        pytest.param(
            CollectorSettings, "", None,
            {"FLEETRUN_COLLECTOR_MAX_SESSIONS": "x", "FLEETRUN_COLLECTOR_OPS_PORT": "y"}, {},
            "FLEETRUN_COLLECTOR_MAX_SESSIONS='x' (from environment): expected a whole number; "
            "FLEETRUN_COLLECTOR_OPS_PORT='y' (from environment): expected a whole number",
            id="every bad value on one line",
        ),
        pytest.param(
            SinkSettings, "", None, {"FLEETRUN_SINK_LINGER_MSS": "5"}, {},
            "FLEETRUN_SINK_LINGER_MSS (from environment): unknown sink setting; "
            "did you mean FLEETRUN_SINK_LINGER_MS?",
            id="unknown variable",
        ),
        pytest.param(
            CollectorSettings, "FLEETRUN_COLLECTOR_IDS=c1\n", None, {}, {},
            "FLEETRUN_COLLECTOR_IDS (from env file {env_file}): unknown collector setting; "
            "did you mean FLEETRUN_COLLECTOR_ID?",
            id="unknown variable in the env file",
        ),
        pytest.param(
            CollectorSettings, "", "[collector]\nmax_sesions = 3\n", {}, {},
            "max_sesions (from config file {config} [collector]): unknown collector setting; "
            "did you mean max_sessions?",
            id="unknown key in the table",
        ),
        pytest.param(
            CollectorSettings, "", "linger_ms = 3\n", {}, {},
            "{config}: unknown top-level key(s) linger_ms; the top level holds only "
            "kafka_bootstrap, topic_prefix, pg_dsn, kafka_security_protocol, "
            "kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password, "
            "kafka_sasl_password_file, kafka_ssl_ca_file, other settings go in a [collector], "
            "[sink], [cli] or [web] table",
            id="top level holds only shared settings",
        ),
        pytest.param(
            CollectorSettings, "", "collector = 3\n", {}, {},
            "{config}: [collector] must be a table",
            id="table that is not a table",
        ),
        pytest.param(
            CollectorSettings, "", "max_sessions = [", {}, {},
            "FLEETRUN_CONFIG={config}: not valid TOML: ...",
            id="bad TOML",
        ),
        pytest.param(
            CollectorSettings, "FLEETRUN_COLLECTOR_MAX_SESSIONS=1\nnot a setting\n", None, {}, {},
            "{env_file}:2: expected KEY=VALUE",
            id="bad env file line",
        ),
    ],
)  # fmt: skip
def test_bad_values_name_the_variable_value_and_source(
    files: Files,
    cls: type[ServiceSettings],
    env_file: str,
    toml: str | None,
    environ: dict[str, str],
    overrides: dict[str, Any],
    message: str,
) -> None:
    env = files.environ(env_file, toml, **environ)
    with _raises(message.format(env_file=files.env_file, config=files.config)):
        load(cls, environ=env, overrides=overrides)


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with _raises("FLEETRUN_ENV_FILE=/nope: no such file"):
        load(CollectorSettings, environ={"FLEETRUN_ENV_FILE": "/nope"})
    with _raises(f"FLEETRUN_CONFIG={tmp_path}/nope.toml: No such file or directory"):
        load(CollectorSettings, environ={"FLEETRUN_CONFIG": f"{tmp_path}/nope.toml"})


def test_other_services_tables_are_theirs_to_check(files: Files) -> None:
    env = files.environ("", "[sink]\nlinger_mss = 1\n[cli]\n")
    assert load(CollectorSettings, environ=env) == CollectorSettings()
    with pytest.raises(SettingsError, match="linger_mss"):
        load(SinkSettings, environ=env)


# -- secrets --------------------------------------------------------------------------------

DSN = "postgresql://fleetrun:s3cret@db:5432/fleetrun"


@pytest.mark.parametrize("cls", [SinkSettings, CliSettings])
def test_the_password_never_shows(files: Files, cls: type[SinkSettings | CliSettings]) -> None:
    got, sources = load_with_sources(cls, environ=files.environ(f"FLEETRUN_PG_DSN={DSN}\n"))
    assert isinstance(got.pg_dsn, SecretStr)
    assert got.pg_dsn.get_secret_value() == DSN
    for text in (repr(got), str(got), got.model_dump_json(), f"{got.pg_dsn}", render(got, sources)):
        assert "s3cret" not in text
    (line,) = (x for x in render(got, sources).splitlines() if x.startswith(cls.env_name("pg_dsn")))
    assert line.endswith(
        f"= postgresql://fleetrun:***@db:5432/fleetrun    # env file {files.env_file} "
        "(as FLEETRUN_PG_DSN)"
    )


def test_the_password_never_shows_in_errors(files: Files) -> None:
    env = files.environ("", f'[sink]\npg_dsn = ["{DSN}"]\n')  # a bad value of the secret itself
    with _raises(
        f"FLEETRUN_SINK_PG_DSN='***' (from config file {files.config} [sink]): "
        "input should be a valid string"
    ):
        load(SinkSettings, environ=env)
    env = files.environ(FLEETRUN_SINK_PG_DNS=DSN)  # a misspelled name: its value is not shown
    with _raises(
        "FLEETRUN_SINK_PG_DNS (from environment): unknown sink setting; "
        "did you mean FLEETRUN_SINK_PG_DSN?"
    ):
        load(SinkSettings, environ=env)
    not_a_string: dict[str, Any] = {"pg_dsn": [DSN]}
    with pytest.raises(ValidationError) as direct:
        SinkSettings(**not_a_string)
    assert "s3cret" not in str(direct.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (SecretStr("postgresql://u:pw@h:5/db"), "postgresql://u:***@h:5/db"),
        (SecretStr("postgresql://u@h:5/db?password=pw&sslmode=require"),
         "postgresql://u@h:5/db?password=***&sslmode=require"),
        (SecretStr("host=h password=pw"), "***"),
        (SecretStr(""), "(unset)"),
        (("a", "b"), "a,b"),
        (None, "None"),
    ],
)  # fmt: skip
def test_mask(value: object, shown: str) -> None:
    assert mask(value) == shown


def test_render_aligns_every_setting_with_its_source(files: Files) -> None:
    env = files.environ(FLEETRUN_COLLECTOR_MAX_SESSIONS="9")
    text = render(*load_with_sources(CollectorSettings, environ=env))
    lines = text.splitlines()
    assert len(lines) == len(CollectorSettings.model_fields)
    assert len({line.index(" = ") for line in lines}) == 1
    assert re.search(r"^FLEETRUN_COLLECTOR_MAX_SESSIONS +  = 9    # environment$", text, re.M)
    assert re.search(r"^FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS +  =     # default$", text, re.M)
