"""Open a GGUF with llama-cpp-python, avoiding llama.cpp's AMX weight buffers, which crash on some machines."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from functools import cache
from typing import Any

# llama.cpp moves quantized weights into "extra" buffers (AMX tiles, repacked layouts) on CPUs that report AMX.
# On the team's VMs (Xeon with AMX, kernel 6.18) that path dies with a general protection fault on the first
# multi-token batch (any prompt longer than one token) for Q4_1, Q4_K_M, ...; f16 files are unaffected.
# TUNEDECK_GGUF_EXTRA_BUFFERS=1 keeps them on (bare-metal AMX machines prefill faster with them), =0 turns
# them off everywhere; unset: off only where llama.cpp reports AMX.
_LOCK = threading.Lock()


@cache
def reports_amx() -> bool:
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")


def extra_buffers_wanted() -> bool:
    choice = os.environ.get("TUNEDECK_GGUF_EXTRA_BUFFERS", "").strip()
    if choice in ("0", "1"):
        return choice == "1"
    return not reports_amx()


@contextmanager
def _without_extra_buffers():
    """llama_cpp.Llama takes no model-params argument for this, so its default params are adjusted while it loads."""
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    with _LOCK:
        native.llama_model_default_params = defaults
        try:
            yield
        finally:
            native.llama_model_default_params = original


def open_llama(path: str, **kwargs: Any) -> Any:
    """llama_cpp.Llama(path, **kwargs), with the extra weight buffers off where they crash."""
    from llama_cpp import Llama

    if extra_buffers_wanted():
        return Llama(path, **kwargs)
    with _without_extra_buffers():
        return Llama(path, **kwargs)
