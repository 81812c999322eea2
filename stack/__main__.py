"""`python -m stack up|down|status|env|reset|restart SERVICE|stop SERVICE|start SERVICE`."""

from __future__ import annotations

import argparse
import sys

from stack.proc import StackError
from stack.services import Stack


def main(argv: list[str] | None = None) -> int:
    """Run one stack command; exit 1 with the failing service's log on errors."""
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument(
        "command", choices=["up", "down", "status", "env", "reset", "start", "stop", "restart"]
    )
    parser.add_argument(
        "service",
        nargs="?",
        help="kafka, postgres, sshd, collector, sink or web (start/stop/restart)",
    )
    parser.add_argument(
        "--apps",
        action="store_true",
        help="with `up`: also run fleetrun's collector, sink and web console",
    )
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        return _dispatch(stack, args.command, args.service, apps=args.apps)
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1


def _dispatch(stack: Stack, command: str, service: str | None, *, apps: bool) -> int:
    if command in ("start", "stop", "restart"):
        if service is None:
            raise SystemExit(f"`{command}` needs a service: kafka, postgres, sshd, collector, sink")
        svc = stack.service(service)
        if command in ("stop", "restart"):
            svc.down()
        if command in ("start", "restart"):
            svc.install()
            svc.up()
        return 0
    if command == "up":
        stack.up(apps=apps)
        _print_status(stack)
        print(f"env file: {stack.cfg.env_file}")
        return 0
    if command == "down":
        stack.down()
        print("stack: stopped (data kept; `python -m stack reset` deletes it)")
        return 0
    if command == "reset":
        stack.reset()
        print(f"stack: stopped and removed {stack.cfg.state_dir}")
        return 0
    if command == "env":
        print(stack.cfg.env_file)
        return 0
    return 0 if _print_status(stack) else 3


def _print_status(stack: Stack) -> bool:
    all_up = True
    for name, running, where, log in stack.status():
        all_up &= running
        print(f"{name:9} {'up  ' if running else 'DOWN'} {where}\n{'':14}log: {log}")
    return all_up


if __name__ == "__main__":
    sys.exit(main())
