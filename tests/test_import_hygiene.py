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
            root = Path({str(tmp_path)!r})
            (root / "run-1").mkdir(parents=True)
            (root / "run-1" / "config.yaml").write_text("{{}}")
            (root / "run-1" / "events.jsonl").write_text(
                '{{"v": 1, "t": 1.0, "type": "step", "step": 1, "epoch": 0.1, "loss": 2.0, "lr": 0.001}}\\n')
            app = TunedeckApp(runs_root=root, attach="run-1")
            async with app.run_test(size=(150, 45)) as pilot:
                for _ in range(100):  # the live view replays the run
                    await pilot.pause(0.05)
                    if getattr(app.screen, "loaded", False):
                        break
                assert app.screen.loaded
                await pilot.press("d", "n")  # back to the runs list, then the new-run screen
                await pilot.pause()
                app.screen.query_one("#dataset").value = "builtin:demo_identity.json"
                await pilot.press("ctrl+n")  # checks the data through core, then opens the form
                for _ in range(200):
                    await pilot.pause(0.05)
                    if type(app.screen).__name__ == "ConfigFormScreen":
                        break
                assert type(app.screen).__name__ == "ConfigFormScreen"
                await pilot.press("ctrl+r")
                await pilot.pause()
                assert type(app.screen).__name__ == "ReviewScreen"

        asyncio.run(main())
    """)
    assert "textual" in loaded  # the check would notice imports
    assert not loaded & set(HEAVY), loaded


def test_engine_modules_load_no_ui_and_no_torch_until_needed():
    loaded = loaded_after("""
        import tunedeck.core.cli.main, tunedeck.core.config_files, tunedeck.core.stream.events, tunedeck.core.jobs.runs
        import tunedeck.core.cli.follow, tunedeck.core.data.loading, tunedeck.core.data.tokenize
        import tunedeck.core.models.loading, tunedeck.core.hardware.detect, tunedeck.core.worker
        import tunedeck.core.hardware.monitor
        import tunedeck.core.stream.history, tunedeck.core.stream.tail, tunedeck.core.config_fields
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
        import tunedeck.core.export.job, tunedeck.core.export.pipeline, tunedeck.core.cli.printers
        import tunedeck.core.export.steps, tunedeck.core.export.checks, tunedeck.core.export.modelfile
        import tunedeck.core.export.chat_format, tunedeck.core.export.merge, tunedeck.core.cli.commands.export
    """)
    assert not loaded & set(UI), loaded
    assert not loaded & set(HEAVY), loaded
