"""End to end on a tiny model: a real worker merges, converts, quantizes and checks; a failed step resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.export.job import start_export
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.jobs.runs import RunDir, create_run
from tunedeck.core.stream.events import ExportCheck, ExportFinished, ExportStep, read_events

from .conftest import save_nonzero_adapter


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory) -> RunDir:
    """A run folder whose adapter is a random (non-zero) LoRA on the tiny model: merging changes the weights."""
    root = tmp_path_factory.mktemp("export-run")
    rows = [{"instruction": f"What is {a} plus {a}?", "input": "", "output": f"{a} plus {a} is {2 * a}."}
            for a in range(12)]
    (root / "math.json").write_text(json.dumps(rows), encoding="utf-8")
    config = load_config(overrides=[f"model.name_or_path={tiny_model_dir}", f"data.path={root / 'math.json'}",
                                    "data.val_size=0.25", "data.cutoff_len=64", "export.eval_samples=3",
                                    "export.check_max_tokens=16"])
    run = create_run(root / "runs", config, "tiny")
    save_nonzero_adapter(run, tiny_model_dir, precision="fp32")
    return run


def export(run: RunDir, *quants: str) -> tuple[int, list]:
    options = run.load_config().export.model_copy(update={"quantizations": list(quants)})
    proc = start_export(run, options)
    code = proc.wait(timeout=600)
    return code, list(read_events(ExportLayout.for_run(run).events_path))


def step_states(events: list) -> dict[str, str]:
    return {e.step: e.state for e in events if isinstance(e, ExportStep) and e.state != "started"}


def test_export_merges_converts_quantizes_and_checks(tiny_run: RunDir, tiny_model_dir: Path):
    code, events = export(tiny_run, "Q8_0", "Q4_K_M")
    layout = ExportLayout.for_run(tiny_run)
    assert code == 0, layout.log_path.read_text()[-3000:]
    assert isinstance(events[-1], ExportFinished) and events[-1].status == "completed"
    assert set(step_states(events).values()) == {"done"}
    report = json.loads(layout.report.read_text())
    rows = {r["name"]: r for r in report["models"]}
    assert set(rows) == {"merged", "Q8_0", "Q4_K_M"}
    assert rows["Q4_K_M"]["size_bytes"] < rows["Q8_0"]["size_bytes"] < layout.gguf("f16").stat().st_size
    assert all(r["perplexity"] and r["perplexity"] > 1 for r in rows.values())
    assert abs(rows["Q8_0"]["ratio_to_merged"] - 1) < 0.02  # Q8_0 is near-lossless
    checks = {(e.name, e.target): e for e in events if isinstance(e, ExportCheck)}
    assert checks[("template", "Q8_0")].passed and checks[("template", "Q4_K_M")].passed
    assert checks[("modelfile", "TEMPLATE")].passed
    assert checks[("ollama", "Q8_0")].passed is None  # no ollama here: reported as skipped, not passed
    modelfile = layout.modelfile("Q8_0").read_text()
    assert f"FROM ./{layout.gguf('Q8_0').name}\n" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "PARAMETER num_ctx 64" in modelfile

    from llama_cpp import Llama

    for quant in ("Q8_0", "Q4_K_M"):
        llm = Llama(str(layout.gguf(quant)), n_ctx=64, verbose=False)
        assert llm.n_vocab() == 49152 and len(llm.create_completion("hi", max_tokens=4)["choices"][0]["text"]) >= 0

    # The merged model is base + adapter, and transformers still reads the converter's GGUF (shared gguf module).
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 2, 3, 400, 5000]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected = PeftModel.from_pretrained(base, tiny_run.adapter)(ids).logits
    merged = AutoModelForCausalLM.from_pretrained(layout.merged, dtype=torch.float32)(ids).logits
    from_gguf = AutoModelForCausalLM.from_pretrained(layout.root, gguf_file=layout.gguf("f16").name,
                                                     dtype=torch.float32)(ids).logits
    assert torch.allclose(merged, expected, atol=2e-2)  # fp16 rounding of the merged weights
    assert torch.allclose(from_gguf, merged, atol=1e-3)


def test_a_failed_step_leaves_nothing_finished_looking_and_a_rerun_resumes(tiny_run: RunDir):
    layout = ExportLayout.for_run(tiny_run)
    if not layout.report.exists():
        export(tiny_run, "Q8_0", "Q4_K_M")
    blocked = layout.gguf("Q5_K_M")
    blocked.mkdir()  # the quantized file cannot take this name: the rename fails for real
    (blocked / "keep").write_text("x")
    damaged = layout.gguf("Q8_0")
    with open(damaged, "r+b") as handle:  # a truncated Q8_0 no longer matches the manifest
        handle.truncate(damaged.stat().st_size // 2)

    code, events = export(tiny_run, "Q8_0", "Q5_K_M")
    assert code == 2
    states = step_states(events)
    assert states["merge"] == states["gguf"] == "skipped"
    assert states["quantize:Q8_0"] == "done" and states["quantize:Q5_K_M"] == "failed"
    assert events[-1].status == "failed"
    assert not list(layout.root.glob(".*.tmp")) and blocked.is_dir()
    assert json.loads(layout.status_path.read_text())["status"] == "failed"

    blocked.joinpath("keep").unlink()
    blocked.rmdir()
    code, events = export(tiny_run, "Q8_0", "Q5_K_M")
    states = step_states(events)
    assert code == 0, layout.log_path.read_text()[-3000:]
    assert states["merge"] == states["gguf"] == states["quantize:Q8_0"] == states["check:Q8_0"] == "skipped"
    assert states["quantize:Q5_K_M"] == states["check:Q5_K_M"] == "done"
    assert layout.gguf("Q5_K_M").is_file() and layout.modelfile("Q5_K_M").is_file()


def test_cli_refuses_bad_choices_in_one_line(tiny_run: RunDir, tunedeck_cmd):
    runs = str(tiny_run.path.parent)
    for args, expected in ((["--quant", "Q4KM"], "did you mean Q4_K_M?"), (["--checkpoint", "7"],
                                                                          "no checkpoint at step 7")):
        result = subprocess.run([*tunedeck_cmd, "export", tiny_run.run_id, "--runs-dir", runs, *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_worker_refuses_a_folder_that_is_not_a_run(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.worker", "export", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a run directory" in result.stderr
