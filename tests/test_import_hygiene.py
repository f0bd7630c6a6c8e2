"""The boundaries: the app process never loads torch & co., the engine never loads the UI stack."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "deepspeed"]
UI = ["textual", "rich"]


def loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY + UI!r}))))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_running_the_app_loads_no_ml_library(tmp_path):
    loaded = loaded_after(f"""
        import asyncio
        from pathlib import Path
        import tunedeck.tui.entry
        from tunedeck.tui.app import TunedeckApp

        async def main():
            app = TunedeckApp(runs_root=Path({str(tmp_path)!r}))
            async with app.run_test() as pilot:
                await pilot.pause()

        asyncio.run(main())
    """)
    assert "textual" in loaded  # the check would notice imports
    assert not loaded & set(HEAVY), loaded


def test_engine_modules_load_no_ui_and_no_torch_until_needed():
    loaded = loaded_after("""
        import tunedeck.core.cli, tunedeck.core.config_files, tunedeck.core.events, tunedeck.core.runs
        import tunedeck.core.progress, tunedeck.core.data.loading, tunedeck.core.data.tokenize
        import tunedeck.core.models, tunedeck.core.hardware, tunedeck.core.worker
    """)
    assert not loaded & set(UI), loaded
    assert not loaded & set(HEAVY), loaded


def test_the_export_wizard_loads_no_ml_library(tmp_path):
    loaded = loaded_after(f"""
        import asyncio
        from pathlib import Path
        from textual.app import App
        from tunedeck.tui.screens.export import ExportScreen, WorkerExportLauncher

        class Host(App):
            def on_mount(self):
                self.push_screen(ExportScreen(Path({str(tmp_path)!r}), WorkerExportLauncher()))

        async def main():
            async with Host().run_test() as pilot:
                await pilot.pause()

        asyncio.run(main())
    """)
    assert "textual" in loaded
    assert not loaded & set(HEAVY), loaded


def test_export_engine_modules_load_no_ui_and_no_torch_until_needed():
    loaded = loaded_after("""
        import tunedeck.core.export.job, tunedeck.core.export.pipeline, tunedeck.core.export.follow
        import tunedeck.core.export.steps, tunedeck.core.export.checks, tunedeck.core.export.modelfile
        import tunedeck.core.export.chat_format, tunedeck.core.export.merge, tunedeck.core.commands.export
    """)
    assert not loaded & set(UI), loaded
    assert not loaded & set(HEAVY), loaded
