"""Checkpoint completeness: finished ones count, torn or unfinished ones are set aside with a reason."""

from __future__ import annotations

from pathlib import Path

from tunedeck.core.training.checkpoints import MANIFEST, check_complete, mark_complete, newest_complete


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
