"""The distribution ships every package folder and its data files, not only in editable installs."""

from __future__ import annotations

import sys
import zipfile

import pytest

from .conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

TOP = {"core": "tunedeck.core", "tui": "tunedeck.tui", "presets": "tunedeck.presets"}


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in TOP.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *parts)))
    assert found == listed


@pytest.mark.slow
def test_the_wheel_holds_modules_presets_and_styles(tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("tunedeck-*.whl"))).namelist()
    for expected in ("tunedeck/core/data/loading.py", "tunedeck/core/cli/commands/train.py",
                     "tunedeck/core/export/recipe.py", "tunedeck/tui/screens/live.py",
                     "tunedeck/tui/screens/live.tcss", "tunedeck/presets/mi50-2x.yaml",
                     "tunedeck/presets/datasets/demo_identity.json"):
        assert expected in names, expected
