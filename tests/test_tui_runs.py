"""The app's runs screen, driven through Textual's Pilot against run folders on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

from textual.widgets import DataTable

from tunedeck.tui.app import TunedeckApp


def make_run(root: Path, run_id: str, **status) -> None:
    path = root / run_id
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("{}\n", encoding="utf-8")
    (path / "status.json").write_text(json.dumps(status), encoding="utf-8")


async def test_runs_screen_lists_each_run_with_its_status(tmp_path: Path):
    make_run(tmp_path, "run-a", status="completed", step=30, total_steps=30, loss=0.6146, best_eval_loss=0.66,
             base_model="builtin:smollm2-135m-instruct", preset="cpu-demo", created_at=1.0)
    make_run(tmp_path, "run-b", status="running", pid=os.getpid(), step=3, total_steps=90, created_at=2.0)
    make_run(tmp_path, "run-c", status="running", pid=2**22 + 12345, created_at=3.0)  # its worker is gone
    app = TunedeckApp(runs_root=tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        assert rows["run-a"][1:5] == ["completed", "30/30", "0.6146", "0.6600"]
        assert rows["run-b"][1:3] == ["running", "3/90"]
        assert rows["run-c"][1] == "failed"
        await pilot.press("q")
    assert not app.is_running
