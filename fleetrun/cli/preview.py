"""`fleetrun hosts`: how target expressions expand, resolved as the collector would resolve them."""

from __future__ import annotations

from fleetrun.cli.errors import CliError
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
    lines = [f"{fold(str(t.name) for t in targets)} ({len(targets)} hosts)"]
    width = max(len(str(t)) for t in targets)
    for t in targets:
        spec = inventory.resolve(t)
        via = f" via {spec.jump.name}" if spec.jump else ""
        lines.append(f"  {t!s:<{width}}  {spec.user}@{spec.address}:{spec.port}{via}")
    return "\n".join(lines)
