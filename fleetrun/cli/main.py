"""`fleetrun`: run commands on a fleet, follow them, query their results, run the services."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import typer
from rich.console import Console

from fleetrun.cli.errors import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from fleetrun.cli.safetext import write_out
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime import logs, process
from fleetrun.runtime.kafkaauth import login_problem
from fleetrun.runtime.settings import ServiceSettings, SettingsError, load_with_sources, render

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run shell commands across a fleet over SSH, driven by Kafka; keep every result.",
)
stderr = Console(stderr=True, soft_wrap=True)  # long lines stay whole for grep and logs
_state = {"debug": False}
RAW_HELP = "Print the hosts' output as it is, control characters (ESC, BEL…) included."


def settings() -> CliSettings:
    """The CLI settings from env + TOML (FLEETRUN_CONFIG), or a one-line error."""
    try:
        return load_with_sources(CliSettings)[0]
    except SettingsError as exc:
        raise CliError(str(exc)) from None


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug
    # Client libraries log connection failures themselves; the CLI reports them once, itself.
    logging.basicConfig(level=logging.DEBUG if debug else logging.CRITICAL, format="%(message)s")


@app.command()
def run(
    command: Annotated[
        str | None,
        typer.Argument(help="One shell command line, run with the login shell (or --template)."),
    ] = None,
    target: Annotated[
        list[str],
        typer.Option("-t", "--target", help="Hosts: web[01-20].dc1, @group, user@host:port, !excl"),
    ] = [],  # noqa: B006 (typer reads the default; build_request says when it is empty)
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow until done.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print host: line as output comes; waits.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON lines.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help=RAW_HELP)] = False,
    timeout: Annotated[str, typer.Option(help="Command deadline per host (30s, 5m).")] = "60s",
    connect_timeout: Annotated[str, typer.Option(help="TCP + SSH login deadline.")] = "10s",
    concurrency: Annotated[int | None, typer.Option(help="Hosts at once for this request.")] = None,
    max_errors: Annotated[
        str | None, typer.Option(help="Failed hosts (3) or share (10%) before skipping the rest.")
    ] = None,
    max_output: Annotated[
        int | None, typer.Option("--max-output", help="Bytes kept per stream per host.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="Connection retries (unreachable only).")
    ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=value.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value.")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Skip hosts not started within this time (10m).")
    ] = None,
    wait_timeout: Annotated[
        str | None,
        typer.Option(
            help="Stop waiting after this long (the request continues); default: as long as "
            "the request can take (its timeouts, in waves of --concurrency), at least 10m."
        ),
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Use this UUID as the request id (default: a new one).")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Run this template of the collector's policy instead.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Template parameter name=value.")
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(help="Sign with this SSH key (file, or .pub of an ssh-agent key)."),
    ] = None,
) -> None:
    """Submit COMMAND for the targets; with --wait show progress, then hosts grouped by output."""
    from fleetrun.cli.run import RunOptions, build_request, parse_wait_timeout_s, run_and_wait

    cfg = settings()
    opts = RunOptions(
        command=command,
        targets=target,
        timeout=timeout,
        connect_timeout=connect_timeout,
        concurrency=concurrency,
        max_errors=max_errors,
        max_output_bytes=max_output,
        retries=retries,
        env=tuple(env or ()),
        labels=tuple(label or ()),
        expires_in=expires_in,
        request_id=request_id,
        template=template,
        params=tuple(param or ()),
    )
    request = build_request(opts, cfg.who)
    if follow:
        request = msgspec.structs.replace(request, stream_output=True)
    key = sign_key or cfg.sign_key
    if key is not None:  # last: the signature covers every field
        from fleetrun.cli.signing import sign_request

        request = sign_request(request, key)
    wait_s = None if wait_timeout is None else parse_wait_timeout_s(wait_timeout)
    try:
        code = asyncio.run(
            run_and_wait(
                cfg,
                request,
                wait=wait or follow,
                wait_timeout_s=wait_s,
                as_json=as_json,
                console=stderr,
                follow=follow,
                raw=raw,
            )
        )
    except KeyboardInterrupt:
        # The request is already acknowledged by Kafka: only the waiting stops.
        rid = request.request_id
        stderr.print(f"stopped waiting; request {rid} keeps running: fleetrun status {rid}")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


@app.command()
def cancel(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID")],
    reason: Annotated[
        str | None, typer.Option(help="Why, for the record (at most 1,024 characters).")
    ] = None,
    wait_timeout: Annotated[
        str, typer.Option(help="How long to wait for the collector's answer.")
    ] = "30s",
) -> None:
    """Cancel a request: hosts not started are skipped, running commands are killed."""
    from fleetrun.cli.cancel import build_cancel, cancel_and_report
    from fleetrun.cli.query import parse_request_id
    from fleetrun.cli.run import parse_duration_s

    cfg = settings()
    record = build_cancel(parse_request_id(request_id), cfg.who, reason)
    wait_s = parse_duration_s(wait_timeout, "--wait-timeout")
    try:
        code = asyncio.run(cancel_and_report(cfg, record, wait_s=wait_s, console=stderr))
    except KeyboardInterrupt:
        stderr.print(f"interrupted: see `fleetrun status {record.request_id}`")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


@app.command()
def tail(request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID")]) -> None:
    """Print a running request's output as host: line until it completes (run --follow's)."""
    from fleetrun.cli.query import parse_request_id
    from fleetrun.cli.tail import tail as follow_output

    rid = parse_request_id(request_id)
    try:
        code = asyncio.run(follow_output(settings(), rid, stderr))
    except KeyboardInterrupt:
        stderr.print(f"stopped following; see `fleetrun status {rid}`")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


@app.command()
def results(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID")],
    as_json: Annotated[
        bool, typer.Option("--json", help="One contract JSON result per line.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, one row per host.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help=RAW_HELP)] = False,
    host: Annotated[str | None, typer.Option(help="Only this host.")] = None,
) -> None:
    """Stored results of a request, hosts grouped by identical output (from PostgreSQL)."""
    from fleetrun.cli.query import parse_request_id, show_results

    if as_json and as_csv:
        raise CliError("choose one of --json and --csv")
    fmt = "json" if as_json else "csv" if as_csv else "text"
    rid = parse_request_id(request_id)
    text, code = asyncio.run(show_results(settings(), rid, fmt=fmt, host=host, raw=raw))
    write_out(text)
    raise typer.Exit(code)


@app.command()
def status(request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID")]) -> None:
    """A request's state and its counts per status (from PostgreSQL)."""
    from fleetrun.cli.query import parse_request_id, show_status

    print(asyncio.run(show_status(settings(), parse_request_id(request_id))))


@app.command()
def requests(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """Recent requests with their host counts (from PostgreSQL)."""
    from fleetrun.cli.query import show_requests

    print(asyncio.run(show_requests(settings(), limit)))


@app.command()
def hosts(
    expressions: Annotated[list[str], typer.Argument(help="Target expressions to preview.")],
) -> None:
    """Preview how target expressions expand against the collector's inventory."""
    from fleetrun.cli.preview import preview

    print(preview(settings(), expressions))


ShowConfig = Annotated[
    bool,
    typer.Option(
        "--show-config", help="Print the settings, where each came from (secrets masked), exit."
    ),
]


@app.command()
def collector(show_config: ShowConfig = False) -> None:
    """Run the collector service until SIGTERM/SIGINT."""
    from collector.app import serve
    from collector.settings import CollectorSettings

    settings = _service_settings(CollectorSettings, show_config)
    logs.setup(settings.log_level, settings.log_format)
    raise typer.Exit(process.run(serve(settings)))


@app.command()
def sink(show_config: ShowConfig = False) -> None:
    """Run the sink service until SIGTERM/SIGINT."""
    from sink.app import serve
    from sink.settings import SinkSettings

    settings = _service_settings(SinkSettings, show_config)
    logs.setup(settings.log_level, settings.log_format)
    raise typer.Exit(process.run(serve(settings)))


@app.command()
def web(show_config: ShowConfig = False) -> None:
    """Run the web console (requests, results, live progress, cancel) until SIGTERM/SIGINT."""
    from fleetrun.cli.web.service import serve
    from fleetrun.cli.web.settings import WebSettings

    settings = _service_settings(WebSettings, show_config)
    logs.setup(settings.log_level, settings.log_format)
    raise typer.Exit(process.run(serve(settings)))


@app.command()
def migrate(show_config: ShowConfig = False) -> None:
    """Apply the PostgreSQL migrations (safe to run twice, or from two places at once)."""
    from sink.app import migrate_only
    from sink.settings import SinkSettings

    settings = _service_settings(SinkSettings, show_config)
    logs.setup(settings.log_level, settings.log_format)
    raise typer.Exit(process.run(migrate_only(settings)))


S = TypeVar("S", bound=ServiceSettings)


def _service_settings(cls: type[S], show_config: bool) -> S:
    """A service's settings, built here at the edge; with --show-config, print them and exit."""
    try:
        loaded, sources = load_with_sources(cls)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if show_config:
        print(render(loaded, sources))
        raise typer.Exit(0)
    return loaded


@app.command("config")
def show_config() -> None:
    """Print the CLI's settings with where each value came from (secrets masked)."""
    try:
        cfg, sources = load_with_sources(CliSettings)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    print(render(cfg, sources))


def main() -> None:
    """Console-script entry: one clear line for every user error, a traceback only with --debug."""
    try:
        # Without standalone mode the parser returns exit codes and raises usage errors to us,
        # so every error gets the same treatment.
        code = app(standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except CliError as exc:
        if exc.code == EXIT_UNAVAILABLE and (refused := _kafka_login_problem()):
            _fail(refused, EXIT_USAGE, exc)
        _fail(str(exc), exc.code, exc)
    except typer.Abort as exc:
        _fail("aborted", EXIT_INTERRUPTED, exc)
    except typer.TyperException as exc:  # usage errors: show the usage line, then the error
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        sys.exit(int(getattr(exc, "exit_code", EXIT_USAGE)))
    except OSError as exc:
        _fail(f"{exc}", EXIT_UNAVAILABLE, exc)
    except Exception as exc:
        _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", 1, exc)
    sys.exit(code if isinstance(code, int) else 0)


def _kafka_login_problem() -> str | None:
    """Why Kafka refused the CLI's login (TLS or SASL), when that is why it seemed down."""
    try:
        return asyncio.run(login_problem(load_with_sources(CliSettings)[0]))
    except (SettingsError, OSError):
        return None


def _fail(message: str, code: int, exc: BaseException) -> None:
    if _state["debug"]:
        import traceback

        traceback.print_exception(exc)
    stderr.print(f"fleetrun: {message}", highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
