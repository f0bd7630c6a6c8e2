"""The memory estimator: hand-computed terms for a small config, published 7-8B anchors, ZeRO sharding, fixes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tunedeck.core.config import Config
from tunedeck.core.config_files import load_config
from tunedeck.core.estimate.architecture import Architecture, from_config_json, resolve_architecture
from tunedeck.core.estimate.devices import KNOWN_GPUS, Device, choose_device, known_gpu
from tunedeck.core.estimate.memory import GIB, estimate_peak_memory
from tunedeck.core.estimate.verdict import apply_changes, oom_suggestions, suggestions, verdict

TOY = Architecture("toy", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                   vocab_size=1000, tie_embeddings=True, head_dim=16)
CPU = Device("test CPU", 1 * GIB, "cpu", bf16=False)
H100 = KNOWN_GPUS["h100"]


def small_config(**train) -> Config:
    return Config.model_validate({
        "data": {"cutoff_len": 32},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "train": {"batch_size": 2, "precision": "fp32", "gradient_checkpointing": False, **train},
    })


def test_small_config_matches_the_hand_computed_terms():
    estimate = estimate_peak_memory(small_config(), TOY, CPU)
    # Parameters: embeddings 1000*64 (tied: no lm_head); per block q 64*64, k 64*32, v 64*32, o 64*64,
    # gate/up/down 64*128 each, two norms 64; final norm 64.
    block = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert TOY.total_params() == 1000 * 64 + 2 * block + 64 == 138_048
    # LoRA r=8 on q (64 -> 64) and v (64 -> 32), two blocks.
    trainable = 2 * (8 * (64 + 64) + 8 * (64 + 32))
    assert estimate.trainable_params == trainable == 3584
    b = estimate.breakdown
    assert b["weights"] == 138_048 * 4  # fp32
    assert b["lora"] == trainable * 4 and b["gradients"] == trainable * 4  # fp32 adapters and their grads
    assert b["optimizer"] == trainable * 8  # AdamW: two fp32 states
    # Per token and block, fp32 (e=4): norms 2*4*64, SDPA q/k/v 4*(64+2*64) (a padded batch of 2: k and v are
    # repeated to q's width) + out 4*64 + lse 4*4, SwiGLU 3*4*128, one shared q/v adapter input 4*64,
    # two A outputs 4*8*2.
    per_layer = 2 * 4 * 64 + 4 * (64 + 2 * 64) + 4 * 64 + 4 * 4 + 3 * 4 * 128 + 4 * 64 + 4 * 8 * 2
    assert per_layer == 3408
    tokens = 2 * 32
    assert b["activations"] == tokens * (2 * per_layer + 4 * 64)  # plus the final norm's fp32 input
    assert estimate.activations_with_checkpointing == tokens * (2 * 4 * 64 + per_layer + 4 * 64)
    # TRL's chunked loss on a CPU: one 64 x 1000 logits tile (fp32) with 33 bytes of temporaries per element,
    # plus per token the projected hidden states (4*64), their fp32 gradient (4*64) and 8 fp32 statistics.
    assert b["logits"] == 64 * 1000 * (4 + 33) + tokens * (64 * (4 + 4) + 4 * 8)
    assert b["overhead"] == round(0.10 * (b["activations"] + b["logits"]))  # no GPU context on a CPU
    assert estimate.allocated == estimate.total - b["overhead"]
    assert estimate.total == 138_048 * 4 + 3584 * 16 + 452_608 + 2_402_816 + 285_542


def test_checkpointing_16_bit_and_dropout_change_the_terms_as_documented():
    plain = estimate_peak_memory(small_config(), TOY, CPU)
    ckpt = estimate_peak_memory(small_config(gradient_checkpointing=True), TOY, CPU)
    assert ckpt.breakdown["activations"] == plain.activations_with_checkpointing < plain.breakdown["activations"]
    half = estimate_peak_memory(small_config(precision="bf16"), TOY, Device("gpu", 8 * GIB))
    assert half.breakdown["weights"] == 138_048 * 2
    # on a GPU Triton folds the tile in place: only the 16-bit tile itself
    assert half.breakdown["logits"] == 64 * 1000 * 2 + 64 * (64 * (2 + 4) + 4 * 8)
    assert half.breakdown["overhead"] > int(0.75 * GIB)  # the CUDA context is counted on a GPU
    dropout = small_config()
    dropout = apply_changes(dropout, {"lora.dropout": 0.1})
    more = estimate_peak_memory(dropout, TOY, CPU)
    # each adapter now keeps its own dropped copy (4*64) plus a 1-byte mask (64): q and v, two blocks
    assert more.breakdown["activations"] - plain.breakdown["activations"] == 64 * 2 * (2 * 4 * 64 + 2 * 64 - 4 * 64)


def test_a_7_to_8b_lora_at_batch_1_matches_published_figures():
    """LoRA on a 7-8B model in 16-bit, batch 1, short sequences: about 16-22 GB per GPU."""
    for model in ("Qwen/Qwen2.5-7B-Instruct", "meta-llama/Meta-Llama-3-8B", "mistralai/Mistral-7B-v0.1"):
        config = load_config(overrides=[f"model.name_or_path={model}", "train.batch_size=1",
                                        "data.cutoff_len=512", "train.precision=bf16", "lora.r=16"])
        estimate = estimate_peak_memory(config, resolve_architecture(model), H100)
        assert 16e9 <= estimate.total <= 22e9, (model, estimate.total / 1e9)
        assert verdict(estimate) == "fits"


def test_parameter_counts_match_the_published_sizes():
    assert round(resolve_architecture("Qwen/Qwen2.5-7B-Instruct").total_params() / 1e9, 2) == 7.62
    assert round(resolve_architecture("meta-llama/Meta-Llama-3-8B").total_params() / 1e9, 2) == 8.03
    assert round(resolve_architecture("Qwen/Qwen2.5-0.5B").total_params() / 1e6) == 494
    with pytest.raises(Exception, match="not a model tunedeck knows"):
        resolve_architecture("someone/unknown-model")


def test_zero_2_shards_optimizer_and_gradients_not_the_frozen_base():
    config = load_config(preset="mi50-2x")
    arch = resolve_architecture(config.model.name_or_path)
    mi50 = KNOWN_GPUS["mi50"]
    two = estimate_peak_memory(config, arch, mi50)
    one = estimate_peak_memory(config, arch, mi50, world_size=1)
    assert two.world_size == 2 and two.zero_stage == 2
    assert two.breakdown["weights"] == one.breakdown["weights"]  # replicated
    assert two.breakdown["lora"] == one.breakdown["lora"]
    assert two.breakdown["optimizer"] * 2 == pytest.approx(one.breakdown["optimizer"], abs=2)
    assert two.breakdown["gradients"] * 2 == pytest.approx(one.breakdown["gradients"], abs=2)
    stage3 = estimate_peak_memory(apply_changes(config, {"distributed.deepspeed_stage": 3}), arch, mi50)
    assert stage3.breakdown["weights"] < two.breakdown["weights"] * 0.6  # ZeRO-3 shards the frozen base too
    offload = estimate_peak_memory(apply_changes(config, {"distributed.offload_optimizer": True}), arch, mi50)
    assert offload.breakdown["optimizer"] == 0 and offload.host_offload == two.breakdown["optimizer"]


def test_suggestions_make_a_config_that_does_not_fit_fit_cheapest_first():
    assert verdict(estimate_peak_memory(load_config(preset="h100"), resolve_architecture("Qwen/Qwen2.5-7B"),
                                        H100)) == "fits"  # as the preset says: 80 GB hold it at cutoff 4096
    config = load_config(preset="h100", overrides=["train.gradient_checkpointing=false"])
    arch = resolve_architecture(config.model.name_or_path)
    assert verdict(estimate_peak_memory(config, arch, H100)) == "will not fit"
    found = suggestions(config, arch, H100)
    assert [s.cost for s in found] == sorted(s.cost for s in found)
    first = found[0]
    assert first.changes == {"train.batch_size": 1, "train.gradient_accumulation_steps": 16}  # effective batch 16
    assert {"train.gradient_checkpointing": True} in [s.changes for s in found]
    for suggestion in found:
        fixed = estimate_peak_memory(apply_changes(config, suggestion.changes), arch, H100)
        assert verdict(fixed) == "fits" and fixed.total == suggestion.estimate
    # After a real OOM of a config the estimate thought fitted, a change must cut the estimate by 15% or more.
    small = apply_changes(config, {"train.batch_size": 1})
    before = estimate_peak_memory(small, arch, H100).total
    assert all(s.estimate < 0.85 * before for s in oom_suggestions(small, arch, H100))


def test_architecture_from_the_real_config_json_and_peft_counts(builtin_model_dir, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    real = resolve_architecture(str(builtin_model_dir))
    table = resolve_architecture("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (real.hidden_size, real.num_layers, real.num_kv_heads, real.vocab_size) == \
        (table.hidden_size, table.num_layers, table.num_kv_heads, table.vocab_size)
    tiny = from_config_json(json.loads((tiny_model_dir / "config.json").read_text()), "tiny")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert tiny.total_params() == sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert tiny.lora_params(4, "all-linear") == peft.get_nb_trainable_parameters()[0]


def test_devices_by_name_preset_and_memory():
    assert known_gpu("NVIDIA H100 80GB HBM3") == H100
    assert known_gpu("AMD Instinct MI50") == KNOWN_GPUS["mi50"] and not KNOWN_GPUS["mi50"].bf16
    assert choose_device(preset="mi50-2x").name.startswith("AMD Instinct MI50")
    assert choose_device(gpu_mem_gib=24).memory == 24 * GIB
    with pytest.raises(Exception, match="unknown GPU"):
        choose_device(gpu="abacus")


def test_the_cli_gives_a_per_gpu_breakdown_verdict_and_fixes():
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.cli", "estimate", "--preset", "mi50-2x", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["per_gpu_bytes"]) == {"weights", "lora", "gradients", "optimizer", "activations", "logits",
                                            "overhead"}
    assert report["world_size"] == 2 and report["zero_stage"] == 2 and report["device"]["name"].startswith("AMD")
    assert report["total_bytes"] == sum(report["per_gpu_bytes"].values())
    assert report["verdict"] == "will not fit"
    assert report["suggestions"] and all(s["estimate_gib"] < 0.85 * 31.98 for s in report["suggestions"])
    text = subprocess.run([sys.executable, "-m", "tunedeck.core.cli", "estimate", "--preset", "mi50-2x",
                           "--set", "train.batch_size=1", "--set", "data.cutoff_len=1024"],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "verdict: fits" in text.stdout and "optimizer states" in text.stdout


def test_the_longest_sample_comes_from_the_data_after_template_and_cutoff(builtin_model_dir):
    from tunedeck.core.estimate.longest import longest_sample

    config = load_config(preset="cpu-demo")
    longest, source = longest_sample(config)
    assert 0 < longest < config.data.cutoff_len and "samples in builtin:demo_identity.json" in source
    cut, _ = longest_sample(apply_changes(config, {"data.cutoff_len": 32}))
    assert cut == 32  # cut to the cutoff like training does
    arch = resolve_architecture(config.model.name_or_path)
    measured = estimate_peak_memory(config, arch, CPU, seq_len=longest)
    assert measured.seq_len == longest
    assert measured.total < estimate_peak_memory(config, arch, CPU).total  # the cutoff is only the bound
    unknown, why = longest_sample(load_config(preset="mi50-2x"))
    assert unknown is None and "not on this machine" in why
