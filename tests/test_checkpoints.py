"""Checkpoint completeness: finished or verifiable ones count, torn ones are set aside; rotation and pins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.errors import RunError
from tunedeck.core.training.checkpoints import MANIFEST, check_complete, mark_complete, newest_complete
from tunedeck.core.training.rotation import PINS, pin_checkpoint, rotate


def checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    (path / "sub").mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"x" * 100)
    (path / "sub" / "state.json").write_text("{}", encoding="utf-8")
    if complete:
        mark_complete(path, step)
    return path


def test_complete_checkpoint_passes_and_damage_is_named(tmp_path: Path):
    path = checkpoint(tmp_path, 4)
    assert check_complete(path) is None
    (path / "adapter_model.safetensors").write_bytes(b"x" * 40)
    assert check_complete(path) == "adapter_model.safetensors is 40 bytes, expected 100"
    (path / "adapter_model.safetensors").write_bytes(b"x" * 100)
    (path / "sub" / "state.json").unlink()
    assert "missing" in check_complete(path)
    (path / MANIFEST).unlink()
    assert "never finished" in check_complete(path)


def test_newest_complete_skips_and_sets_aside_broken_ones(tmp_path: Path):
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 6, complete=False)
    torn = checkpoint(tmp_path, 12)
    (torn / "adapter_model.safetensors").write_bytes(b"")
    warnings: list[str] = []
    step, path = newest_complete(tmp_path, warnings.append)
    assert (step, path.name) == (10, "checkpoint-10")
    assert len(warnings) == 1 and "checkpoint-12" in warnings[0]
    assert not (tmp_path / "checkpoint-12").exists()
    assert newest_complete(tmp_path / "missing") is None


def resumable(root: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint holding the files a resume reads, written the way the Trainer writes them."""
    import torch
    from safetensors.torch import save_file

    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"lora_A": torch.ones(4, 8), "lora_B": torch.zeros(8, 4)}, path / "adapter_model.safetensors")
    (path / "adapter_config.json").write_text(json.dumps({"r": 4}), encoding="utf-8")
    torch.save({"state": {0: {"exp_avg": torch.ones(64)}}, "param_groups": []}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"python": [1, 2, 3], "cpu": torch.ones(16, dtype=torch.uint8)}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    if complete:
        mark_complete(path, step)
    return path


def test_a_checkpoint_missing_only_its_manifest_is_recovered(tmp_path: Path):
    resumable(tmp_path, 2)
    newest = resumable(tmp_path, 4, complete=False)
    (newest / f".{MANIFEST}.123-abcd.tmp").write_text('{"step": 4, "fi', encoding="utf-8")  # the rename never came
    warnings: list[str] = []
    step, path = newest_complete(tmp_path, warnings.append)
    assert (step, path) == (4, newest)
    assert warnings == ["checkpoint-4 has no completion manifest (the process stopped right after writing it), "
                        "but every file verifies: recovered"]
    assert check_complete(newest) is None  # it has its manifest now, listing the real files only
    assert not list(newest.glob("*.tmp")) and not list(newest.glob(".*.tmp"))
    assert "optimizer.pt" in json.loads((newest / MANIFEST).read_text())["files"]


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_a_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, named", [
    (lambda p: _truncate(p / "adapter_model.safetensors"), "adapter_model.safetensors is"),
    (lambda p: (p / "adapter_model.safetensors").write_bytes(b""), "adapter_model.safetensors is truncated"),
    (lambda p: _truncate(p / "optimizer.pt"), "optimizer.pt is damaged"),
    (lambda p: _flip_a_byte(p / "optimizer.pt"), "optimizer.pt is damaged"),
    (lambda p: (p / "rng_state.pth").unlink(), "rng_state.pth is missing"),
    (lambda p: (p / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    (lambda p: (p / "trainer_state.json").unlink(), "trainer_state.json is missing"),
    (lambda p: (p / "trainer_state.json").write_text('{"global_step": 3}'), "not the state of step 4"),
    (lambda p: (p / "adapter_config.json").write_text('{"r": '), "adapter_config.json is damaged"),
])
def test_a_checkpoint_without_manifest_whose_files_do_not_verify_is_set_aside(tmp_path: Path, damage, named):
    resumable(tmp_path, 2)
    newest = resumable(tmp_path, 4, complete=False)
    damage(newest)
    warnings: list[str] = []
    assert newest_complete(tmp_path, warnings.append)[0] == 2
    assert len(warnings) == 1 and warnings[0].startswith("skipping checkpoint-4: it was never finished")
    assert named in warnings[0], warnings[0]
    assert not newest.exists() and any(p.name.startswith("incomplete-checkpoint-4") for p in tmp_path.iterdir())


def test_a_torn_checkpoint_with_a_manifest_is_not_recovered_by_its_files(tmp_path: Path):
    resumable(tmp_path, 2)
    newest = resumable(tmp_path, 4)
    (newest / "adapter_config.json").write_text('{"r": 4 }', encoding="utf-8")  # one byte longer, still valid
    warnings: list[str] = []
    assert newest_complete(tmp_path, warnings.append)[0] == 2
    assert "adapter_config.json is 9 bytes, expected 8" in warnings[0]


PIN = """
import sys, time
from pathlib import Path
from tunedeck.core.training.rotation import pin_checkpoint
with pin_checkpoint(Path(sys.argv[1])):
    print("pinned", flush=True)
    time.sleep(120)
"""


def names(root: Path) -> list[str]:
    return sorted((p.name for p in root.iterdir() if p.name.startswith("checkpoint-")),
                  key=lambda n: int(n.split("-")[1]))


def test_rotation_keeps_the_newest_the_best_and_pinned_checkpoints(tmp_path: Path):
    for step in (2, 4, 6, 8):
        checkpoint(tmp_path, step)
    assert rotate(tmp_path, None) == [] and len(names(tmp_path)) == 4  # no limit: nothing goes
    holder = subprocess.Popen([sys.executable, "-c", PIN, str(tmp_path / "checkpoint-2")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "pinned"
        assert rotate(tmp_path, 1, best=str(tmp_path / "checkpoint-4")) == ["checkpoint-6"]
        assert names(tmp_path) == ["checkpoint-2", "checkpoint-4", "checkpoint-8"]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # the kernel dropped the pin with its holder: the next rotation takes the checkpoint and the stale pin file
    assert rotate(tmp_path, 1, best=str(tmp_path / "checkpoint-4")) == ["checkpoint-2"]
    assert names(tmp_path) == ["checkpoint-4", "checkpoint-8"]
    assert not list((tmp_path / PINS).iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".removing-")]
    with pin_checkpoint(tmp_path / "checkpoint-4") as pinned_path:  # a pin in this process holds as well
        assert rotate(tmp_path, 1) == [] and pinned_path.is_dir()
    assert rotate(tmp_path, 1) == ["checkpoint-4"] and names(tmp_path) == ["checkpoint-8"]


def test_a_pin_refuses_a_checkpoint_that_is_gone_or_not_yet_complete(tmp_path: Path):
    checkpoint(tmp_path, 2, complete=False)
    with pytest.raises(RunError, match="checkpoint-2 is not complete: it was never finished"):
        with pin_checkpoint(tmp_path / "checkpoint-2"):
            pass
    with pytest.raises(RunError, match="checkpoint-3 is gone"):
        with pin_checkpoint(tmp_path / "checkpoint-3"):
            pass
    assert not (tmp_path / PINS).exists() or not list((tmp_path / PINS).iterdir())
