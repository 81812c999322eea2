"""`fleetrun hosts`: how target expressions expand, resolved as the collector would resolve them."""

from __future__ import annotations

from collections.abc import Iterable

from fleetrun.cli.errors import CliError
from fleetrun.cli.grouping import hosts_count
from fleetrun.cli.settings import CliSettings
from fleetrun.runtime.settings import SettingsError, load
from schemas import SchemaError, expand_targets, fold


def preview(cli: CliSettings, expressions: list[str]) -> str:
    """The folded host set, its size, and one line per host: user@address:port (via jump)."""
    from collector.inventory import Inventory
    from collector.settings import CollectorSettings

    # The rest of the resolution (ssh_user, ssh_config, ...) is the collector's configuration.
    overrides = {"inventory": cli.inventory} if cli.inventory is not None else None
    try:
        cfg = load(CollectorSettings, section="collector", overrides=overrides)
        inventory = Inventory.load(cfg.inventory, cfg)
    except (SettingsError, SchemaError, OSError) as exc:
        raise CliError(f"inventory: {exc}") from None
    try:
        targets = expand_targets(expressions, inventory.groups)
    except SchemaError as exc:
        raise CliError(str(exc)) from None
    specs = [(t, inventory.resolve(t)) for t in targets]
    folded = fold_endpoints((str(t.name), s.user, s.port) for t, s in specs)
    lines = [f"{folded} ({hosts_count(len(targets))})"]
    width = max(len(str(t)) for t in targets)
    for t, spec in specs:
        via = f" via {spec.jump.name}" if spec.jump else ""
        lines.append(f"  {t!s:<{width}}  {spec.user}@{spec.address}:{spec.port}{via}")
    return "\n".join(lines)


def fold_endpoints(endpoints: Iterable[tuple[str, str, int]]) -> str:
    """Fold (name, user, port) into node sets, one per user and port when they differ.

    `web[1-2]` when every host has the same user and port; otherwise `alice@web[1-2]:22
    bob@web1:2200`: folding names alone would show two endpoints of one name as one host.
    """
    by_login: dict[tuple[str, int], list[str]] = {}
    for name, user, port in endpoints:
        by_login.setdefault((user, port), []).append(name)
    if len(by_login) == 1:
        return fold(next(iter(by_login.values())))
    return " ".join(f"{user}@{fold(names)}:{port}" for (user, port), names in by_login.items())
