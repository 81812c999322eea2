"""The simulated fleet: pure planning/config tables, then each behaviour over real SSH."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import pytest_asyncio

from stack.simfleet import BINARY_PAYLOAD, Behaviour, RunningFleet, SimFleetError, running_fleet
from stack.simfleet.config import (
    ConfigError,
    FleetConfig,
    Spread,
    assign_behaviours,
    build_hosts,
    fail_status,
    host_endpoints,
    parse_profile,
)
from stack.simfleet.files import StateFiles, hosts_text, inventory_toml, parse_hosts
from stack.simfleet.keys import derive_host_key, known_hosts_line
from stack.simfleet.server import FD_RESERVE, StartError, fd_budget
from stack.simfleet.shell import (
    Disconnect,
    Exit,
    Fill,
    Hang,
    HostContext,
    Lines,
    Mark,
    Plan,
    Signal,
    Sleep,
    Stream,
    Write,
    plan_command,
)

SEED = 7
SLOW_S = 0.5
HANDSHAKE_DELAY_S = 1.5
HUGE_BYTES = 8 * 1024 * 1024
# 20 hosts: every behaviour at least once.
PROFILE = (
    "ok=11,fail=1,slow=1,hang=1,huge=1,disconnect=1,slow_handshake=1,auth_fail=1,wrong_key=1,dead=1"
)
DEADLINE_S = 10.0


# --- pure: profiles, addressing, budgets, files -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok=1", {Behaviour.OK: 1.0}),
        ("hang=0.25", {Behaviour.HANG: 0.25, Behaviour.OK: 0.75}),
        ("ok=3,fail=1", {Behaviour.OK: 0.75, Behaviour.FAIL: 0.25}),
        ("ok=0.9, fail=0.1", {Behaviour.OK: 0.9, Behaviour.FAIL: 0.1}),
        ("dead=2,ok=0", {Behaviour.DEAD: 1.0}),
    ],
)
def test_parse_profile(text: str, expected: dict[Behaviour, float]) -> None:
    assert parse_profile(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope=1", "unknown behaviour"),
        ("ok", "not name=weight"),
        ("ok=x", "not a number"),
        ("ok=-1", ">= 0"),
        ("ok=1,ok=2", "twice"),
        ("ok=0", "no host"),
    ],
)
def test_parse_profile_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_profile(text)


def test_assign_behaviours_exact_counts_and_seeded_order() -> None:
    first = assign_behaviours(1000, "ok=0.9,fail=0.03,hang=0.02,dead=0.05", seed=1)
    counts = {b: first.count(b) for b in set(first)}
    assert counts == {Behaviour.OK: 900, Behaviour.FAIL: 30, Behaviour.HANG: 20, Behaviour.DEAD: 50}
    assert assign_behaviours(1000, "ok=0.9,fail=0.03,hang=0.02,dead=0.05", seed=1) == first
    assert assign_behaviours(1000, "ok=0.9,fail=0.03,hang=0.02,dead=0.05", seed=2) != first
    assert len(assign_behaviours(7, "ok=1,fail=1,hang=1", seed=3)) == 7


def test_host_endpoints() -> None:
    assert host_endpoints(3, "127.1.0.254", 2200, Spread.ADDRESS) == [
        ("127.1.0.254", 2200),
        ("127.1.0.255", 2200),
        ("127.1.1.0", 2200),
    ]
    assert host_endpoints(2, "127.0.0.1", 3000, Spread.PORT) == [
        ("127.0.0.1", 3000),
        ("127.0.0.1", 3001),
    ]


@pytest.mark.parametrize(
    ("n", "base", "port", "spread"),
    [
        (1, "10.0.0.1", 2200, Spread.ADDRESS),
        (1, "0.0.0.0", 2200, Spread.ADDRESS),
        (3, "127.255.255.253", 2200, Spread.ADDRESS),
        (1, "127.0.0.0", 2200, Spread.ADDRESS),
        (10, "127.0.0.1", 65530, Spread.PORT),
        (1, "localhost", 2200, Spread.ADDRESS),
    ],
)
def test_host_endpoints_stay_on_loopback(n: int, base: str, port: int, spread: Spread) -> None:
    with pytest.raises(ConfigError):
        host_endpoints(n, base, port, spread)


def test_fleet_config_rejects_port_zero_with_port_spread() -> None:
    with pytest.raises(ConfigError, match="port 0"):
        FleetConfig(hosts=2, port=0, spread=Spread.PORT)


def test_fd_budget() -> None:
    assert fd_budget(1000, 1000, 20000) == 20000 - 1000 - FD_RESERVE
    with pytest.raises(StartError, match=r"--max-connections 9900 or less.*hard limit"):
        fd_budget(10000, 10000, 20000)


def test_hosts_file_and_inventory(tmp_path: Path) -> None:
    config = FleetConfig(hosts=6, dir=tmp_path, profile="ok=4,hang=1,dead=1", seed=SEED)
    hosts = build_hosts(config)
    assert parse_hosts(hosts_text(hosts)) == hosts
    inventory = tomllib.loads(inventory_toml(hosts, StateFiles(tmp_path), "sim"))
    assert inventory["defaults"]["user"] == "sim"
    assert inventory["hosts"]["sim00001"] == {
        "address": hosts[0].address,
        "port": 2200,
        "behaviour": str(hosts[0].behaviour),
    }
    groups = inventory["groups"]
    assert groups["all"] == [h.name for h in hosts]
    assert len(groups["ok"]) == 4
    assert len(groups["hang"]) == len(groups["dead"]) == 1
    assert "fail" not in groups


def test_host_keys_are_stable_per_host_and_variant() -> None:
    key = derive_host_key(SEED, "sim00001")
    assert key.public_data == derive_host_key(SEED, "sim00001").public_data
    assert key.public_data != derive_host_key(SEED, "sim00002").public_data
    assert key.public_data != derive_host_key(SEED, "sim00001", "listed").public_data
    assert known_hosts_line("127.1.0.5", 2200, key).startswith("[127.1.0.5]:2200 ssh-ed25519 ")
    assert known_hosts_line("127.1.0.5", 22, key).startswith("127.1.0.5 ssh-ed25519 ")


# --- pure: what a host plans to do with a command -----------------------------------------


def _ctx(behaviour: Behaviour = Behaviour.OK) -> HostContext:
    return HostContext(
        name="sim00042",
        address="127.1.0.42",
        behaviour=behaviour,
        seed=SEED,
        env={"FOO": "bar"},
        slow_s=2.0,
        huge_bytes=100,
    )


def _out(text: str) -> Write:
    return Write(Stream.STDOUT, text.encode())


def _err(text: str) -> Write:
    return Write(Stream.STDERR, text.encode())


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("true", [Exit(0)]),
        ("false", [Exit(1)]),
        ("exit 3", [Exit(3)]),
        ("hostname", [_out("sim00042\n"), Exit(0)]),
        ("hostname -i", [_out("127.1.0.42\n"), Exit(0)]),
        ("uname", [_out("Linux\n"), Exit(0)]),
        ("uname -nm", [_out("sim00042 x86_64\n"), Exit(0)]),
        ("uname -x", [_err("uname: invalid option -- 'x'\n"), Exit(1)]),
        ("uname foo", [_err("uname: extra operand 'foo'\n"), Exit(1)]),
        ("sleep", [_err("sleep: missing operand\n"), Exit(1)]),
        ("echo 'a  b' c", [_out("a  b c\n"), Exit(0)]),
        ("echo -n x", [_out("x"), Exit(0)]),
        ("printenv FOO", [_out("bar\n"), Exit(0)]),
        ("printenv NOPE", [Exit(1)]),
        ("whoami", [_out("sim\n"), Exit(0)]),
        ("sleep 1.5", [Sleep(1.5), Exit(0)]),
        ("false && echo no", [Exit(1)]),
        ("false || echo yes", [_out("yes\n"), Exit(0)]),
        ("echo a; exit 4; echo b", [_out("a\n"), Exit(4)]),
        ("nosuch --flag", [_err("sh: nosuch: not found\n"), Exit(127)]),
        ("echo 'open", [_err("sh: syntax error: No closing quotation\n"), Exit(2)]),
        ("cat /etc/hostname", [_out("sim00042\n"), Exit(0)]),
        ("head -c 10 /dev/zero", [Fill(Stream.STDOUT, 10, zeros=True), Exit(0)]),
        ("seq 3", [_out("1\n2\n3\n"), Exit(0)]),
        (None, [_err("simfleet: interactive shells are not supported\n"), Exit(1)]),
    ],
)
def test_plan_shell(command: str | None, expected: Plan) -> None:
    assert plan_command(command, _ctx()) == expected


def test_plan_shell_realistic_uname() -> None:
    (write, exit_) = plan_command("uname -a", _ctx())
    assert isinstance(write, Write)
    assert write.data.decode().startswith("Linux sim00042 6.1.0-21-amd64 #1 SMP")
    assert write.data.decode().endswith("x86_64 GNU/Linux\n")
    assert exit_ == Exit(0)


@pytest.mark.parametrize("command", ["cat /dev/zero | head -c 5", "echo a; echo b > f", "x &"])
def test_plan_shell_refuses_unsupported_syntax_before_running(command: str) -> None:
    first, last = plan_command(command, _ctx())  # nothing runs: one error, then exit 2
    assert last == Exit(2)
    assert isinstance(first, Write)
    assert first.data.startswith(b"sh: simfleet does not support")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("sim:hang", [Hang()]),
        ("sim:exit 3", [Exit(3)]),
        ("sim:exit 5 boom now", [_err("boom now\n"), Exit(5)]),
        ("sim:sleep 2", [Sleep(2.0), Exit(0)]),
        ("sim:bytes 1048576", [Fill(Stream.STDOUT, 1048576), Exit(0)]),
        ("sim:bytes 10 stderr", [Fill(Stream.STDERR, 10), Exit(0)]),
        ("sim:zeros 10", [Fill(Stream.STDOUT, 10, zeros=True), Exit(0)]),
        ("sim:binary", [Write(Stream.STDOUT, BINARY_PAYLOAD), Exit(0)]),
        ("sim:disconnect", [_out("sim00042: about to drop the connection\n"), Disconnect()]),
        ("sim:signal sigkill", [Signal("KILL")]),
        ("sim:mark t-1.a", [Mark("t-1.a"), Exit(0)]),
        ("sim:mark t1 then 2.5", [Mark("t1"), Sleep(2.5), Exit(0)]),
        ("sim:mark t1 then 1 exit 3", [Mark("t1"), Sleep(1.0), Exit(3)]),
        ("sim:lines 1000 10", [Lines(1000, 10.0), Exit(0)]),
    ],
)
def test_plan_directive(command: str, expected: Plan) -> None:
    # Directives win over the host's behaviour.
    assert plan_command(command, _ctx(Behaviour.HANG)) == expected


@pytest.mark.parametrize(
    "command",
    [
        "sim:",
        "sim:exit",
        "sim:exit 300",
        "sim:sleep -1",
        "sim:x",
        "sim:mark",
        "sim:mark a/b",
        "sim:mark t then",
        "sim:mark t after 2",
        "sim:mark t then -1",
        "sim:lines 0 1",
        "sim:lines 10",
    ],
)
def test_plan_directive_bad_usage_exits_2(command: str) -> None:
    plan = plan_command(command, _ctx())
    assert plan[-1] == Exit(2)
    assert isinstance(plan[0], Write)
    assert plan[0].stream is Stream.STDERR


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (Behaviour.FAIL, [_err("uname: simulated failure on sim00042\n"), Exit(-1)]),
        (Behaviour.SLOW, [Sleep(2.0), _out("Linux\n"), Exit(0)]),
        (Behaviour.HANG, [Hang()]),
        (Behaviour.HUGE, [Fill(Stream.STDOUT, 100), Exit(0)]),
        (Behaviour.DISCONNECT, [_out("sim00042: starting\n"), Disconnect()]),
        (Behaviour.SLOW_HANDSHAKE, [_out("Linux\n"), Exit(0)]),
    ],
)
def test_plan_behaviour(behaviour: Behaviour, expected: Plan) -> None:
    if behaviour is Behaviour.FAIL:
        expected = [expected[0], Exit(fail_status(SEED, "sim00042"))]
    assert plan_command("uname", _ctx(behaviour)) == expected


# --- over SSH, against a fleet subprocess -------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningFleet]:
    async with running_fleet(
        20,
        tmp_path_factory.mktemp("simfleet"),
        profile=PROFILE,
        seed=SEED,
        port=0,  # free ports: no clash with other fleets on the same addresses
        slow_s=SLOW_S,
        handshake_delay_s=HANDSHAKE_DELAY_S,
        huge_bytes=HUGE_BYTES,
        ready_timeout_s=60,
    ) as running:
        yield running


def _connect(
    fleet: RunningFleet, behaviour: Behaviour, connect_timeout_s: float = DEADLINE_S
) -> Any:
    host = fleet.host(behaviour)
    return asyncssh.connect(
        host.address,
        host.port,
        username="sim",
        known_hosts=str(fleet.known_hosts),
        client_keys=[str(fleet.client_key)],
        agent_path=None,
        config=None,
        connect_timeout=connect_timeout_s,
    )


async def _run(
    fleet: RunningFleet, behaviour: Behaviour, command: str, **kwargs: Any
) -> asyncssh.SSHCompletedProcess:
    async with asyncio.timeout(DEADLINE_S), _connect(fleet, behaviour) as conn:
        result: asyncssh.SSHCompletedProcess = await conn.run(command, **kwargs)
        return result


def _killed(name: str, at_least: int) -> Callable[[dict[str, Any]], bool]:
    def check(stats: dict[str, Any]) -> bool:
        killed: int = stats["hosts"].get(name, {}).get("killed", 0)
        return killed >= at_least

    return check


async def test_fleet_files(fleet: RunningFleet) -> None:
    assert len(fleet.hosts) == 20
    assert {h.behaviour for h in fleet.hosts} == set(Behaviour)
    assert all(h.address.startswith("127.") for h in fleet.hosts)
    lines = fleet.known_hosts.read_text().splitlines()
    assert len(lines) == 20
    assert lines[0].startswith(f"[{fleet.hosts[0].address}]:{fleet.hosts[0].port} ssh-ed25519 ")
    inventory = tomllib.loads(fleet.inventory.read_text())
    assert inventory["groups"]["hang"] == [fleet.host(Behaviour.HANG).name]


async def test_ok_realistic_output(fleet: RunningFleet) -> None:
    name = fleet.host(Behaviour.OK).name
    result = await _run(fleet, Behaviour.OK, "uname -a")
    assert result.exit_status == 0
    assert isinstance(result.stdout, str)
    assert result.stdout.startswith(f"Linux {name} ")
    missing = await _run(fleet, Behaviour.OK, "frobnicate")
    assert (missing.exit_status, missing.stderr) == (127, "sh: frobnicate: not found\n")
    env = await _run(fleet, Behaviour.OK, "printenv FLEET_VAR", env={"FLEET_VAR": "x y"})
    assert env.stdout == "x y\n"


async def test_fail_exit_status(fleet: RunningFleet) -> None:
    host = fleet.host(Behaviour.FAIL)
    result = await _run(fleet, Behaviour.FAIL, "uname -a")
    assert result.exit_status == fail_status(SEED, host.name)
    assert result.stderr == f"uname: simulated failure on {host.name}\n"


async def test_exit_directive(fleet: RunningFleet) -> None:
    result = await _run(fleet, Behaviour.OK, "sim:exit 3 went wrong")
    assert (result.exit_status, result.stderr) == (3, "went wrong\n")


async def test_wrong_key_is_not_verifiable(fleet: RunningFleet) -> None:
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with asyncio.timeout(DEADLINE_S), _connect(fleet, Behaviour.WRONG_KEY):
            pass


async def test_auth_fail_is_permission_denied(fleet: RunningFleet) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with asyncio.timeout(DEADLINE_S), _connect(fleet, Behaviour.AUTH_FAIL):
            pass


async def test_hang_is_killed_when_the_channel_closes(fleet: RunningFleet) -> None:
    name = fleet.host(Behaviour.HANG).name
    before = (await fleet.stats())["hosts"].get(name, {}).get("killed", 0)
    async with asyncio.timeout(DEADLINE_S), _connect(fleet, Behaviour.HANG) as conn:
        process = await conn.create_process("uname -a", stdin=asyncssh.DEVNULL)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await process.wait()
        process.close()
        await process.wait_closed()
    stats = await fleet.wait_stats(_killed(name, before + 1), timeout_s=DEADLINE_S)
    assert stats["counters"]["killed_by_close"] >= 1


async def test_signal_kills_a_hung_command(fleet: RunningFleet) -> None:
    async with asyncio.timeout(DEADLINE_S), _connect(fleet, Behaviour.OK) as conn:
        # stdin already closed: the signal must still reach the simulated process.
        process = await conn.create_process("sim:hang", stdin=asyncssh.DEVNULL)
        process.send_signal("TERM")
        result = await process.wait()
    assert result.exit_signal is not None
    assert result.exit_signal[0] == "TERM"
    assert result.exit_status == -1


async def test_sleep_directive_and_slow_host(fleet: RunningFleet) -> None:
    started = time.monotonic()
    slow = await _run(fleet, Behaviour.SLOW, "hostname")
    assert time.monotonic() - started >= SLOW_S
    assert slow.stdout == f"{fleet.host(Behaviour.SLOW).name}\n"
    assert (await _run(fleet, Behaviour.OK, "sim:sleep 0.1")).exit_status == 0


async def test_mark_counts_executions_per_host_and_tag(fleet: RunningFleet) -> None:
    ok, slow = fleet.host(Behaviour.OK).name, fleet.host(Behaviour.SLOW).name
    for behaviour in (Behaviour.OK, Behaviour.OK, Behaviour.SLOW):
        assert (await _run(fleet, behaviour, "sim:mark counted then 0")).exit_status == 0
    await _run(fleet, Behaviour.OK, "sim:mark other")
    stats = await fleet.stats()
    assert stats["marks"]["counted"] == {ok: 2, slow: 1}
    assert stats["marks"]["other"] == {ok: 1}


async def test_lines_come_at_their_rate_with_the_time_they_were_written(
    fleet: RunningFleet,
) -> None:
    name = fleet.host(Behaviour.OK).name
    before = time.time_ns()
    result = await _run(fleet, Behaviour.OK, "sim:lines 200 0.5")
    after = time.time_ns()
    lines = [line.split() for line in str(result.stdout).splitlines()]
    assert [(host, int(n)) for host, n, _ in lines] == [(name, n) for n in range(100)]
    written = [int(at) for _, _, at in lines]
    assert before <= written[0] <= written[-1] <= after
    # Spread over the half second, not printed at once.
    assert (written[-1] - written[0]) / 1e9 >= 0.4


async def test_running_counts_a_command_until_its_channel_closes(fleet: RunningFleet) -> None:
    name = fleet.host(Behaviour.OK).name
    async with asyncio.timeout(DEADLINE_S), _connect(fleet, Behaviour.OK) as conn:
        process = await conn.create_process("sim:mark long then 60", stdin=asyncssh.DEVNULL)
        stats = await fleet.wait_stats(
            lambda s: s["marks"].get("long", {}).get(name) == 1, timeout_s=DEADLINE_S
        )
        assert stats["counters"]["running"] >= 1
        process.close()
        await process.wait_closed()
    stats = await fleet.wait_stats(lambda s: s["counters"]["running"] == 0, timeout_s=DEADLINE_S)
    assert stats["hosts"][name]["killed"] >= 1


@pytest.mark.parametrize(
    ("behaviour", "command", "partial"),
    [
        (Behaviour.DISCONNECT, "uname -a", "starting"),
        (Behaviour.OK, "sim:disconnect", "about to drop the connection"),
    ],
)
async def test_disconnect_drops_the_connection(
    fleet: RunningFleet, behaviour: Behaviour, command: str, partial: str
) -> None:
    name = fleet.host(behaviour).name
    async with asyncio.timeout(DEADLINE_S), _connect(fleet, behaviour) as conn:
        # asyncssh's run() does not raise on a lost connection: it returns no exit status.
        result = await conn.run(command)
        assert (result.exit_status, result.exit_signal, result.returncode) == (None, None, None)
        assert result.stdout == f"{name}: {partial}\n"
        await conn.wait_closed()
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("true")


async def test_binary_output_round_trips(fleet: RunningFleet) -> None:
    result = await _run(fleet, Behaviour.OK, "sim:binary", encoding=None)
    assert result.stdout == BINARY_PAYLOAD


async def test_huge_output_arrives_fully(fleet: RunningFleet) -> None:
    result = await _run(fleet, Behaviour.HUGE, "cat big.log", encoding=None)
    assert isinstance(result.stdout, bytes)
    assert len(result.stdout) == HUGE_BYTES
    assert result.exit_status == 0
    stderr = await _run(fleet, Behaviour.OK, "sim:bytes 100000 stderr", encoding=None)
    assert (len(stderr.stdout or b""), len(stderr.stderr or b"")) == (0, 100000)


async def test_slow_handshake(fleet: RunningFleet) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with _connect(fleet, Behaviour.SLOW_HANDSHAKE, connect_timeout_s=0.3):
            pass
    started = time.monotonic()
    async with asyncio.timeout(DEADLINE_S), _connect(fleet, Behaviour.SLOW_HANDSHAKE) as conn:
        assert time.monotonic() - started >= HANDSHAKE_DELAY_S
        assert (await conn.run("true")).exit_status == 0


async def test_dead_host_accepts_tcp_and_never_speaks(fleet: RunningFleet) -> None:
    host = fleet.host(Behaviour.DEAD)
    async with asyncio.timeout(DEADLINE_S):
        reader, writer = await asyncio.open_connection(host.address, host.port)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await reader.read(1)
        finally:
            writer.close()
            await writer.wait_closed()
    with pytest.raises(asyncio.TimeoutError):
        async with _connect(fleet, Behaviour.DEAD, connect_timeout_s=0.3):
            pass
    # Clients that gave up leave nothing behind on the server (no fd leak).
    stats = await fleet.wait_stats(lambda s: s["counters"]["connections_active"] == 0)
    assert stats["counters"]["dead_connections"] >= 2


async def test_stop_writes_final_stats(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    async with running_fleet(1, tmp_path, port=0) as one:
        assert files.ready.exists()
        pid = one.pid
    assert not files.ready.exists()
    assert not files.pid.exists()
    assert f'"pid": {pid}' in files.stats.read_text()


async def test_start_fails_clearly_when_fds_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(SimFleetError, match="hard limit"):
        async with running_fleet(1, tmp_path, port=0, max_connections=10**8):
            pass
