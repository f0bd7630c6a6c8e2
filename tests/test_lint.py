"""The code stays ruff-clean (style, imports, likely bugs)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_ruff_is_clean():
    folders = [name for name in ("core", "tui", "presets", "tests", "bench") if (REPO / name).is_dir()]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *folders],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]
