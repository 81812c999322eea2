"""`make demo`: a real command on the demo hosts, end to end, shown the way a user would type it.

The stack (Kafka, PostgreSQL, three sshd hosts) and fleetrun's collector and sink are already up
(`python -m stack up --apps`). This runs `fleetrun run ... --wait`, waits until the sink has the
rows in PostgreSQL, shows them with `fleetrun results` and with plain SQL, and says how to go on.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from stack import StackConfig
from stack.services import Stack

FLEETRUN = str(Path(sys.executable).with_name("fleetrun"))
COMMAND = "uname -sr; id -un"
STORE_TIMEOUT_S = 60.0


def _show(argv: list[str], shown: str | None = None) -> subprocess.CompletedProcess[str]:
    """Print the command as a user would type it, then run it with output to the terminal."""
    shown = shown or shlex.join("fleetrun" if a == FLEETRUN else a for a in argv)
    print(f"\n$ {shown}", flush=True)
    return subprocess.run(argv, text=True, check=False, timeout=300, env=_ENV)


def _wait_for_rows(dsn: str, request_id: str) -> None:
    """Poll PostgreSQL until the sink has stored the completed request and every host's result."""

    async def stored() -> bool:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            row = await conn.fetchrow(
                "SELECT state, hosts_missing FROM request_summary WHERE request_id = $1",
                uuid.UUID(request_id),
                timeout=10,
            )
        finally:
            await conn.close(timeout=10)
        return row is not None and row["state"] == "completed" and row["hosts_missing"] == 0

    deadline = time.monotonic() + STORE_TIMEOUT_S
    while time.monotonic() < deadline:
        if asyncio.run(stored()):
            return
        time.sleep(0.5)
    raise SystemExit(
        f"demo: the sink has not stored request {request_id} after {STORE_TIMEOUT_S:.0f} s; "
        "see its log: `make stack-status`"
    )


_CFG = StackConfig.from_env()
# The CLI reads the stack's settings only because it is told to, as a user would tell it.
_ENV = {**os.environ, "FLEETRUN_ENV_FILE": str(_CFG.env_file)}


def main() -> int:
    """Run the demo; exit non-zero with the reason if any step fails."""
    cfg = _CFG
    request_id = str(uuid.uuid4())
    ran = _show([FLEETRUN, "run", COMMAND, "-t", "@demo", "--wait", "--request-id", request_id])
    if ran.returncode != 0:
        print(f"demo: `fleetrun run` exited {ran.returncode}", file=sys.stderr)
        return ran.returncode
    dsn = cfg.pg_dsn
    _wait_for_rows(dsn, request_id)
    _show([FLEETRUN, "results", request_id])
    # request_id is a UUID this script generated: safe to show inline, as a user would type it.
    sql = (
        "SELECT host, status, exit_status, duration_ms, "  # noqa: S608
        "replace(rtrim(stdout, chr(10)), chr(10), ' | ') AS stdout "
        f"FROM final_results WHERE request_id = '{request_id}' ORDER BY host"
    )
    if shutil.which("psql"):
        _show(["psql", dsn, "-c", sql], shown=f'psql {dsn} -c "{sql}"')
    print(f"\nThe web console: {Stack(cfg).web_url}  (requests, outputs, live progress)")
    print("\nThe stack keeps running. Next:")
    print(f"  export FLEETRUN_ENV_FILE={cfg.env_file}   # the CLI's settings for this stack")
    print("  .venv/bin/fleetrun run 'df -h /' -t @demo --wait   # another command")
    print("  .venv/bin/fleetrun requests                       # what ran, newest first")
    print(f"  psql {dsn}")
    print("      then e.g.: SELECT * FROM request_summary;  SELECT * FROM host_latest_result;")
    print("  make stack-status    # where everything runs, and its logs")
    print("  make stack-down      # stop it all (data kept; make stack-reset deletes it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
