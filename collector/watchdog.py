"""The remote half of stopping a command: a POSIX sh watchdog that kills its process group.

Why it exists: without a pty, OpenSSH does not end a command when its channel or its whole
connection closes. The SSH `signal` request does reach the command's process group on OpenSSH
≥ 7.9 (sshd makes every session's command a session leader and answers with killpg), but only
while the connection is up, only while the command's first process lives (a TERM-proof child
it left behind is out of reach once its parent died), and not at all on servers that refuse it
(forced-command sessions, other servers). So every command runs beside a watchdog that reads the
channel's stdin:

- a line on it (`STOP_LINE`, sent by collector.command) means "stop": TERM to the process
  group, `grace` seconds, KILL to the group — the watchdog is in the group and ignores TERM,
  so it outlives the TERM and its KILL takes whatever ignored TERM, itself last;
- end of file means the channel or the connection is gone (the collector closed it, shut down,
  crashed or lost the network: sshd exits and its pipes close) — or that the command exited on
  its own, since sshd closes the command's stdin when it reaps it. The two are told apart by
  whether the command's process (`$$`) still exists: a command that ended on its own keeps what
  it started in the background (`nohup x &` works as it always did); one that is still running
  is stopped as above.

The exec request is the script `wrap` returns; sshd runs it with the user's login shell, which:

1. forks the watchdog twice, so that no process of the command has it as a child (`wait` and
   waitpid(-1) in the command see nothing new), its stdin the channel, its output /dev/null
   (it must not hold the channel's stdout open);
2. execs the login shell again (`$SHELL -c COMMAND NAME`, NAME its basename, like sshd's argv)
   on the user's command, with stdin from /dev/null (what `ssh -n` gives: EOF at once). The
   command keeps the session's process, so its exit status or signal reaches the client as
   before, and its stdout, stderr and messages are what `$SHELL -c` prints. Env is untouched:
   it still travels as SSH env requests, never in this text;
3. when the server did not make that process a process group leader (OpenSSH always does), it
   runs the command through setsid(1) if the host has it: `$$` is not a group leader then, so
   setsid(2) succeeds in place, without the fork that `setsid -w` would add (which would also
   turn an exit signal into a status). Without setsid the watchdog signals `$$` alone.

Cost: two forks and one exec of the login shell per command on the host, no extra round trip.
Assumes a POSIX login shell (sh, dash, bash, ksh, zsh, busybox ash); `SHELL` passed in a
request's env chooses the shell the command runs with.

No library does this: asyncssh knows nothing of remote process groups, and a wrapper that reports
its process group on stderr for a second `kill` exec would need a live connection exactly when
the connection is what went away.
"""

from __future__ import annotations

import math
import re
from typing import Final

# What the collector writes to the channel's stdin to ask the watchdog to stop the command.
STOP_LINE: Final = b"\n"

# One line, so `ps` shows it whole. Inside the watchdog, $$ is the login shell's pid, which the
# exec keeps for the command: the session's process and (normally) its process group.
_WATCHDOG: Final = (
    "trap '' HUP INT QUIT TERM; "
    "read -r _ || kill -s 0 $$ || exit 0; "
    "kill -s TERM -- -$$ || kill -s TERM $$; "
    "sleep {grace}; "
    "kill -s KILL -- -$$ || kill -s KILL $$"
)
_HEAD: Final = (
    "( ( " + _WATCHDOG + " ) <&3 3<&- >/dev/null 2>&1 & ) 3<&0; "
    's=${{SHELL:-/bin/sh}}; set -- "$s" -c '
)
_TAIL: Final = (
    ' "${s##*/}"; '
    'kill -s 0 -- -$$ 2>/dev/null || ! command -v setsid >/dev/null 2>&1 || set -- setsid "$@"; '
    'exec "$@" </dev/null'
)
_HEAD_RE: Final = re.compile(re.escape(_HEAD.format(grace="GRACE")).replace("GRACE", "[0-9]+"))


def remote_grace_s(grace_s: float) -> int:
    """The watchdog's TERM-to-KILL wait: whole seconds (POSIX sleep), at least one."""
    return max(1, math.ceil(grace_s))


def quote(text: str) -> str:
    """`text` as one single-quoted POSIX shell word (always quoted, so `unwrap` can undo it)."""
    return "'" + text.replace("'", "'\\''") + "'"


def wrap(command: str, grace_s: float) -> str:
    """The exec request that runs `command` beside its watchdog (see the module docstring)."""
    return _HEAD.format(grace=remote_grace_s(grace_s)) + quote(command) + _TAIL


def unwrap(exec_request: str) -> str | None:
    """The command inside a `wrap` result, or None if `exec_request` is not one.

    For servers that do not run a shell (the simulated fleet): they answer for the command.
    """
    head = _HEAD_RE.match(exec_request)
    if head is None or not exec_request.endswith(_TAIL):
        return None
    quoted = exec_request[head.end() : len(exec_request) - len(_TAIL)]
    if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
        return None
    command = quoted[1:-1].replace("'\\''", "'")
    return command if quote(command) == quoted else None
