"""The two ways to install that the README gives, `make venv` and `conda env create -f environment.yml`, install the
same extras, and every one of them is an extra of pyproject.toml (a misspelt one makes pip only warn); the command
emofx names for a missing extra installs it where emofx runs."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

import yaml

from emofx.crowd import aggregate
from emofx.data import collect, landmarks
from emofx.data.paths import install_command
from emofx.pipeline import executors

REPO = Path(__file__).resolve().parents[1]


def _makefile_extras() -> list[str]:
    match = re.search(r"^EXTRAS \?= (\S+)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert match, "Makefile: no `EXTRAS ?= ...` line"
    return match.group(1).split(",")


def _conda_extras() -> list[str]:
    spec = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict))
    match = re.fullmatch(r"-e \.\[([\w,-]+)\]", pip[0])
    assert match, f"environment.yml: the pip entry {pip[0]!r} is not `-e .[EXTRAS]`"
    return match.group(1).split(",")


def _pyproject_extras() -> set[str]:
    """The names under [project.optional-dependencies] (read without tomllib, which Python 3.10 lacks)."""
    table = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+) = \[", table, flags=re.M))


def test_conda_and_make_install_the_same_extras_of_pyproject():
    assert _makefile_extras() == _conda_extras()
    assert "landmarks" in _makefile_extras() and set(_makefile_extras()) <= _pyproject_extras()


def test_a_missing_extra_is_installed_by_this_python():
    """A bare `pip install "emofx[crowd]"` may be another environment's pip, where emofx (not on PyPI) is unknown."""
    python = shlex.quote(sys.executable)
    assert install_command("crowd") == f'{python} -m pip install "emofx[crowd]"'
    for hint in (landmarks.INSTALL_HINT, collect.HEIC_EXTRA, aggregate.CROWD_EXTRA, executors.INSTALL_HINT):
        assert hint.startswith(f"{python} -m pip install "), hint


def test_a_source_tree_not_installed_installs_itself_editable(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    assert install_command("heic") == f"{shlex.quote(sys.executable)} -m pip install -e {shlex.quote(f'{REPO}[heic]')}"
