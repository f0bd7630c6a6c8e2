"""The core/tui boundary: import-linter contracts that fail on planted violations, and what each module really loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import REPO

HEAVY = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "deepspeed", "bitsandbytes", "llama_cpp",
         "safetensors", "gguf", "jieba", "datasketch", "pyarrow", "scipy", "matplotlib", "pandas", "sacrebleu",
         "rouge_score", "nltk", "rouge_chinese"]
UI = ["textual", "rich"]
# Modules that load a heavy library by design, and why; everything else must import without one.
HEAVY_BY_DESIGN = {
    "tunedeck.core.training.callbacks": "its callbacks subclass transformers.TrainerCallback; only the training "
                                        "recipe imports it, inside the worker, after torch is loaded anyway",
}
CONTRACTS = ("core never imports the app, textual or rich", "the app never imports the ML libraries",
             "the app never imports the command line's modules")

LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], " \
       "no_cache=True))"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the tree under root (root/tunedeck/core, root/tunedeck/tui and root/pyproject.toml).

    Python runs without site (-S), so the installed editable tunedeck cannot stand in for the copy under test; the
    libraries come from this interpreter's own search path.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *(p for p in sys.path if p)])}
    return subprocess.run([sys.executable, "-S", "-c", LINT, str(root / "pyproject.toml")], capture_output=True,
                          text=True, env=env, timeout=300)


def contract_states(output: str) -> dict[str, str]:
    return {name: ("KEPT" if f"{name} KEPT" in output else "BROKEN" if f"{name} BROKEN" in output else "?")
            for name in CONTRACTS}


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for folder in ("core", "tui"):
        shutil.copytree(REPO / folder, tmp_path / "tunedeck" / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold_on_the_tree(tree_copy: Path):
    result = lint_imports(tree_copy)
    assert contract_states(result.stdout) == dict.fromkeys(CONTRACTS, "KEPT"), result.stdout[-3000:]
    assert result.returncode == 0


PLANTED = [
    ("tui/screens/eval.py", "import torch", CONTRACTS[1], "tunedeck.tui.screens.eval -> torch"),
    ("tui/widgets/curves.py", "from transformers import AutoTokenizer", CONTRACTS[1],
     "tunedeck.tui.widgets.curves -> transformers"),
    ("core/evaluate/metrics.py", "import textual", CONTRACTS[0], "tunedeck.core.evaluate.metrics -> textual"),
    ("core/stream/history.py", "from rich.text import Text", CONTRACTS[0], "tunedeck.core.stream.history -> rich"),
    ("core/inspect/report.py", "from tunedeck.tui.screens.data import DataScreen", CONTRACTS[0],
     "tunedeck.core.inspect.report -> tunedeck.tui.screens.data"),
    ("tui/app.py", "from tunedeck.core.cli.commands import train", CONTRACTS[2],
     "tunedeck.tui.app -> tunedeck.core.cli.commands"),
]


@pytest.mark.parametrize(("module", "line", "contract", "named"), PLANTED, ids=[p[0] for p in PLANTED])
def test_each_contract_fails_on_a_planted_violation(tree_copy: Path, module: str, line: str, contract: str,
                                                    named: str):
    target = tree_copy / "tunedeck" / module
    # At the end of the file, inside a function: a deferred import breaks the boundary just the same.
    target.write_text(target.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {line}\n", encoding="utf-8")
    result = lint_imports(tree_copy)
    states = contract_states(result.stdout)
    assert states[contract] == "BROKEN", result.stdout[-3000:]
    assert all(state == "KEPT" for name, state in states.items() if name != contract), states
    assert named in result.stdout
    assert result.returncode == 1


def all_modules() -> list[str]:
    """Every tunedeck module pkgutil finds under core and tui (listed in a fresh interpreter)."""
    script = textwrap.dedent("""
        import json, pkgutil, tunedeck.core, tunedeck.tui
        names = [tunedeck.core.__name__, tunedeck.tui.__name__]
        for package in (tunedeck.core, tunedeck.tui):
            names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        print(json.dumps(names))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [name for name in json.loads(result.stdout) if not name.endswith(".__main__")]


def loaded_by(module: str) -> list[str]:
    """The heavy and UI libraries in sys.modules after importing one module in a fresh interpreter."""
    watched = HEAVY + UI
    script = (f"import importlib, json, sys; importlib.import_module({module!r}); "
              f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({watched!r}))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{module}: {result.stderr[-1500:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_module_imports_alone_without_what_its_side_must_not_load():
    modules = all_modules()
    assert len(modules) > 100 and "tunedeck.core.worker" in modules and "tunedeck.tui.app" in modules
    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = dict(zip(modules, pool.map(loaded_by, modules), strict=True))
    problems = []
    for module, libraries in loaded.items():
        heavy = [lib for lib in libraries if lib in HEAVY]
        if heavy and module not in HEAVY_BY_DESIGN:
            problems.append(f"{module} loads {', '.join(heavy)}")
        if module.startswith("tunedeck.core") and set(libraries) & set(UI):
            problems.append(f"{module} loads {', '.join(set(libraries) & set(UI))}")
    assert not problems, "\n".join(problems)
    assert "transformers" in loaded["tunedeck.core.training.callbacks"]  # the check sees heavy imports
    assert "textual" in loaded["tunedeck.tui.app"]  # and UI imports
