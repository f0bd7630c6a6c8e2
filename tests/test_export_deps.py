"""The converter's copy of `gguf` and the gguf distribution share files: pip, the converter and transformers agree."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_pip_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_converter_runs_with_the_installed_gguf_module():
    result = run_python(
        "from conversion import get_model_class\n"
        "print(get_model_class('LlamaForCausalLM').__name__, get_model_class('Qwen2ForCausalLM').__name__)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["LlamaModel", "Qwen2Model"]


def test_transformers_still_reads_gguf_files():
    result = run_python(
        "from transformers import AutoConfig\n"
        "from transformers.utils import is_gguf_available\n"
        "from tunedeck.core.models.loading import BUILTIN_MODELS, builtin_gguf_path\n"
        "path = builtin_gguf_path(BUILTIN_MODELS['smollm2-135m-instruct'])\n"
        "config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)\n"
        "print(is_gguf_available(), config.model_type, config.num_hidden_layers)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "llama", "30"]
