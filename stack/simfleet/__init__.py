"""Simulated SSH fleet for benchmarks and scale/fault tests.

One asyncssh server process answers as N distinct hosts, one loopback address each
(`127.1.0.1`, `127.1.0.2`, … on port 2200 by default; or one port each with
`--spread port`). It only ever binds to 127.0.0.0/8. Beside — never instead of — real sshd.

Run it::

    python -m stack.simfleet --hosts 1000 --dir .stack/simfleet \
        --profile ok=0.9,fail=0.03,hang=0.02,dead=0.05 --seed 1

or from tests, as a subprocess::

    async with running_fleet(20, tmp_path, profile="ok=10,hang=2", seed=1, port=0) as fleet:
        host = fleet.host("hang")   # SimHost(name, address, port, behaviour)
        asyncssh.connect(host.address, host.port, known_hosts=str(fleet.known_hosts),
                         client_keys=[str(fleet.client_key)], username="sim")
        stats = await fleet.wait_stats(lambda s: s["counters"]["killed"] >= 1)

Behaviours, chosen per host from the seeded profile (`name=weight,...`; weights are fractions
or counts; unnamed remainder of fractions goes to `ok`; exact counts, seeded order):

- `ok`: a tiny shell: `uname [-a|-n|-r|-s|-m|-o]`, `hostname [-i]`, `echo [-n]`, `true`,
  `false`, `exit N`, `sleep S`, `whoami`, `id`, `pwd`, `uptime`, `date`, `env`,
  `printenv [NAME]` (shows the env the client sent), `cat /etc/hostname|/etc/os-release|
  /proc/loadavg`, `head -c N /dev/zero`, `seq [FIRST] LAST`, joined by `;`, `&&`, `||`.
  Unknown command: stderr `sh: CMD: not found`, exit 127. Pipes/redirections: exit 2.
- `fail`: stderr `CMD: simulated failure on HOST`, exit 1..3 (fixed per host and seed).
- `slow`: waits `--slow-s` (3 s), then behaves like `ok`.
- `hang`: never answers until the client signals or closes the channel.
- `huge`: prints `--huge-bytes` (256 MiB) of text fast, in 64 KiB chunks under flow control.
- `disconnect`: prints one line, then drops TCP without an SSH disconnect message.
- `slow_handshake`: accepts TCP, then waits `--handshake-delay-s` (5 s) before the SSH banner.
- `auth_fail`: rejects every key (client: PermissionDenied).
- `wrong_key`: presents a host key other than the one in known_hosts
  (client: HostKeyNotVerifiable).
- `dead`: accepts TCP and never answers: no banner, input discarded (only connect timeouts
  help); the socket is freed when the client gives up.

Directives: a command starting with `sim:` behaves the same on every host that reaches a
session, whatever its behaviour (not on `dead`, `auth_fail`, `wrong_key`):

- `sim:hang` · `sim:exit N [MESSAGE]` (MESSAGE to stderr) · `sim:sleep S`
- `sim:bytes N [stdout|stderr]` (N bytes of text) · `sim:zeros N` (N NUL bytes)
- `sim:binary` (prints `shell.BINARY_PAYLOAD`: NULs and non-UTF-8 bytes)
- `sim:disconnect` · `sim:signal NAME` (exits as killed by signal NAME)
- `sim:mark TAG [then S]`: counts one execution of TAG on this host (stats.json `marks`:
  tag → host → count), then sleeps S seconds (a signal or a closed channel ends the sleep)
  and exits 0 — how a fault suite counts real executions without a marker file
- `sim:lines RATE S`: RATE lines a second for S seconds on stdout, each
  `<host> <n> <unix time ns>` (when it was written: how a benchmark measures live delay)

A signal from the client (or a break) or the channel closing ends a running command; the
simulated process counts as killed (`killed`, `killed_by_signal`, `killed_by_close`, and per
host). On a signal the session reports exit-signal NAME.

State dir (`--dir`, default `.stack/simfleet`), written at every start:

- `known_hosts`: `[127.1.0.5]:2200 ssh-ed25519 AAAA…` (one real ed25519 key per host, derived
  from the seed and host name so a restart presents the same keys; loopback use only)
- `client_key`, `client_key.pub`: the only key the fleet accepts (generated if missing)
- `hosts.txt`: `address:port name behaviour` per line
- `inventory.toml`: `[defaults]` (user, known_hosts, client_keys), `[hosts]` with
  `simNNNNN = { address, port, behaviour }`, `[groups]` with `all` and one per behaviour
- `simfleet.pid`; `ready` (JSON: pid, hosts, start_s, max_connections) only once every
  listener is up; `stats.json` (JSON: seq, pid, counters, hosts, marks) on SIGUSR1 and at
  exit (`counters.running`: commands started and not ended, what a client left behind);
  `simfleet.log` (key=value lines); `simfleet.out` (stdout/stderr under `running_fleet`)

File descriptors: the soft RLIMIT_NOFILE is raised to the hard limit; start fails with a
clear message unless hosts + `--max-connections` (default: hosts) + 100 spare fit. Beyond
that room, new connections are accepted and closed at once (`connections_refused`).
"""

from stack.simfleet.config import Behaviour, ConfigError, FleetConfig, SimHost, Spread
from stack.simfleet.runner import RunningFleet, SimFleetError, running_fleet
from stack.simfleet.server import SimFleet, StartError
from stack.simfleet.shell import BINARY_PAYLOAD

__all__ = [
    "BINARY_PAYLOAD",
    "Behaviour",
    "ConfigError",
    "FleetConfig",
    "RunningFleet",
    "SimFleet",
    "SimFleetError",
    "SimHost",
    "Spread",
    "StartError",
    "running_fleet",
]
