"""Apache Kafka in KRaft mode from Maven Central jars, on the system JDK."""

from __future__ import annotations

import asyncio
import base64
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetrun.runtime.kafkaauth import KafkaClientSettings, client_options
from stack.acls import AclError, ensure_acls, fleetrun_acls
from stack.config import KAFKA_VERSION, TOPIC_CONFIGS, TOPIC_PARTITIONS, StackConfig
from stack.kafkasec import ADMIN, PRINCIPALS, KafkaSecrets
from stack.proc import (
    StackError,
    apt_install,
    fail,
    port_open,
    run,
    running_pid,
    spawn,
    stop_pid,
    wait_until,
)

TEMPLATES = Path(__file__).parent / "templates"
POM = Path(__file__).parent / "pom.xml"
START_TIMEOUT_S = 90.0


def new_cluster_id() -> str:
    """A random KRaft cluster id, never starting with "-".

    The id is 22 URL-safe base64 characters, so one in 64 starts with "-", which Kafka's
    argument parser takes for an option; Kafka's own Uuid.randomUuid() retries for the same
    reason.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka:
    """One combined broker+controller listening on 127.0.0.1."""

    name = "kafka"

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.props = self.home / "server.properties"
        self.log4j = self.home / "log4j2.properties"
        self.log = self.home / "server.log"
        self.stdout_log = self.home / "stdout.log"
        self.pid_file = self.home / "kafka.pid"
        self.libs = cfg.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.secrets = KafkaSecrets(self.home)
        # Written once the storage holds the principals' SCRAM credentials.
        self.scram_marker = self.data_dir / ".fleetrun-scram"

    # -- install -----------------------------------------------------------------------------
    def install(self) -> None:
        """Make sure a JDK and Maven exist, and resolve the Kafka jars once into the cache."""
        if shutil.which("java") is None or shutil.which("mvn") is None:
            apt_install(["openjdk-17-jre-headless", "maven"])
        marker = self.libs.parent / ".complete"
        if marker.exists():
            return
        print(f"stack: resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central", flush=True)
        self.libs.mkdir(parents=True, exist_ok=True)
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={self.libs}",
            ],
            what="kafka: resolving jars with Maven",
            timeout_s=900,
        )
        marker.write_text(KAFKA_VERSION + "\n")

    # -- lifecycle ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        return running_pid(self.pid_file, str(self.props))

    def up(self) -> None:
        """Format storage on first use, start the broker, wait for metadata, create topics and
        ACLs."""
        if self.pid() is None:
            self._write_config()
            self._format_once()
            self._start()
        elif "SASL_SSL" not in self.props.read_text():
            raise StackError(
                "kafka: the running broker was started without authentication; restart it: "
                "`python -m stack restart kafka`"
            )
        self.ensure_topics()

    def admin_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments that reach this broker as its super user."""
        return client_options(
            KafkaClientSettings(
                kafka_bootstrap=self.cfg.kafka_bootstrap, **self.secrets.client_settings(ADMIN)
            )
        )

    def down(self) -> None:
        pid = self.pid()
        if pid is not None:
            # A clean shutdown lets the next start skip log recovery.
            stop_pid(pid, str(self.props), timeout_s=45)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> tuple[bool, str]:
        pid = self.pid()
        where = f"{self.cfg.kafka_bootstrap} (KRaft, Apache Kafka {KAFKA_VERSION})"
        return pid is not None, f"pid {pid} {where}" if pid else where

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.secrets.ensure()
        values = {
            "port": self.cfg.kafka_port,
            "controller_port": self.cfg.kafka_controller_port,
            "data_dir": self.data_dir,
            "log_file": self.log,
            "admin_password": self.secrets.password(ADMIN),
            "broker_pem": self.secrets.broker_pem,
            "ca_cert": self.secrets.ca_cert,
        }
        self.props.touch(mode=0o600)
        self.props.chmod(0o600)  # it holds the super user's password
        for name, target in (("server.properties", self.props), ("log4j2.properties", self.log4j)):
            target.write_text((TEMPLATES / name).read_text().format(**values))

    def _format_once(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            if self.scram_marker.exists():
                return
            # Storage from before authentication has no SCRAM credentials, and they can only be
            # added at format time or through a broker that already authenticates someone.
            print(
                f"stack: kafka: {self.data_dir} predates SASL authentication; formatting it "
                "again (its topics are created anew)",
                flush=True,
            )
            shutil.rmtree(self.data_dir)
        cluster_id = new_cluster_id()
        scram = [
            f"--add-scram=SCRAM-SHA-512=[name={p},password={self.secrets.password(p)}]"
            for p in PRINCIPALS
        ]
        run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.props),
                *scram,
            ),
            what="kafka: formatting storage",
            timeout_s=120,
        )
        self.scram_marker.write_text("SCRAM-SHA-512 credentials of " + ",".join(PRINCIPALS) + "\n")

    def _start(self) -> None:
        for port in (self.cfg.kafka_port, self.cfg.kafka_controller_port):
            if port_open("127.0.0.1", port):
                raise StackError(
                    f"kafka: port 127.0.0.1:{port} is already taken by another process; "
                    "set FLEETRUN_STACK_KAFKA_PORT / FLEETRUN_STACK_KAFKA_CONTROLLER_PORT"
                )
        proc = spawn(self._java("kafka.Kafka", str(self.props)), log=self.stdout_log)
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            wait_until(
                lambda: port_open("127.0.0.1", self.cfg.kafka_port),
                timeout_s=START_TIMEOUT_S,
                what="kafka",
                alive=lambda: proc.poll() is None,
            )
        except StackError as exc:
            raise fail(
                "kafka", str(exc), self.log if self.log.exists() else self.stdout_log
            ) from None

    def ensure_topics(self) -> None:
        """Wait until the broker answers metadata requests, then create missing fleetrun topics
        and the principals' ACLs."""
        admin = self.admin_options()
        try:
            asyncio.run(
                ensure_topics(
                    admin,
                    {self.cfg.topic_prefix + t: n for t, n in TOPIC_PARTITIONS.items()},
                    timeout_s=START_TIMEOUT_S,
                    configs={self.cfg.topic_prefix + t: c for t, c in TOPIC_CONFIGS.items()},
                )
            )
        except (StackError, TimeoutError) as exc:
            raise fail(
                "kafka", f"broker does not answer metadata requests: {exc}", self.log
            ) from None
        try:
            asyncio.run(ensure_acls(admin, fleetrun_acls(self.cfg.topic_prefix), timeout_s=30))
        except (AclError, TimeoutError) as exc:
            raise fail("kafka", f"creating ACLs: {exc}", self.log) from None


async def ensure_topics(
    kafka: Mapping[str, Any],
    topics: dict[str, int],
    *,
    timeout_s: float,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create each topic (name -> partitions) that does not exist yet; idempotent.

    `kafka`: client options (bootstrap, security) of a principal that may create topics.
    `configs`: topic settings (name -> {key: value}) for topics created here.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

    async with asyncio.timeout(timeout_s):
        while True:
            admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=10_000)
            try:
                await admin.start()
                existing = set(await admin.list_topics())
                wanted = [
                    NewTopic(
                        name,
                        num_partitions=n,
                        replication_factor=1,
                        topic_configs=(configs or {}).get(name, {}),
                    )
                    for name, n in topics.items()
                    if name not in existing
                ]
                if wanted:
                    result = await admin.create_topics(wanted)
                    for topic, code, message in result.topic_errors:
                        if code not in (0, TopicAlreadyExistsError.errno):
                            raise StackError(f"creating topic {topic}: error {code} {message}")
                return
            except (KafkaConnectionError, KafkaError):
                # The broker accepts connections a little before its metadata is ready; the
                # surrounding deadline turns a broker that never gets there into an error.
                await asyncio.sleep(0.2)
            finally:
                await admin.close()
