"""Checks before a run folder exists: what can never train is refused with one line and exit code 2."""

from __future__ import annotations

from tunedeck.core.config import Config
from tunedeck.core.data.loading import load_data, load_val_data
from tunedeck.core.models.loading import check_model_available, local_model_dir
from tunedeck.core.models.modules import check_target_modules


def preflight(config: Config) -> None:
    """Refuse what can never train before a run directory exists: missing or damaged models, LoRA targets the
    model does not have, unreadable training or validation data."""
    check_model_available(config.model.name_or_path)
    if config.lora.target_modules != "all-linear":
        folder = local_model_dir(config.model.name_or_path)  # the builtin is converted once, here if not yet
        if folder is not None:
            check_target_modules(folder, config.lora.target_modules)
    load_data(config.data)
    load_val_data(config.data)
