"""The evaluation screen driven by Pilot: its launcher writes an evaluation's events and files instead of a model."""

from __future__ import annotations

import json
from pathlib import Path

from textual.app import App
from textual.widgets import DataTable

from tests.tui_support import Posted, make_run, make_services, screen_text, wait_for
from tunedeck.core.errors import RunError
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.evaluate.metrics import score_row, summarize
from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation
from tunedeck.core.evaluate.table import metric_rows
from tunedeck.core.stream.events import EvalFinished, EvalProgress, EvalStarted, EventWriter, Log
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.eval import EvalScreen

REFERENCES = ["I am tunedeck's demo assistant, fine-tuned with tunedeck.", '{"score": 7, "label": "good"}']
TUNED = ["I am tunedeck's demo assistant, fine-tuned with tunedeck.", '{"score": 8, "label": "good"}']
BASE = ["I'm here to help with any kind of creative writing project.", "Sure! I'd rate it a 7."]


def side(answers: list[str], loss: float) -> dict:
    """One model's summary as metrics.json held it before intervals and signatures were written."""
    rows = [score_row(r, a) for r, a in zip(REFERENCES, answers, strict=True)]
    return {"eval_loss": loss, "perplexity": round(2.718281828 ** loss, 4), "tokens": 40,
            **summarize(REFERENCES, answers, rows)}


def scored(compare_base: bool) -> dict:
    """metrics.json as the worker writes it: each model's summary, the task, signatures and (with base) intervals."""
    sides = {"finetuned": SideAnswers(TUNED, [(12.4, 20)] * 2)}
    if compare_base:
        sides["base"] = SideAnswers(BASE, [(62.0, 20)] * 2)
    per_side, extra = score_evaluation(REFERENCES, sides, 1.0)
    return {"rows": 2, **{name: result["summary"] for name, result in per_side.items()}, **extra}


class RecordedEvalLauncher:
    """Writes what a finished evaluation of two held-out rows leaves behind, event by event."""

    def __init__(self, fail: bool = False, finish: bool = True, legacy: bool = False):
        self.started: list[tuple[Path, EvalRequest]] = []
        self.stopped: list[Path] = []
        self.fail = fail
        self.finish = finish
        self.legacy = legacy  # write metrics.json as it was before intervals

    def start(self, run_dir: Path, request: EvalRequest) -> None:
        if self.fail:
            raise RunError("no trained adapter here", where=str(run_dir / "adapter"), hint="train the run first")
        self.started.append((run_dir, request))
        layout = EvalLayout(run_dir / "eval")
        layout.root.mkdir(exist_ok=True)
        layout.events_path.write_bytes(b"")
        phases = ["loss", "generate"] + (["base_loss", "base_generate"] if request.compare_base else [])
        events = EventWriter(layout.events_path)
        events.emit(EvalStarted(run_id=run_dir.name, source="validation split of demo.json", rows=2, phases=phases))
        events.emit(EvalProgress(phase="loss", done=2, total=2))
        events.emit(EvalProgress(phase="generate", done=1, total=2))
        events.emit(Log(level="warning", message="2 rows are longer than data.cutoff_len and were cut"))
        if self.finish:
            self.write_results(layout, request.compare_base)
            events.emit(EvalFinished(status="completed", metrics=str(layout.metrics), message="2 rows"))
        events.close()

    def write_results(self, layout: EvalLayout, compare_base: bool) -> None:
        if self.legacy:
            metrics = {"rows": 2, "finetuned": side(TUNED, 0.62), **({"base": side(BASE, 3.1)} if compare_base else {})}
        else:
            metrics = scored(compare_base)
        layout.metrics.write_text(json.dumps(metrics), encoding="utf-8")
        records = [{"prompt": p, "reference": r, "prediction": t, **({"base_prediction": b} if compare_base else {})}
                   for p, r, t, b in zip(["Who are you?", "Rate it."], REFERENCES, TUNED, BASE, strict=True)]
        layout.predictions_jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def stop(self, run_dir: Path) -> None:
        self.stopped.append(run_dir)


class Host(App[None]):
    def __init__(self, screen: EvalScreen):
        super().__init__()
        self.eval_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.eval_screen)


def rows_of(table: DataTable) -> list[list]:
    return [list(table.get_row_at(i)) for i in range(table.row_count)]


async def test_the_screen_starts_an_evaluation_follows_it_and_shows_both_models(tmp_path: Path):
    launcher = RecordedEvalLauncher()
    screen = EvalScreen(make_run(tmp_path, "run-1", status="completed"), launcher)
    app = Host(screen)
    posted = Posted()
    async with app.run_test(size=(150, 45), message_hook=posted) as pilot:
        metrics = screen.query_one("#eval-metrics", DataTable)
        assert await wait_for(pilot, lambda: metrics.row_count > 0)
        assert launcher.started[0][1].compare_base is True
        shown = rows_of(metrics)
        table = {row[0]: row[1:] for row in shown}
        assert [str(c) for c in metrics.columns.values() if c] and len(shown[0]) == 5
        # one of the two references is JSON: validity and field agreement lead, and the table says so
        assert shown[0][0] == "JSON valid" and shown[0][4].startswith("leads: ")
        assert table["eval loss"][:2] == ["0.6200", "3.1000"]
        assert table["eval loss"][2] == "-2.4800 (-2.4800 to -2.4800)"  # both rows 0.62 vs 3.1: every resample
        assert table["exact match"][:2] == ["50.0%", "0.0%"]
        assert table["JSON fields agree (+-1)"][:2] == ["100.0%", "0.0%"]  # score 8 vs 7 is within +-1
        assert table["JSON valid"][:2] == ["100.0%", "0.0%"]
        assert "chrF" in table and "ROUGE-Lsum F1" in table
        # the same rows the CLI prints and the run report reads: metric_rows over metrics.json
        written = json.loads((tmp_path / "run-1" / "eval" / "metrics.json").read_text(encoding="utf-8"))
        assert shown == [list(row) for row in metric_rows(written)]
        text = screen_text(app)
        assert "fine-tuned better on eval loss by 2.4800 (95% CI 2.4800 to 2.4800)" in text
        assert "task: 1 of 2 references are JSON; JSON validity and per-field agreement lead" in text
        assert "BLEU: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in text
        assert "1000 resamples, seed 12345, 2 rows" in text
        assert "completed: 2 rows" in text
        predictions = rows_of(screen.query_one("#eval-predictions", DataTable))
        assert predictions[1] == ["Rate it.", REFERENCES[1], TUNED[1], BASE[1]]
        assert await wait_for(pilot, lambda: posted.said("2 rows are longer than data.cutoff_len"))
        for key in ("Run again", "Base on/off", "Stop", "Back"):
            assert key in text


async def test_metrics_written_before_intervals_still_show_a_plain_verdict(tmp_path: Path):
    screen = EvalScreen(make_run(tmp_path, "run-1", status="completed"), RecordedEvalLauncher(legacy=True))
    app = Host(screen)
    async with app.run_test(size=(150, 45)) as pilot:
        metrics = screen.query_one("#eval-metrics", DataTable)
        assert await wait_for(pilot, lambda: metrics.row_count > 0)
        table = {row[0]: row[1:] for row in rows_of(metrics)}
        assert table["eval loss"] == ["0.6200", "3.1000", "", "answer-token loss on the references (lower is better)"]
        assert "eval_loss: fine-tuned better (0.6200 vs 3.1000)" in screen_text(app)


async def test_base_off_then_run_again_scores_the_fine_tuned_model_only(tmp_path: Path):
    launcher = RecordedEvalLauncher()
    screen = EvalScreen(make_run(tmp_path, "run-1", status="completed"), launcher)
    app = Host(screen)
    async with app.run_test(size=(150, 45)) as pilot:
        metrics = screen.query_one("#eval-metrics", DataTable)
        assert await wait_for(pilot, lambda: metrics.row_count > 0)
        await pilot.press("b", "r")
        assert await wait_for(pilot, lambda: len(launcher.started) == 2 and screen.finished is not None
                              and metrics.row_count > 0)
        assert launcher.started[1][1].compare_base is False
        table = {row[0]: row[1:] for row in rows_of(metrics)}
        assert table["eval loss"] == ["0.6200", "", "", "answer-token loss on the references (lower is better)"]
        assert "better on" not in screen_text(app) and "intervals:" not in screen_text(app)
        assert rows_of(screen.query_one("#eval-predictions", DataTable))[0][3] == "-"


async def test_progress_while_running_and_stop(tmp_path: Path):
    launcher = RecordedEvalLauncher(finish=False)
    run_dir = make_run(tmp_path, "run-1", status="completed")
    screen = EvalScreen(run_dir, launcher)
    app = Host(screen)
    async with app.run_test(size=(150, 45)) as pilot:
        assert await wait_for(pilot, lambda: "generate: 1/2 rows" in screen_text(app))
        assert "[2/4]" in screen_text(app)
        assert screen.query_one("#eval-bar").progress == 3  # loss 2/2 + generate 1/2, of 4 phases x 2 rows
        await pilot.press("s")
        assert launcher.stopped == [run_dir]


async def test_a_refused_start_is_a_notification_not_a_traceback(tmp_path: Path):
    screen = EvalScreen(make_run(tmp_path, "run-1", status="failed"), RecordedEvalLauncher(fail=True))
    app = Host(screen)
    posted = Posted()
    async with app.run_test(message_hook=posted) as pilot:
        assert await wait_for(pilot, lambda: posted.said("no trained adapter"))
        assert "not started" in screen_text(app) and screen.tail is None


async def test_v_on_the_runs_list_opens_the_evaluation_of_the_selected_run(tmp_path: Path):
    make_run(tmp_path, "run-1", status="completed", created_at=1)
    launcher = RecordedEvalLauncher()
    app = TunedeckApp(services=make_services(tmp_path, eval_launcher=launcher))
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.pause()
        assert "Evaluate" in screen_text(app)
        await pilot.press("v")
        assert await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen) and launcher.started)
        assert launcher.started[0][0] == (tmp_path / "run-1").resolve()
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, EvalScreen))


def test_the_eval_screen_and_its_real_launcher_load_no_ml_library(tmp_path: Path):
    from tests.test_import_hygiene import HEAVY, loaded_after

    loaded = loaded_after(f"""
        import asyncio
        from pathlib import Path
        from textual.app import App
        from textual.notifications import Notify
        from tunedeck.tui.screens.eval import EvalScreen, WorkerEvalLauncher
        import tunedeck.core.cli.commands.eval, tunedeck.core.evaluate.job, tunedeck.core.evaluate.metrics

        class Host(App):
            def on_mount(self):
                self.push_screen(EvalScreen(run, WorkerEvalLauncher()))

        async def main():
            app = Host()
            notes = []
            hook = lambda message: notes.append(message.notification.message) if isinstance(message, Notify) else None
            async with app.run_test(message_hook=hook) as pilot:
                for _ in range(100):  # the real launcher refuses: the run has no adapter
                    if notes:
                        break
                    await pilot.pause(0.05)
                assert any("no trained adapter" in note for note in notes), notes

        run = Path({str(tmp_path)!r}) / "run-1"
        run.mkdir()
        (run / "config.yaml").write_text("{{}}")
        asyncio.run(main())
    """)
    assert "textual" in loaded and not loaded & set(HEAVY), loaded


async def test_an_evaluation_already_running_is_followed_not_started_again(tmp_path: Path):
    import os

    run_dir = make_run(tmp_path, "run-1", status="completed")
    recorded = RecordedEvalLauncher(finish=False)
    recorded.start(run_dir, EvalRequest(compare_base=False))  # as if `tunedeck eval` were running it
    EvalLayout(run_dir / "eval").update_status(status="running", pid=os.getpid())
    launcher = RecordedEvalLauncher()
    screen = EvalScreen(run_dir, launcher)
    app = Host(screen)
    async with app.run_test(size=(150, 45)) as pilot:
        assert await wait_for(pilot, lambda: "[2/2] generate: 1/2 rows" in screen_text(app))
        assert launcher.started == []
