"""The command line as a user meets it: exit codes, one-line errors, no half-created runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


def run_cli(cmd, *args, cwd=None):
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--preset", "cpu-dem", "--headless"], "unknown preset 'cpu-dem' (did you mean 'cpu-demo'?)"),
        (["--preset", "cpu-demo", "--set", "lora.rank=4", "--headless"], "lora.rank: unknown key"),
        (["--preset", "cpu-demo", "--set", "data.path=/nowhere/x.json", "--headless"], "data file not found"),
        (["--preset", "cpu-demo", "--set", "model.name_or_path=/nowhere/model", "--headless"],
         "model folder not found"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_creates_no_run(tmp_path: Path, tunedeck_cmd, args, expected):
    runs = tmp_path / "runs"
    result = run_cli(tunedeck_cmd, "--runs-dir", str(runs), *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_config_file_error_names_file_and_line(tmp_path: Path, tunedeck_cmd):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  num_epochs: 3\n  batch_size: lots\n", encoding="utf-8")
    result = run_cli(tunedeck_cmd, "train", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert f"{config}:3: train.batch_size: Input should be a valid integer" in result.stderr


def test_runs_and_presets_list(tmp_path: Path, tunedeck_cmd):
    run = tmp_path / "runs" / "20260101-000000-demo-abcd"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n", encoding="utf-8")
    (run / "status.json").write_text(json.dumps({"status": "completed", "step": 30, "total_steps": 30,
                                                 "loss": 0.61, "base_model": "builtin:x"}), encoding="utf-8")
    listed = run_cli(tunedeck_cmd, "runs", "--runs-dir", str(tmp_path / "runs"))
    assert listed.returncode == 0
    assert "20260101-000000-demo-abcd" in listed.stdout and "completed" in listed.stdout and "30/30" in listed.stdout
    presets = run_cli(tunedeck_cmd, "presets")
    assert presets.stdout.splitlines()[0].startswith("mi50-2x")
    missing = run_cli(tunedeck_cmd, "attach", "nope", "--headless", "--runs-dir", str(tmp_path / "runs"))
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
    escape = run_cli(tunedeck_cmd, "attach", "../etc", "--headless", "--runs-dir", str(tmp_path / "runs"))
    assert escape.returncode == 2 and "invalid run id" in escape.stderr


def test_runs_does_not_list_a_symlinked_run_it_would_refuse(tmp_path: Path, tunedeck_cmd):
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere" / "20260101-000000-linked-abcd"
    elsewhere.mkdir(parents=True)
    (elsewhere / "config.yaml").write_text("{}\n", encoding="utf-8")
    runs.mkdir()
    (runs / elsewhere.name).symlink_to(elsewhere)
    listed = run_cli(tunedeck_cmd, "runs", "--runs-dir", str(runs))
    assert listed.returncode == 0 and "linked" not in listed.stdout and "no runs under" in listed.stdout
    attach = run_cli(tunedeck_cmd, "attach", elsewhere.name, "--headless", "--runs-dir", str(runs))
    assert attach.returncode == 2 and "escapes the runs root" in attach.stderr


def test_a_wider_run_folder_is_made_private_when_it_trains(tmp_path: Path):
    from tunedeck.core.config_files import load_config
    from tunedeck.core.jobs.runs import create_run
    from tunedeck.core.private import private_dir

    run = create_run(tmp_path / "runs", load_config(), "open")
    assert run.path.stat().st_mode & 0o777 == 0o700
    run.path.chmod(0o755)
    assert private_dir(run.path) == 0o755  # what the worker calls first, and says so in a warning
    assert run.path.stat().st_mode & 0o777 == 0o700
    assert private_dir(run.path) is None
