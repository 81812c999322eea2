"""What pip needs to compile the sink's native decoder (schemas/_fastrow.c): a C compiler and
this Python's headers. `make setup` runs this first (stdlib only: nothing is installed yet).

Missing ones are installed from Debian packages when running as root; otherwise a warning says
what to install. Never fatal: without them fleetrun installs and runs on the pure-Python path,
and the test suite names what is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from stack.proc import StackError, apt_install


def missing() -> list[str]:
    """Debian packages that would provide what is missing (empty: nothing is)."""
    packages = []
    # The compiler setuptools will run: $CC, else the one this Python was built with.
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        packages += ["gcc", "libc6-dev"]
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        # The Debian interpreter's headers; another interpreter ships its own.
        packages.append(f"python{sys.version_info.major}.{sys.version_info.minor}-dev")
    return packages


def main() -> int:
    packages = missing()
    if not packages:
        return 0
    try:
        apt_install(packages)
    except StackError as exc:
        print(
            f"setup: the sink's native decoder will not be built ({exc}); fleetrun works "
            "without it, using ~40% more CPU per stored result",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
