"""docker-compose.yml is valid Compose and describes the same stack as `make stack-up`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stack.config import (
    KAFKA_VERSION,
    PG_SERVER_SETTINGS,
    SSH_HOST_NAMES,
    TOPIC_PARTITIONS,
    StackConfig,
)

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tests" / "support" / "composecheck"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as compose-go (docker compose's own loader) resolves and validates it."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is needed to validate docker-compose.yml (compose-go); install golang")
    binary = tmp_path_factory.mktemp("composecheck") / "composecheck"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=CHECKER,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    loaded = subprocess.run(
        [str(binary), str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, f"docker-compose.yml is not valid Compose: {loaded.stderr}"
    result: dict[str, Any] = json.loads(loaded.stdout)
    return result


@pytest.fixture
def cfg(monkeypatch: pytest.MonkeyPatch) -> StackConfig:
    for name in ("KAFKA_PORT", "PG_PORT", "SSH_PORT", "SSH_BASE_ADDRESS", "TOPIC_PREFIX"):
        monkeypatch.delenv(f"FLEETRUN_STACK_{name}", raising=False)
    return StackConfig.from_env()


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(p["host_ip"], int(p["published"]), int(p["target"])) for p in service["ports"]]


def test_kafka_is_the_same_release_on_the_same_port(
    project: dict[str, Any], cfg: StackConfig
) -> None:
    kafka = project["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert _published(kafka) == [("127.0.0.1", cfg.kafka_port, cfg.kafka_port)]
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert f"127.0.0.1:{cfg.kafka_port}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_topics_created_match_the_local_stack(project: dict[str, Any], cfg: StackConfig) -> None:
    script = "\n".join(project["services"]["kafka-topics"]["command"])
    specs = re.search(r"for spec in ([^;]+);", script)
    assert specs is not None
    created = {name: int(n) for name, n in (s.split(":") for s in specs.group(1).split())}
    assert created == TOPIC_PARTITIONS
    assert f'--topic "{cfg.topic_prefix}' in script


def test_postgres_matches_the_local_dsn(project: dict[str, Any], cfg: StackConfig) -> None:
    pg = project["services"]["postgres"]
    env = pg["environment"]
    user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
    assert cfg.pg_dsn == f"postgresql://{user}:{password}@127.0.0.1:{cfg.pg_port}/{db}"
    assert _published(pg) == [("127.0.0.1", cfg.pg_port, 5432)]
    command = pg["command"]
    assert command[0] == "postgres"
    assert command[1::2] == ["-c"] * len(PG_SERVER_SETTINGS)
    assert dict(arg.split("=", 1) for arg in command[2::2]) == PG_SERVER_SETTINGS


def test_demo_hosts_are_published_where_the_local_stack_listens(
    project: dict[str, Any], cfg: StackConfig
) -> None:
    for i, name in enumerate(SSH_HOST_NAMES):
        host = project["services"][name]
        assert host["environment"]["HOST_NAME"] == name
        assert _published(host) == [(cfg.ssh_address(i), cfg.ssh_port, 22)]
        assert host["depends_on"]["ssh-keys"]["condition"] == "service_completed_successfully"


def test_demo_hosts_use_the_stack_sshd_config() -> None:
    dockerfile = (ROOT / "docker" / "sshd" / "Dockerfile").read_text()
    assert "COPY stack/templates/sshd_config" in dockerfile
    placeholders = set(re.findall(r"\{(\w+)\}", (ROOT / "stack/templates/sshd_config").read_text()))
    entrypoint = (ROOT / "docker" / "sshd" / "entrypoint.sh").read_text()
    assert {p for p in placeholders if "{" + p + "}" not in entrypoint} == set()


def test_the_fleetrun_image_builds_what_pip_installs_here() -> None:
    # No Docker engine here: check the build context against the packaging it must feed.
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in found["include"]}
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.MULTILINE))
    assert packages <= copied
    assert "COPY pyproject.toml setup.py README.md ./" in dockerfile
    # The sink's native decoder is compiled in the build stage; the image refuses to exist
    # without it (the Python path would work, at ~40% more CPU per row).
    assert "gcc" in dockerfile
    assert "assert NATIVE" in dockerfile


def test_fleetrun_services_share_the_local_stack_settings(project: dict[str, Any]) -> None:
    env_keys = {
        "FLEETRUN_KAFKA_BOOTSTRAP",
        "FLEETRUN_TOPIC_PREFIX",
        "FLEETRUN_PG_DSN",
        "FLEETRUN_SSH_USER",
        "FLEETRUN_SSH_CLIENT_KEYS",
        "FLEETRUN_SSH_KNOWN_HOSTS",
        "FLEETRUN_INVENTORY",
    }
    for name in ("collector", "sink", "migrate", "cli"):
        service = project["services"][name]
        assert env_keys <= set(service["environment"]), name
        assert service["image"] == "fleetrun/fleetrun:local"
    assert project["services"]["collector"]["command"] == ["collector"]
    assert project["services"]["sink"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
