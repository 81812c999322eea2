"""The README's configuration reference lists every setting of every service, as generated."""

from __future__ import annotations

import dataclasses

from fleetrun.docs import README, _services, reference, splice
from fleetrun.settings import env_name


def test_readme_reference_is_current() -> None:
    readme = README.read_text()
    assert splice(readme, reference()) == readme, "run `python -m fleetrun.docs` (make docs)"


def test_every_setting_is_in_the_readme() -> None:
    readme = README.read_text()
    for _, _, cls in _services():
        for field in dataclasses.fields(cls):
            assert f"`{env_name(field.name)}`" in readme
            assert field.metadata["help"], f"{cls.__name__}.{field.name} has no help text"


def test_secret_defaults_are_masked() -> None:
    assert "fleetrun:fleetrun@" not in reference()
