"""fleetrun's own services (collector, sink, web console) beside the stack, for the demo:
`up --apps`."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from stack.config import StackConfig
from stack.proc import StackError, fail, run, running_pid, spawn, stop_pid, wait_until

START_TIMEOUT_S = 60.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class App:
    """One fleetrun service process, started from this checkout's Python, logging to a file."""

    def __init__(
        self,
        cfg: StackConfig,
        name: str,
        ops_port: int,
        prepare: Sequence[str] = (),
        port_setting: str = "OPS_PORT",
    ) -> None:
        self.cfg = cfg
        self.name = name  # also its `fleetrun` command: `python -m fleetrun <name>`
        self.ops_port = ops_port
        self.port_setting = port_setting  # the service's setting for the port /healthz is on
        self.prepare = list(prepare)  # a `fleetrun` command run once before starting (migrate)
        self.home = cfg.state_dir / "apps"
        self.log = self.home / f"{name}.log"
        self.pid_file = self.home / f"{name}.pid"
        # The marker that proves a pid is ours: its command line.
        self.marker = f"-m fleetrun {name}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLEETRUN_ENV_FILE": str(self.cfg.env_file),
            f"FLEETRUN_{self.name.upper()}_{self.port_setting}": str(self.ops_port),
        }

    def install(self) -> None:
        """Nothing to install: the services come with this checkout."""

    def pid(self) -> int | None:
        return running_pid(self.pid_file, self.marker)

    def up(self) -> None:
        """Run the preparation step, start the service, wait until /healthz answers 200."""
        if self.pid() is not None:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        env = self._env()
        if self.prepare:
            run(
                [sys.executable, "-m", "fleetrun", *self.prepare],
                what=f"{self.name}: {' '.join(self.prepare)}",
                env=env,
            )
        proc = spawn([sys.executable, "-m", "fleetrun", self.name], log=self.log, env=env)
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            wait_until(
                lambda: _healthy(self.ops_port),
                timeout_s=START_TIMEOUT_S,
                what=self.name,
                alive=lambda: proc.poll() is None,
            )
        except StackError as exc:
            raise fail(self.name, str(exc), self.log) from None

    def down(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, self.marker, timeout_s=45)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> tuple[bool, str]:
        pid = self.pid()
        where = f"/metrics and /healthz on 127.0.0.1:{self.ops_port}"
        if self.port_setting == "PORT":  # a web app: its pages are on the same port
            where = f"http://127.0.0.1:{self.ops_port}/ (and {where})"
        return pid is not None, f"pid {pid} {where}" if pid else where
