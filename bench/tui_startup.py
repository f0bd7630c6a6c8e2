"""App start-up to the first screen, and opening a 100k-step run, against a plain `python -c "import textual"`.

Each figure is the wall time of a fresh process (median of --repeat runs), printed beside the baseline with the
ratio. Run: .venv/bin/python bench/tui_startup.py [--steps 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_events import write_long_run  # noqa: E402

APP_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    start = time.perf_counter()
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.live import LiveScreen
    from tunedeck.tui.screens.runs import RunsScreen

    attach = sys.argv[2] if len(sys.argv) > 2 else None
    app = TunedeckApp(runs_root=Path(sys.argv[1]), attach=attach)
    marks = {}

    def check():
        screen = app.screen
        if attach is None and isinstance(screen, RunsScreen) and screen.is_mounted:
            marks["first_screen_s"] = time.perf_counter() - start
            app.exit()
        elif attach and isinstance(screen, LiveScreen) and screen.loaded:
            marks.setdefault("live_mounted_s", time.perf_counter() - start)
            app.call_after_refresh(done)

    def done():
        marks["run_drawn_s"] = time.perf_counter() - start
        marks["steps"] = len(app.screen.history.steps)
        app.exit()

    app.call_later(lambda: app.set_interval(0.02, check))
    app.run(headless=True, size=(160, 48))
    print(json.dumps(marks))
""")


def wall(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stdout


def median_wall(args: list[str], repeat: int) -> tuple[float, list[str]]:
    runs = [wall(args) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), [out for _, out in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        write_long_run(root / "long-run", steps=args.steps)
        size_mb = (root / "long-run" / "events.jsonl").stat().st_size / 1e6
        baseline, _ = median_wall([sys.executable, "-c", "import textual"], args.repeat)
        app_start, _ = median_wall([sys.executable, "-c", APP_SCRIPT, str(root)], args.repeat)
        open_run, outputs = median_wall([sys.executable, "-c", APP_SCRIPT, str(root), "long-run"], args.repeat)
        inside = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    steps = inside[0]["steps"]
    in_app = statistics.median(m["run_drawn_s"] for m in inside)
    print(f"baseline: python -c 'import textual'        {baseline:6.3f} s")
    print(f"app start-up to the runs screen (process)   {app_start:6.3f} s  = {app_start / baseline:4.1f}x baseline")
    print(f"open a {steps}-step run, drawn (process)  {open_run:6.3f} s  = {open_run / baseline:4.1f}x baseline "
          f"({size_mb:.0f} MB of events)")
    print(f"  of which: start to the run drawn, in the app {in_app:6.3f} s; the run alone "
          f"{open_run - app_start:6.3f} s = {(open_run - app_start) / baseline:4.1f}x baseline")


if __name__ == "__main__":
    main()
