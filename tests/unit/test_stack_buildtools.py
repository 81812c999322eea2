"""stack.buildtools: what pip needs to compile the native decoder, installed or named."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack import buildtools
from stack.proc import StackError


def test_nothing_is_missing_here() -> None:
    assert buildtools.missing() == []


def test_a_missing_compiler_and_headers_name_their_debian_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("sysconfig.get_paths", lambda: {"include": str(tmp_path)})
    dev = f"python{sys.version_info.major}.{sys.version_info.minor}-dev"
    assert buildtools.missing() == ["gcc", "libc6-dev", dev]


def test_not_being_able_to_install_them_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(buildtools, "missing", lambda: ["gcc"])

    def refuse(packages: list[str]) -> None:
        raise StackError("missing Debian packages: gcc; install them or run as root")

    monkeypatch.setattr(buildtools, "apt_install", refuse)
    assert buildtools.main() == 0
    err = capsys.readouterr().err
    assert "native decoder will not be built" in err
    assert "install them" in err


def test_the_compiler_checked_is_the_one_setuptools_will_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-here -O2")
    assert buildtools.missing()[:2] == ["gcc", "libc6-dev"]
