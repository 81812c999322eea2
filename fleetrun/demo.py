"""Interim `make demo`: prove the local stack answers (Kafka, PostgreSQL, every sshd host).

Replaced by the end-to-end demo (`fleetrun run ... --wait`) once the collector and sink land.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import asyncssh
from aiokafka.admin import AIOKafkaAdminClient

from stack import StackConfig


def _read_env() -> dict[str, str]:
    path = StackConfig.from_env().env_file
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


async def _check(env: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=env["FLEETRUN_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith("fleetrun."))
    finally:
        await admin.close()
    print(f"kafka     {env['FLEETRUN_KAFKA_BOOTSTRAP']}: topics {', '.join(topics)}")
    conn = await asyncpg.connect(env["FLEETRUN_PG_DSN"], timeout=10)
    try:
        version = await conn.fetchval("SELECT version()", timeout=10)
    finally:
        await conn.close(timeout=10)
    print(f"postgres  {str(version).split(',')[0]}")
    for item in env["FLEETRUN_STACK_SSH_HOSTS"].split(","):
        name, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        async with asyncssh.connect(
            host,
            int(port),
            username=env["FLEETRUN_SSH_USER"],
            client_keys=[env["FLEETRUN_SSH_CLIENT_KEYS"]],
            known_hosts=env["FLEETRUN_SSH_KNOWN_HOSTS"],
            agent_path=None,
            connect_timeout=10,
        ) as ssh:
            out = await ssh.run("uname -sr", check=True, timeout=10)
        print(f"ssh       {name} ({address}): {str(out.stdout).strip()}")


def main() -> int:
    """Print one line per service proving it answers; exit 1 with the reason if one does not."""
    try:
        asyncio.run(_check(_read_env()))
    except (OSError, asyncssh.Error, asyncpg.PostgresError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print("stack is up; stop it with `make stack-down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
