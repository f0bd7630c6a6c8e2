"""`tunedeck doctor`: a real run on this CPU machine, the precision decision from measured figures, the screen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.doctor import matmul
from tunedeck.core.doctor.check import Check
from tunedeck.core.doctor.disk import assess_disk, check_disk, model_size, space_needed
from tunedeck.core.doctor.report import DoctorReport
from tunedeck.core.doctor.torch_build import has_kernels
from tunedeck.core.hardware.detect import precision_warning, resolve_precision

EXPECTED_CHECKS = {"GPUs", "torch build", "matmul speed", "precision", "attention (SDPA)", "flash-attn",
                   "bitsandbytes (QLoRA)", "DeepSpeed", "disk"}
# A 2x MI50 box as detect_hardware() describes it (used for the decision logic only).
MI50_BOX = {"host": "mi50-box", "accelerator": "rocm", "torch": "2.5.1+rocm6.2", "cpu_cores": 32,
            "gpus": [{"index": i, "name": "AMD Instinct MI50/MI60", "memory": 32 << 30, "arch": "gfx906"}
                     for i in (0, 1)]}


@pytest.fixture(scope="module")
def doctor_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.cli.main", "doctor", "--json", "--runs-dir",
                             str(runs)], capture_output=True, text=True, timeout=300)
    return result


def test_doctor_json_on_this_cpu_reports_no_gpu_fp32_and_the_measured_figures(doctor_run):
    assert doctor_run.returncode == 0, doctor_run.stderr[-2000:]
    report = json.loads(doctor_run.stdout)
    assert report["accelerator"] == "cpu" and report["gpus"] == []
    assert report["recommended_precision"] == "fp32"
    gflops = report["matmul"]["gflops"]
    assert set(gflops) == {"fp32", "fp16", "bf16"} and all(v and v > 0 for v in gflops.values()), gflops
    assert report["matmul"]["device"] == "cpu"
    checks = {c["name"]: c for c in report["checks"]}
    assert EXPECTED_CHECKS <= set(checks)
    assert checks["GPUs"]["detail"].startswith("no GPU")
    assert "fp32" in checks["matmul speed"]["detail"] and "GFLOPS" in checks["matmul speed"]["detail"]
    for check in report["checks"]:
        assert check["status"] in ("ok", "warn", "fail", "info")
        assert check["status"] in ("ok", "info") or check["fix"], check
    assert report["seconds"] > 0


def test_missing_deepspeed_is_reported_with_the_install_command(doctor_run):
    deepspeed = next(c for c in json.loads(doctor_run.stdout)["checks"] if c["name"] == "DeepSpeed")
    try:
        import deepspeed as _  # noqa: F401
    except ImportError:
        assert deepspeed["detail"].startswith("not installed") and "pip install" in deepspeed["fix"]
    else:
        assert deepspeed["detail"].startswith("deepspeed ")


def test_the_measurement_is_cached_for_precision_auto(doctor_run):
    report = json.loads(doctor_run.stdout)
    from tunedeck.core.hardware.detect import detect_hardware

    entry = matmul.read_cached(detect_hardware())
    assert entry is not None and entry["gflops"] == report["matmul"]["gflops"]
    assert entry["precision"] == "fp32" == resolve_precision("auto", detect_hardware())


def test_the_text_report_shows_fixes_for_problems(doctor_run):
    data = json.loads(doctor_run.stdout)
    report = DoctorReport({"host": "h", "accelerator": "cpu"}, data["torch"], data["matmul"], "fp32", "why",
                          [Check(**c) for c in data["checks"]] + [Check("x", "fail", "broken", "do this", "extra")])
    text = report.to_text()
    assert "[FAIL] x: broken" in text and "fix: do this" in text and "precision: auto -> fp32" in text
    assert report.worst == "fail"


def test_precision_follows_the_figures():
    # gfx906: bf16 emulated, fp16 packed math fast.
    precision, reason = matmul.recommend_precision({"fp32": 13_000, "fp16": 25_000, "bf16": 3_500}, "rocm")
    assert precision == "fp16" and "emulated" in reason
    # Hopper-like: bf16 as fast as fp16.
    assert matmul.recommend_precision({"fp32": 50_000, "fp16": 600_000, "bf16": 610_000}, "cuda")[0] == "bf16"
    assert matmul.recommend_precision({"fp32": 10_000, "fp16": 10_500, "bf16": 9_000}, "cuda")[0] == "fp32"
    # A CPU with AMX: bf16 matmuls are fast, whole bf16 training steps are not.
    assert matmul.recommend_precision({"fp32": 15, "fp16": 12, "bf16": 400}, "cpu")[0] == "fp32"


def test_auto_precision_reads_this_machines_measurement_not_the_architecture():
    emulated = {"device": "cuda:0", "size": 4096, "gflops": {"fp32": 13_000, "fp16": 25_000, "bf16": 3_500},
                "errors": {}}
    matmul.store(MI50_BOX, emulated)
    assert resolve_precision("auto", MI50_BOX) == "fp16"
    assert "bf16 is emulated on this GPU: 3500 GFLOPS vs fp16 25000" in precision_warning("bf16", MI50_BOX)
    # The same box measured with bf16 as fast as fp16 (say a newer ROCm): auto follows the figures.
    matmul.store(MI50_BOX, {**emulated, "gflops": {"fp32": 13_000, "fp16": 25_000, "bf16": 24_000}})
    assert resolve_precision("auto", MI50_BOX) == "bf16"
    assert precision_warning("bf16", MI50_BOX) is None


def test_arch_lists_decide_kernel_availability():
    assert has_kernels("sm_90", ["sm_80", "sm_90"])[0]
    ok, detail = has_kernels("sm_89", ["sm_80", "compute_80"])
    assert ok and "PTX compute_80" in detail
    ok, detail = has_kernels("gfx906", ["gfx90a", "gfx942"])
    assert not ok and "gfx906 is not in the build's arch list" in detail


def test_disk_need_is_estimated_from_the_model(builtin_model_dir, tmp_path):
    config = load_config(overrides=["export.quantizations=[Q4_K_M,Q8_0]", "train.save_total_limit=2"])
    size = model_size(config)
    assert size is not None and 130e6 < size.params < 140e6 and "safetensors" in size.source
    need = space_needed(size, config)
    assert need["merged fp16"] == need["GGUF f16"] == 2 * size.params
    assert need["GGUF Q8_0"] > need["GGUF Q4_K_M"] > 0
    assert need["checkpoints"] == 2 * size.adapter_params * 4 * 3
    named = model_size(load_config(overrides=["model.name_or_path=Qwen/Qwen2.5-7B-Instruct"]))
    assert named.params == 7_000_000_000 and "name" in named.source
    check = check_disk(tmp_path / "not-yet" / "runs", config)[0]
    assert check.status in ("ok", "warn", "fail") and f"free at {tmp_path}" in check.detail


def test_disk_verdicts_come_with_fixes(tmp_path):
    config = load_config(overrides=["model.name_or_path=Qwen/Qwen2.5-7B-Instruct"])
    size = model_size(config)
    total = int(sum(space_needed(size, config).values()) * 1.1)
    short = assess_disk(total - (5 << 30), tmp_path, size, config)
    assert short.status == "fail" and short.fix.startswith("free at least 5.0 GiB more")
    tight = assess_disk(int(total * 1.2), tmp_path, size, config)
    assert tight.status == "warn" and "--runs-dir on a bigger disk" in tight.fix
    assert assess_disk(total * 2, tmp_path, size, config).status == "ok"


async def test_the_hardware_screen_runs_the_doctor_and_shows_fixes(tmp_path: Path):
    from textual.widgets import DataTable

    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.doctor import DoctorScreen

    from .tui_support import screen_text, wait_for

    app = TunedeckApp(runs_root=tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert "Hardware" in screen_text(app)  # the binding is in the footer
        await pilot.press("h")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen))
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.report is not None, timeout_s=240)
        await pilot.pause()
        text = screen_text(app)
        assert "precision auto -> fp32" in text and "no GPU" in text and "GFLOPS" in text
        table = screen.query_one(DataTable)
        names = [c["name"] for c in screen.report["checks"]]
        table.move_cursor(row=names.index("bitsandbytes (QLoRA)"))
        await pilot.pause()
        assert "fix: keep model.quantization: none" in screen_text(app)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, DoctorScreen))


async def test_a_doctor_that_cannot_run_is_a_notification(tmp_path: Path):
    from textual.app import App

    from tunedeck.tui.screens.doctor import DoctorScreen

    from .tui_support import Posted, wait_for

    failing = [sys.executable, "-c", "import sys; sys.exit('torch is broken here')"]
    app = App()
    posted = Posted()
    async with app.run_test(message_hook=posted) as pilot:
        app.push_screen(DoctorScreen(tmp_path, command=failing))
        assert await wait_for(pilot, lambda: posted.said("torch is broken here"), timeout_s=30)
        assert posted.notes[-1].severity == "error"



def test_doctor_and_launch_modules_load_no_torch_until_they_run():
    from tests.test_import_hygiene import HEAVY, UI, loaded_after

    loaded = loaded_after("""
        import tunedeck.core.doctor.report, tunedeck.core.cli.commands.doctor, tunedeck.core.training.distributed
        import tunedeck.core.training.launch, tunedeck.core.doctor.matmul, tunedeck.core.doctor.disk
    """)
    assert not loaded & set(HEAVY + UI), loaded
    assert not loaded_after("import tunedeck.tui.screens.doctor") & set(HEAVY), "the screen must not load torch"
