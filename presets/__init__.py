"""Presets and datasets shipped with tunedeck: partial YAML overlays on the run config."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent
DATASET_DIR = PRESET_DIR / "datasets"

# Shown first in pickers: the reference box's preset, then single-GPU, then the CPU demo.
PREFERRED_ORDER = ("mi50-2x", "h100", "cpu-demo")
