"""docker-compose.yml is valid Compose and describes the same stack as `make stack-up`; the
fleetrun image it builds (Dockerfile, .dockerignore) carries the runtime packages and nothing else.

No Docker engine and no Go here: the file is validated against the Compose Specification's JSON
Schema (tests/unit/data/compose-spec.json, see the README there) and read as YAML, resolving what
Compose would resolve before using it (merge keys, interpolation).
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, validators

from stack.acls import (
    GROUP,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
    Acl,
    fleetrun_acls,
)
from stack.config import (
    KAFKA_VERSION,
    PG_OWNER_USER,
    PG_READER_USER,
    PG_SERVER_SETTINGS,
    PG_WRITER_USER,
    SSH_HOST_NAMES,
    TOPIC_CONFIGS,
    TOPIC_PARTITIONS,
    StackConfig,
)
from stack.kafkasec import SERVICE_PRINCIPALS, KafkaSecrets

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

# What the wheel and the image carry, and the development tools that stay in the checkout.
RUNTIME_PACKAGES = {"fleetrun", "collector", "sink", "schemas"}
DEV_PACKAGES = {"stack", "bench", "tests"}
FLEETRUN_SERVICES = ("migrate", "collector", "sink", "web", "cli")


# --- reading docker-compose.yml -------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error, as in the YAML
    parser Compose uses (PyYAML would keep the last one silently). Merge keys (`<<`) still work.
    """


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_ComposeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# Compose interpolation, for the forms this file may use: `$$` is a literal `$` (the shell
# scripts need it) and `${NAME:-default}` / `${NAME-default}` take their default, since the
# stack is compared with its defaults (no FLEETRUN_STACK_* set, see `cfg`). Anything else with a
# `$` fails the test rather than being compared unresolved.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{[A-Za-z_][A-Za-z0-9_]*:?-(?P<default>[^}$]*)\}|(?P<unsupported>))"
)


def _resolve(match: re.Match[str]) -> str:
    if match["escaped"] is not None:
        return "$"
    if match["default"] is not None:
        return match["default"]
    snippet = match.string[match.start() : match.start() + 30]
    raise ValueError(f"interpolation this test does not resolve: {snippet!r}")


def _interpolate(node: Any) -> Any:
    """What Compose does to every value (not key) before it validates the file."""
    if isinstance(node, str):
        return _INTERPOLATION.sub(_resolve, node)
    if isinstance(node, dict):
        return {key: _interpolate(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value) for value in node]
    return node


def _load(text: str) -> Any:
    return _interpolate(yaml.load(text, Loader=_ComposeLoader))  # noqa: S506 (a SafeLoader)


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(COMPOSE_SCHEMA.read_text())
    return schema


@pytest.fixture(scope="module")
def compose_validator(compose_schema: dict[str, Any]) -> Any:
    # No FormatChecker: the schema has no `format` keyword (test_the_vendored_schema_...
    # checks), so one would assert nothing.
    return Draft202012Validator(compose_schema)


def _compose_errors(validator: Any, document: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every place the document breaks the Compose schema, as (path, message), with what each
    branch of a oneOf/anyOf said (a bad depends_on condition is only reported there)."""

    def walk(errors: Iterable[Any]) -> Iterator[tuple[tuple[Any, ...], str]]:
        for error in errors:
            yield tuple(error.absolute_path), error.message
            yield from walk(error.context)

    return sorted(set(walk(validator.iter_errors(document))), key=str)


@pytest.fixture(scope="module")
def project(compose_validator: Any) -> dict[str, Any]:
    """docker-compose.yml as Compose reads it, after checking it against the Compose schema."""
    document = _load(COMPOSE_FILE.read_text())
    errors = _compose_errors(compose_validator, document)
    assert errors == [], "docker-compose.yml is not valid Compose:\n" + "\n".join(
        f"  {'.'.join(map(str, path)) or '(top level)'}: {message}" for path, message in errors
    )
    assert isinstance(document, dict)
    return document


@pytest.fixture
def cfg(monkeypatch: pytest.MonkeyPatch) -> StackConfig:
    for name in ("KAFKA_PORT", "PG_PORT", "SSH_PORT", "SSH_BASE_ADDRESS", "TOPIC_PREFIX"):
        monkeypatch.delenv(f"FLEETRUN_STACK_{name}", raising=False)
    return StackConfig.from_env()


# Compose's short port syntax: [[host_ip:]published:]target[/protocol].
_PORT = re.compile(r"(?:(?:(?P<host_ip>[^:]+):)?(?P<published>\d+):)?(?P<target>\d+)(?:/\w+)?")


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host_ip, published, target) of each port, short or long syntax; host_ip "" is "all"."""
    ports = []
    for port in service["ports"]:
        if isinstance(port, dict):
            ports.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        # A number (or a YAML 1.1 sexagesimal like 2222:22 unquoted) is not what it looks like.
        assert isinstance(port, str), f"quote the port {port!r}"
        match = _PORT.fullmatch(port)
        assert match is not None, f"unreadable port {port!r}"
        assert match["published"] is not None, f"{port!r} publishes on a random port"
        ports.append((match["host_ip"] or "", int(match["published"]), int(match["target"])))
    return ports


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    """The environment as the container gets it: the list form too, values as strings."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    env: dict[str, str | None] = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            env[key] = "true" if value else "false"
        else:
            env[key] = None if value is None else str(value)
    return env


def _as_list(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else value


def _dependencies(service: dict[str, Any]) -> dict[str, str]:
    """Service name -> the condition it waits for (the list form waits for the start)."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: dep.get("condition", "service_started") for name, dep in raw.items()}


# --- the schema and the check itself --------------------------------------------------------


def test_the_vendored_schema_is_the_compose_spec_draft_2020_12(
    compose_schema: dict[str, Any],
) -> None:
    assert compose_schema["title"] == "Compose Specification"
    assert validators.validator_for(compose_schema) is Draft202012Validator
    Draft202012Validator.check_schema(compose_schema)

    def formats(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("format"), str):
                yield node["format"]
            for value in node.values():
                yield from formats(value)
        elif isinstance(node, list):
            for value in node:
                yield from formats(value)

    # compose-go registers a "duration" format; jsonschema's FormatChecker does not know it.
    # Should a refresh bring `format` in, decide then whether to check it (and how).
    assert set(formats(compose_schema)) == set()


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        pytest.param(_set(("services", "kafka", "imagee"), "x"), ("services", "kafka"), id="key"),
        pytest.param(
            _set(("services", "postgres", "ports"), "abc"),
            ("services", "postgres", "ports"),
            id="ports",
        ),
        pytest.param(
            _set(("services", "sink", "depends_on", "migrate", "condition"), "service_done"),
            ("services", "sink", "depends_on", "migrate", "condition"),
            id="condition",
        ),
        pytest.param(
            _set(("services", "postgres", "environment"), "POSTGRES_DB=fleetrun"),
            ("services", "postgres", "environment"),
            id="environment",
        ),
        pytest.param(_set(("servcies",), {}), (), id="top-level"),
    ],
)
def test_the_schema_check_rejects_a_broken_file(
    project: dict[str, Any],
    compose_validator: Any,
    mutate: Callable[[dict[str, Any]], None],
    where: tuple[str, ...],
) -> None:
    broken = copy.deepcopy(project)
    mutate(broken)
    assert where in {path for path, _ in _compose_errors(compose_validator, broken)}


def test_reading_resolves_what_compose_resolves() -> None:
    text = """
x-base: &base {image: "a", environment: {A: "1"}}
services:
  s:
    <<: *base
    environment: {B: "${UNSET_IN_THIS_TEST:-fallback}", C: "$${shell}", D: "${X-}"}
"""
    assert _load(text) == {
        "x-base": {"image": "a", "environment": {"A": "1"}},
        "services": {
            "s": {"image": "a", "environment": {"B": "fallback", "C": "${shell}", "D": ""}}
        },
    }
    with pytest.raises(yaml.constructor.ConstructorError, match="given twice"):
        _load("services:\n  s:\n    image: a\n    image: b\n")
    for unresolved in ("$HOME", "${HOME}", "${HOME:?unset}", "${A:-${B}}", "${spec%%:*}"):
        with pytest.raises(ValueError, match="does not resolve"):
            _load(f"x: {json.dumps(unresolved)}")


def test_references_resolve(project: dict[str, Any]) -> None:
    services = project["services"]
    volumes = set(project.get("volumes") or {})
    for name, service in services.items():
        assert set(_dependencies(service)) <= set(services), name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in volumes, f"{name}: volume {source!r} is not declared"


# --- the same stack as `make stack-up` ------------------------------------------------------


def test_kafka_is_the_same_release_on_the_same_port(
    project: dict[str, Any], cfg: StackConfig
) -> None:
    kafka = project["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert project["services"]["kafka-topics"]["image"] == kafka["image"]
    assert _published(kafka) == [("127.0.0.1", cfg.kafka_port, cfg.kafka_port)]
    env = _environment(kafka)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert f"127.0.0.1:{cfg.kafka_port}" in (env["KAFKA_ADVERTISED_LISTENERS"] or "")


def test_topics_created_match_the_local_stack(project: dict[str, Any], cfg: StackConfig) -> None:
    script = "\n".join(_as_list(project["services"]["kafka-topics"]["command"]))
    specs = re.search(r"for spec in ([^;]+);", script)
    assert specs is not None
    created = {name: int(n) for name, n in (s.split(":") for s in specs.group(1).split())}
    assert created == TOPIC_PARTITIONS
    # `$${spec%%:*}` in the file: the shell, not Compose, expands it.
    assert f'--topic "{cfg.topic_prefix}${{spec%%:*}}"' in script
    assert '--partitions "${spec##*:}"' in script
    for name, config in TOPIC_CONFIGS.items():  # the ledger is compacted in both stacks
        for key, value in config.items():
            assert (
                f"--entity-name {cfg.topic_prefix}{name} --add-config {key}={value}"
                in script.replace("\\\n", " ").replace("  ", " ")
            ), script


def test_postgres_matches_the_local_dsn(project: dict[str, Any], cfg: StackConfig) -> None:
    pg = project["services"]["postgres"]
    env = _environment(pg)
    user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
    assert cfg.pg_dsn == f"postgresql://{user}:{password}@127.0.0.1:{cfg.pg_port}/{db}"
    assert _published(pg) == [("127.0.0.1", cfg.pg_port, 5432)]
    command = _as_list(pg["command"])
    assert command[0] == "postgres"
    assert command[1::2] == ["-c"] * len(PG_SERVER_SETTINGS)
    assert dict(arg.split("=", 1) for arg in command[2::2]) == PG_SERVER_SETTINGS


def test_demo_hosts_are_published_where_the_local_stack_listens(
    project: dict[str, Any], cfg: StackConfig
) -> None:
    for i, name in enumerate(SSH_HOST_NAMES):
        host = project["services"][name]
        assert _environment(host)["HOST_NAME"] == name
        assert _published(host) == [(cfg.ssh_address(i), cfg.ssh_port, 22)]
        assert _dependencies(host)["ssh-keys"] == "service_completed_successfully"
    keys = _environment(project["services"]["ssh-keys"])
    assert (keys["DEMO_HOSTS"] or "").split() == list(SSH_HOST_NAMES)


def test_demo_hosts_use_the_stack_sshd_config() -> None:
    dockerfile = (ROOT / "docker" / "sshd" / "Dockerfile").read_text()
    assert "COPY stack/templates/sshd_config" in dockerfile
    placeholders = set(re.findall(r"\{(\w+)\}", (ROOT / "stack/templates/sshd_config").read_text()))
    entrypoint = (ROOT / "docker" / "sshd" / "entrypoint.sh").read_text()
    assert {p for p in placeholders if "{" + p + "}" not in entrypoint} == set()


def test_fleetrun_services_share_the_local_stack_settings(
    project: dict[str, Any], cfg: StackConfig
) -> None:
    services = project["services"]
    pg = _environment(services["postgres"])
    expected = {
        "FLEETRUN_KAFKA_BOOTSTRAP": "kafka:9092",
        "FLEETRUN_TOPIC_PREFIX": cfg.topic_prefix,
        "FLEETRUN_PG_DSN": (
            f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{pg['POSTGRES_DB']}"
        ),
    }
    # What the local stack's env file gives the collector and the CLI (stack/services.py).
    env_keys = {
        "FLEETRUN_COLLECTOR_SSH_USER",
        "FLEETRUN_COLLECTOR_SSH_CLIENT_KEYS",
        "FLEETRUN_COLLECTOR_SSH_KNOWN_HOSTS",
        "FLEETRUN_COLLECTOR_INVENTORY",
        "FLEETRUN_CLI_INVENTORY",
    }
    assert "INTERNAL://kafka:9092" in (
        _environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"] or ""
    )
    for name in FLEETRUN_SERVICES:
        service = services[name]
        env = _environment(service)
        assert {key: env.get(key) for key in expected} == expected, name
        assert env_keys <= set(env), name
        assert service["image"] == "fleetrun/fleetrun:local"
        assert service["build"]["dockerfile"] == "Dockerfile"
        # The image's `fleetrun` entrypoint, with the service's subcommand.
        assert "entrypoint" not in service, name
    for name in ("migrate", "collector", "sink", "web"):
        assert _as_list(services[name]["command"]) == [name]
    # Listening beyond loopback inside its container, the console must have a token.
    assert _environment(services["web"])["FLEETRUN_WEB_TOKEN"]
    assert _dependencies(services["sink"])["migrate"] == "service_completed_successfully"
    assert _dependencies(services["migrate"])["postgres"] == "service_healthy"


def test_postgres_roles_and_logins_match_the_local_stack(project: dict[str, Any]) -> None:
    services = project["services"]
    pg = _environment(services["postgres"])
    assert pg["POSTGRES_USER"] == PG_OWNER_USER  # it runs the migrations, as in the stack
    writer = f"postgresql://{PG_WRITER_USER}:{PG_WRITER_USER}@postgres:5432/{pg['POSTGRES_DB']}"
    for name in ("migrate", "sink"):
        env = _environment(services[name])
        assert env["FLEETRUN_SINK_PG_DSN"] == writer, name
        assert env["FLEETRUN_SINK_PG_OWNER_USER"] == PG_OWNER_USER, name
        assert env["FLEETRUN_SINK_PG_OWNER_PASSWORD"] == pg["POSTGRES_PASSWORD"], name
    # The CLI and the console read as the read-only login, never as the owner.
    reader = f"postgresql://{PG_READER_USER}:{PG_READER_USER}@postgres:5432/{pg['POSTGRES_DB']}"
    for name in ("web", "cli"):
        env = _environment(services[name])
        assert env["FLEETRUN_CLI_PG_DSN"] == env["FLEETRUN_WEB_PG_DSN"] == reader, name
    mounts = [str(v) for v in services["postgres"]["volumes"]]
    assert any(
        m.startswith("./docker/postgres/roles.sql:/docker-entrypoint-initdb.d/") for m in mounts
    )
    script = (ROOT / "docker" / "postgres" / "roles.sql").read_text()
    for role in ("fleetrun_owner", "fleetrun_writer", "fleetrun_reader"):
        assert f"CREATE ROLE {role} NOLOGIN;" in script
    assert f"GRANT fleetrun_owner TO {PG_OWNER_USER};" in script
    for user, group in ((PG_WRITER_USER, "fleetrun_writer"), (PG_READER_USER, "fleetrun_reader")):
        assert f"CREATE ROLE {user} LOGIN PASSWORD '{user}' IN ROLE {group};" in script


def test_nothing_in_the_compose_file_runs_development_code() -> None:
    text = COMPOSE_FILE.read_text()
    for gone in ("python -m stack", "setup.py", "_fastrow", "fastpath", "NATIVE"):
        assert gone not in text


# --- the fleetrun image ---------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # a comment may sit inside a continuation
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert pending == "", f"{path}: ends inside a continuation"
    return instructions


def _copies(path: Path) -> list[tuple[list[str], list[str], str]]:
    """(flags, sources, destination) of each COPY and ADD."""
    copies = []
    for keyword, arguments in _instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        copies.append((flags, [p.rstrip("/") or "." for p in paths[:-1]], paths[-1]))
    return copies


def _commands(path: Path) -> list[list[str]]:
    """The simple commands of every RUN, split on && ; ||, each as its words."""
    commands = []
    for keyword, arguments in _instructions(path):
        if keyword == "RUN":
            for part in re.split(r"&&|\|\||;", arguments):
                if words := shlex.split(part):
                    commands.append(words)
    return commands


DOCKERFILE = ROOT / "Dockerfile"


def test_the_image_is_one_stage_without_a_compiler() -> None:
    instructions = _instructions(DOCKERFILE)
    assert [args for keyword, args in instructions if keyword == "FROM"] == ["python:3.11-slim"]
    assert all(
        not any(f.startswith("--from") for f in flags) for flags, _, _ in _copies(DOCKERFILE)
    )
    build_tools = re.compile(
        r"\b(apt-get|apt|apk|gcc|g\+\+|cc|clang|make|build-essential|libc6-dev|python3-dev)\b"
    )
    for keyword, arguments in instructions:
        assert not (keyword == "RUN" and build_tools.search(arguments)), arguments
    for gone in ("setup.py", "_fastrow", "fastpath", "NATIVE", "wheel"):
        assert gone not in " ".join(args for _, args in instructions), gone


def test_the_image_copies_the_runtime_packages_and_nothing_else() -> None:
    sources = {source for _, paths, _ in _copies(DOCKERFILE) for source in paths}
    assert sources >= RUNTIME_PACKAGES
    # Not `COPY . .`, not stack/, bench/ or tests/: each file named, each package by name.
    assert sources <= RUNTIME_PACKAGES | {"pyproject.toml", "README.md", "requirements.lock"}


def test_the_image_installs_what_requirements_lock_pins() -> None:
    sources = {source for _, paths, _ in _copies(DOCKERFILE) for source in paths}
    assert "requirements.lock" in sources
    installs = [
        words[words.index("install") + 1 :]
        for words in _commands(DOCKERFILE)
        if Path(words[0]).name.startswith("pip") and "install" in words
    ]
    assert installs, "the Dockerfile installs nothing"
    for options in installs:
        # The lock pins every package pip installs: as the requirements with the project's own
        # resolution off (--no-deps), or as constraints on what the project needs (-c).
        pinned = any(
            flag in ("-c", "--constraint", "-r", "--requirement")
            and Path(value).name == "requirements.lock"
            for flag, value in itertools.pairwise(options)
        )
        assert pinned or "--no-deps" in options, options
        assert "--no-cache-dir" in options, options
    # ... and the project itself is one of them (a path: /src, or . in the work directory).
    assert any(word in {".", "/src"} for options in installs for word in options)


def test_the_image_runs_fleetrun_as_a_non_root_user() -> None:
    instructions = _instructions(DOCKERFILE)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(args) for args in entrypoints] == [["fleetrun"]]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "fleetrun" in pyproject["project"]["scripts"]


def test_the_wheel_holds_exactly_the_runtime_packages() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(include) == sorted(f"{name}*" for name in RUNTIME_PACKAGES)
    top_level = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    # A new top-level package must be sorted into one list or the other.
    assert top_level <= RUNTIME_PACKAGES | DEV_PACKAGES, top_level - RUNTIME_PACKAGES
    shipped = {name for name in top_level if any(fnmatch.fnmatch(name, p) for p in include)}
    assert shipped == RUNTIME_PACKAGES


def test_runtime_dependencies_are_pinned_in_the_lock() -> None:
    def normalized(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {
        normalized(re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0])
        for dep in pyproject["project"]["dependencies"]
    }
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {normalized(m) for m in re.findall(r"^([A-Za-z0-9][\w.-]*)==", lock, re.MULTILINE)}
    assert needed - pinned == set()


def _dockerignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (later lines win; `!` keeps
    it in; a pattern matching a parent directory matches what is inside it)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        if any(regex(pattern.removeprefix("!")).fullmatch(p) for p in prefixes):
            ignored = not keep
    return ignored


def test_the_build_context_holds_what_the_images_copy_and_no_dev_tools() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    needed = {
        source
        for dockerfile in (DOCKERFILE, ROOT / "docker" / "sshd" / "Dockerfile")
        for _, paths, _ in _copies(dockerfile)
        for source in paths
    }
    for source in needed:
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and "__pycache__" not in relative:
                assert not _dockerignored(patterns, relative), relative
    for tool in sorted(DEV_PACKAGES):
        for file in (ROOT / tool).rglob("*"):
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and relative not in needed:
                assert _dockerignored(patterns, relative), relative


# --- authenticated Kafka, as in the local stack ----------------------------------------------


def _script(service: dict[str, Any]) -> str:
    return "\n".join(_as_list(service["command"]))


def test_kafka_takes_sasl_over_tls_only_and_denies_what_no_acl_allows(
    project: dict[str, Any],
) -> None:
    env = _environment(project["services"]["kafka"])
    protocols = dict(
        p.split(":") for p in (env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] or "").split(",")
    )
    assert protocols == {"INTERNAL": "SASL_SSL", "HOST": "SASL_SSL", "CONTROLLER": "SASL_PLAINTEXT"}
    assert env["KAFKA_LISTENER_NAME_HOST_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    # No password in the file: the broker reads the super user's from the keys volume.
    assert 'password=\\"$pw\\"' in _script(project["services"]["kafka"])


def test_compose_grants_the_same_acls_as_the_local_stack(
    project: dict[str, Any], cfg: StackConfig
) -> None:
    kinds = {"--topic": TOPIC, "--group": GROUP, "--transactional-id": TRANSACTIONAL_ID}
    operations = {"Read": READ, "Write": WRITE}
    granted = set()
    for line in _script(project["services"]["kafka-topics"]).splitlines():
        if not line.startswith("acl "):  # the calls, not the function's definition
            continue
        words = shlex.split(line)
        principal, operation, rest = words[1], operations[words[2]], words[3:]
        pattern = LITERAL
        if rest[:2] == ["--resource-pattern-type", "prefixed"]:
            pattern, rest = PREFIXED, rest[2:]
        for flag, name in zip(rest[::2], rest[1::2], strict=True):
            granted.add(Acl(principal, kinds[flag], name, operation, pattern))
    assert granted == set(fleetrun_acls(cfg.topic_prefix))


def test_each_service_connects_as_its_own_principal_as_in_the_stack(
    project: dict[str, Any], tmp_path: Path
) -> None:
    stack = KafkaSecrets(tmp_path).env_lines()
    for name in FLEETRUN_SERVICES:
        env = _environment(project["services"][name])
        for key, value in stack.items():
            if key.startswith("FLEETRUN_STACK_"):  # the stack's own tools, not a service's
                assert key not in env
            elif key.endswith("_FILE"):  # same setting, the path in the keys volume
                assert (env[key] or "").startswith("/keys/kafka/"), key
            else:
                assert env[key] == value, key
    # Every principal gets its SCRAM credential from its own password file.
    users = _script(project["services"]["kafka-topics"])
    assert "for user in " + " ".join(SERVICE_PRINCIPALS.values()) + "; do" in users
