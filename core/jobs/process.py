"""A worker process: the one command line that starts it, and how it sets up its output streams."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

WORKER_MODULE = "tunedeck.core.worker"


def worker_argv(mode: str, *args: object, python: str | None = None) -> list[str]:
    """`python -m tunedeck.core.worker MODE ARGS...` (this interpreter unless told), as an argument list."""
    return [python or sys.executable, "-m", WORKER_MODULE, mode, *map(str, args)]


def reserve_stdout() -> TextIO:
    """Keep the real stdout for machine output and send everything else printed there to stderr."""
    sys.stdout.flush()
    machine = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return machine


def quiet_libraries() -> None:
    """No telemetry, no tokenizer thread pools, log lines on stderr, and no warnings that bury the ones users read."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # TRL still uses transformers' renamed `gradient_checkpointing` names: warnings that only bury the log lines a
    # user reads in the live view.
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing` is deprecated", category=FutureWarning)
