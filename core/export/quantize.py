"""Quantize a GGUF with llama.cpp (llama_cpp.llama_model_quantize), into a temporary name, then rename."""

from __future__ import annotations

import ctypes
import os
import secrets
from pathlib import Path

from tunedeck.core.errors import ModelError
from tunedeck.core.export.quant_types import QUANT_TYPES


def llama_ftype(name: str) -> int:
    """The llama_ftype for a type name, checked against the llama.cpp that is installed."""
    import llama_cpp

    value, _ = QUANT_TYPES[name]
    installed = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}", None)
    if installed != value:
        raise ModelError(f"the installed llama-cpp-python does not offer {name}", where="export.quantizations",
                         hint="choose another type or upgrade llama-cpp-python")
    return value


def quantize_gguf(source: Path, target: Path, quant: str, threads: int | None = None) -> Path:
    """Write `target` as `quant` from a float GGUF; a failure or a kill leaves only a hidden .tmp file."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_ftype(quant)
    params.nthread = threads or os.cpu_count() or 1
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0 or not tmp.is_file():
            raise ModelError(f"llama.cpp could not quantize to {quant} (code {code})", where=str(source),
                             hint="llama.cpp's message is in export/worker.log")
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise ModelError(f"cannot write {target.name}: {exc.strerror}", where=str(target.parent),
                             hint="free the name or the disk space and run the export again") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
