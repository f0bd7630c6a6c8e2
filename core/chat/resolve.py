"""Which model a chat means: a run (base + adapter, its merged export or a GGUF), an HF folder, or a .gguf file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunedeck.core.errors import ModelError, RunError
from tunedeck.core.jobs.runs import RUN_ID, RunDir, find_run

BACKENDS = ("adapter", "merged", "gguf")
FLOAT_GGUF = ("f16", "bf16", "f32")


@dataclass(frozen=True)
class ChatModel:
    """A model the chat worker can load, and where its conversations are kept."""

    backend: str  # adapter (HF base + LoRA) | hf (an HF folder) | gguf (llama.cpp)
    path: str  # the HF base (adapter), the HF folder (hf) or the .gguf file
    label: str
    adapter: str | None = None
    run: str | None = None  # the run folder this model belongs to, if any
    base_gguf: str | None = None  # a GGUF of the base model, for base answers through the gguf backend

    @property
    def has_base(self) -> bool:
        """Whether this model can also answer as its base model."""
        return self.adapter is not None or self.base_gguf is not None

    def to_dict(self) -> dict:
        return {"backend": self.backend, "path": self.path, "label": self.label, "adapter": self.adapter,
                "run": self.run, "base_gguf": self.base_gguf, "has_base": self.has_base}


def resolve_chat_model(target: str, runs_root: Path | None = None, checkpoint: str | None = None,
                       backend: str | None = None, quant: str | None = None) -> ChatModel:
    """Resolve MODEL_OR_RUN: a run id or folder, an adapter folder, an HF model folder, or a .gguf file."""
    path = Path(target).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ChatModel("gguf", str(path.resolve()), path.name, run=_run_of_export(path))
    if path.is_dir() and (path / "config.yaml").is_file():
        return run_model(RunDir(path.resolve()), checkpoint, backend, quant)
    if path.is_dir() and (path / "adapter_config.json").is_file():
        return _adapter_folder(path.resolve())
    if path.is_dir() and (path / "config.json").is_file():
        return ChatModel("hf", str(path.resolve()), path.name, run=_run_of_export(path))
    if runs_root is not None and RUN_ID.match(target) and not path.exists():
        return run_model(find_run(runs_root, target), checkpoint, backend, quant)
    raise ModelError("not a run, a model folder or a .gguf file", where=target,
                     hint="give a run id (see `tunedeck runs`), a run folder, a Hugging Face model folder "
                          "(config.json) or a .gguf file")


def run_model(run: RunDir, checkpoint: str | None = None, backend: str | None = None,
              quant: str | None = None) -> ChatModel:
    """A run's model: its adapter on the base (default), its merged export, or one of its GGUF exports."""
    from tunedeck.core.export.layout import resolve_adapter

    backend = backend or "adapter"
    if backend not in BACKENDS:
        raise RunError(f"unknown backend '{backend}'", hint=f"use one of {', '.join(BACKENDS)}")
    base = run.load_config().model.name_or_path
    if backend == "gguf":
        gguf = export_gguf(run, quant)
        return ChatModel("gguf", str(gguf), f"{run.run_id} {gguf.stem.rsplit('-', 1)[-1]}", run=str(run.path),
                         base_gguf=_builtin_gguf(base))
    if backend == "merged":
        merged = run.path / "export" / "merged"
        if not (merged / "config.json").is_file():
            raise RunError("this run has no merged export", where=str(merged),
                           hint=f"run `tunedeck export {run.run_id}` first")
        return ChatModel("hf", str(merged), f"{run.run_id} merged", run=str(run.path))
    name, adapter = resolve_adapter(run, checkpoint or "last")
    label = run.run_id if name == "last" else f"{run.run_id} {name}"
    return ChatModel("adapter", base, label, adapter=str(adapter), run=str(run.path))


def export_gguf(run: RunDir, quant: str | None = None) -> Path:
    """The run's exported GGUF: the given quant, else the first configured quant found, else any GGUF."""
    files = sorted((run.path / "export").glob("*.gguf"))
    if not files:
        raise RunError("this run has no GGUF export", where=str(run.path / "export"),
                       hint=f"run `tunedeck export {run.run_id}` first")

    def kind(path: Path) -> str:
        return path.stem.rsplit("-", 1)[-1].upper()

    if quant:
        for path in files:
            if kind(path) == quant.upper():
                return path
        raise RunError(f"no {quant} GGUF in this run's export", where=str(run.path / "export"),
                       hint=f"exported: {', '.join(p.stem.rsplit('-', 1)[-1] for p in files)}")
    wanted = [q.upper() for q in run.load_config().export.quantizations]
    ranked = sorted(files, key=lambda p: (wanted.index(kind(p)) if kind(p) in wanted else len(wanted),
                                          kind(p).lower() in FLOAT_GGUF))
    return ranked[0]


def _adapter_folder(path: Path) -> ChatModel:
    """A bare LoRA folder: its base is the one its adapter_config.json names."""
    try:
        base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError):
        raise ModelError("adapter_config.json names no base model", where=str(path / "adapter_config.json"),
                         hint="chat with the run instead, which knows its base model") from None
    run = path.parent if (path.parent / "config.yaml").is_file() else None
    return ChatModel("adapter", base, path.name, adapter=str(path), run=str(run) if run else None)


def _run_of_export(path: Path) -> str | None:
    """The run folder an exported file or folder sits in (runs/<id>/export/...), if it does."""
    for parent in path.resolve().parents:
        if parent.name == "export" and (parent.parent / "config.yaml").is_file():
            return str(parent.parent)
    return None


def _builtin_gguf(base: str) -> str | None:
    """The builtin base model's own GGUF (the package file): base answers for a GGUF export at no cost."""
    if not base.startswith("builtin:"):
        return None
    from tunedeck.core.models.loading import BUILTIN_MODELS, builtin_gguf_path

    model = BUILTIN_MODELS.get(base.removeprefix("builtin:"))
    try:
        return str(builtin_gguf_path(model)) if model else None
    except ModelError:
        return None
