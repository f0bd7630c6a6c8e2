"""Checks before a run folder exists: what can never train is refused with one line and exit code 2."""

from __future__ import annotations

from tunedeck.core.config import Config
from tunedeck.core.data.loading import load_data
from tunedeck.core.models.loading import check_model_available


def preflight(config: Config) -> None:
    """Refuse what can never train before a run directory exists: unreadable data, missing models."""
    check_model_available(config.model.name_or_path)
    load_data(config.data)
