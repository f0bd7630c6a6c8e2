"""Peak memory per GPU of a LoRA run, from the config and the model's shape; pure Python, no torch.

Terms, in bytes, for one GPU (see estimate_peak_memory for the assumptions behind each):
weights (frozen base), lora (adapter parameters), gradients (adapter only), optimizer (AdamW states and,
under DeepSpeed, fp32 master copies), activations (saved for the backward pass), logits (what TRL's chunked
loss holds: one logits tile and per-token buffers), overhead (CUDA/HIP context, collective buffers, allocator
fragmentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.estimate.architecture import Architecture, lora_targets
from tunedeck.core.estimate.devices import Device

GIB = 1 << 30
CONTEXT_BYTES = int(0.75 * GIB)  # CUDA/HIP context, cuBLAS/hipBLAS workspaces: outside torch's allocator
COLLECTIVE_BYTES = int(0.25 * GIB)  # NCCL/RCCL buffers per GPU when world size > 1
FRAGMENTATION = 0.10  # allocator slack on the short-lived tensors (activations, logits)
QUANT_BYTES = {"4bit": 0.5 + 4 / 64, "8bit": 1.0 + 4 / 4096}  # NF4 + one fp32 absmax per 64; int8 + row scales
OPTIMIZER_STATE_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 8, "adamw_8bit": 2, "sgd": 0}
TOKEN_TILE, VOCAB_TILE = 4096, 32768  # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE
TERMS = ("weights", "lora", "gradients", "optimizer", "activations", "logits", "overhead")


@dataclass
class Estimate:
    """Peak memory of one GPU, term by term, and what it was computed for."""

    breakdown: dict[str, int]  # TERMS -> bytes
    device: Device
    precision: str
    world_size: int
    zero_stage: int
    batch_size: int
    seq_len: int
    trainable_params: int
    base_params: int
    activations_with_checkpointing: int
    activations_without_checkpointing: int
    gradient_checkpointing: bool
    host_offload: int = 0  # bytes moved to host RAM by ZeRO offload
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.breakdown.values())

    @property
    def allocated(self) -> int:
        """The tensors at the peak, as torch's allocator counts them: all but the context and the fragmentation."""
        return self.total - self.breakdown["overhead"]

    @property
    def fraction(self) -> float:
        return self.total / self.device.memory if self.device.memory else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device.to_dict(), "world_size": self.world_size, "zero_stage": self.zero_stage,
            "precision": self.precision, "batch_size": self.batch_size, "seq_len": self.seq_len,
            "base_params": self.base_params, "trainable_params": self.trainable_params,
            "gradient_checkpointing": self.gradient_checkpointing,
            "per_gpu_bytes": dict(self.breakdown), "total_bytes": self.total, "allocated_bytes": self.allocated,
            "activations_with_checkpointing_bytes": self.activations_with_checkpointing,
            "activations_without_checkpointing_bytes": self.activations_without_checkpointing,
            "host_offload_bytes": self.host_offload, "fraction": round(self.fraction, 4), "notes": self.notes,
        }


def compute_precision(requested: str, device: Device) -> str:
    """'auto' as the worker resolves it: fp32 on CPUs, bf16 with bf16 hardware, fp16 otherwise."""
    if requested != "auto":
        return requested
    if device.kind == "cpu":
        return "fp32"
    return "bf16" if device.bf16 else "fp16"


def activation_bytes_per_token_layer(arch: Architecture, config: Config, elem: int, mixed: bool,
                                     seq_len: int, fused_attention: bool = True) -> int:
    """Bytes one decoder block keeps for the backward pass, per token.

    Derived the way Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models", sbh(34 + 5as/h) for GPT blocks) count saved tensors, redone for a Llama-style block trained with
    LoRA on a frozen base (a frozen linear keeps no input; only the adapters do):
    - two RMSNorms keep their input upcast to fp32: 2 x 4h;
    - SDPA / flash attention keeps q, k, v, its output and a fp32 logsumexp per head: e(q + 2kv) + e*q + 4*heads;
      k and v are kv wide (GQA) only without a padding mask (batch 1): transformers repeats them to q's width
      before SDPA when a mask is passed; it never materialises the s x s matrix (the 5as/h term);
      eager attention does: heads * s * (4 + e) more (fp32 softmax, 16-bit copy), and so does SDPA's math
      path where no fused kernel exists (gfx906 / gfx908): heads * s * 2e (scores, softmax);
    - SwiGLU keeps the gate output, SiLU output and up output: 3e*i;
    - each adapter keeps its input: under autocast (16-bit training, fp32 adapters) every adapted linear casts
      its own copy, e*d_in each; in fp32 the inputs are shared tensors (one per distinct input);
      dropout > 0 adds a 1-byte mask and a dropped copy per adapter; the r-wide A output is e*r.
    """
    h, i = arch.hidden_size, arch.intermediate_size
    per_token = 2 * 4 * h
    kv = arch.kv_size if config.train.batch_size == 1 else arch.q_size  # padded batches: repeat_kv before SDPA
    per_token += elem * (arch.q_size + 2 * kv) + elem * arch.q_size + 4 * arch.num_heads
    if config.model.attn_implementation == "eager":
        per_token += arch.num_heads * seq_len * (4 + elem)
    elif not fused_attention and config.model.attn_implementation != "flash_attention_2":
        per_token += arch.num_heads * seq_len * 2 * elem
    per_token += 3 * elem * i
    targets = lora_targets(config.lora.target_modules)
    inputs = {m: arch.linear_shape(m)[0] for m in targets}
    if mixed or config.lora.dropout > 0:
        per_token += elem * sum(inputs.values())
    else:  # q/k/v share one input, gate/up another
        shared = {"qkv" if m in ("q_proj", "k_proj", "v_proj") else "gu" if m in ("gate_proj", "up_proj") else m: d
                  for m, d in inputs.items()}
        per_token += elem * sum(shared.values())
    if config.lora.dropout > 0:
        per_token += sum(inputs.values())
    per_token += elem * config.lora.r * len(targets)
    return per_token


def activation_bytes(arch: Architecture, config: Config, tokens: int, seq_len: int, elem: int,
                     mixed: bool, fused_attention: bool = True) -> tuple[int, int]:
    """(with, without) gradient checkpointing, for `tokens` tokens in flight in one forward pass.

    With checkpointing each block keeps only its input (e*h per token) and one block at a time is recomputed
    in full during the backward pass. The final norm keeps 4h per token either way.
    """
    layer = activation_bytes_per_token_layer(arch, config, elem, mixed, seq_len, fused_attention)
    final_norm = 4 * arch.hidden_size
    without = tokens * (arch.num_layers * layer + final_norm)
    with_ckpt = tokens * (arch.num_layers * elem * arch.hidden_size + layer + final_norm)
    return with_ckpt, without


def logits_bytes(arch: Architecture, tokens: int, elem: int, device: Device) -> int:
    """The loss of TRL's SFTTrainer: its chunked log-prob kernel (trl.kernels.chunked_logprob) never materialises
    the batch x seq x vocab logits. It keeps the hidden states it projects (e*h per token), fp32 per-token
    statistics, and one tile of TOKEN_TILE x VOCAB_TILE logits in the compute dtype; the backward adds the fp32
    gradient of the hidden states (4h per token). On GPUs Triton folds each tile in place; without Triton (CPUs)
    torch ops fold it and hold ~33 bytes of fp32 / bool temporaries per tile element at the backward's peak.
    """
    tile = min(tokens, TOKEN_TILE) * min(arch.vocab_size, VOCAB_TILE)
    per_element = elem + (0 if device.kind != "cpu" else 33)
    return tile * per_element + tokens * (arch.hidden_size * (elem + 4) + 4 * 8)


def adapter_bytes(config: Config, elem: int) -> int:
    """Bytes per adapter parameter: fp32 (PEFT's default), bf16 on a quantized base, 16-bit under DeepSpeed."""
    if config.model.quantization != "none":
        return 2
    return elem if config.distributed.deepspeed_stage else 4


def trainable_params(config: Config, arch: Architecture) -> int:
    """Adapter parameters: LoRA's A and B, plus DoRA's magnitude vector (one per output feature)."""
    trainable = arch.lora_params(config.lora.r, config.lora.target_modules)
    if config.lora.use_dora:
        trainable += arch.num_layers * sum(arch.linear_shape(m)[1] for m in lora_targets(config.lora.target_modules))
    return trainable


def parameter_terms(config: Config, arch: Architecture, elem: int, world: int) -> tuple[dict[str, float], int]:
    """Weights, adapter, gradients and optimizer bytes on one GPU with ZeRO applied; and bytes offloaded to host.

    PEFT keeps adapters in fp32 (autocast_adapter_dtype); TRL turns them to bf16 on a quantized (QLoRA) base;
    DeepSpeed casts the module to 16-bit and keeps an fp32 master copy in its optimizer partition. torch's AdamW
    keeps its two states in the adapter's dtype. Stage >= 1 shards the optimizer, >= 2 the gradients, 3 every
    parameter (the frozen base too, plus two gathered layers in use).
    """
    d, stage = config.distributed, config.distributed.deepspeed_stage
    base = arch.total_params()
    if config.model.quantization != "none":
        linear = arch.linear_params()
        weights = linear * QUANT_BYTES[config.model.quantization] + (base - linear) * elem
    else:
        weights = base * elem
    trainable = trainable_params(config, arch)
    param_bytes = adapter_bytes(config, elem)
    lora = grads = trainable * param_bytes
    states = OPTIMIZER_STATE_BYTES[config.train.optim]
    if stage:
        states += 4 if elem < 4 else 0  # fp32 master weights
    elif config.train.optim in ("adamw_torch", "adamw_torch_fused"):
        states = 2 * param_bytes
    optimizer = trainable * states
    if stage >= 1:
        optimizer /= world
    if stage >= 2:
        grads /= world
    gathered = 2 * arch.layer_params() * elem
    if stage == 3:
        weights, lora = weights / world + gathered, lora / world
    host = 0
    if d.offload_optimizer:
        host, optimizer = host + int(optimizer), 0
    if d.offload_params:
        host, weights = host + int(weights), gathered
    return {"weights": weights, "lora": lora, "gradients": grads, "optimizer": optimizer}, host


def estimate_peak_memory(config: Config, arch: Architecture, device: Device, seq_len: int | None = None,
                         world_size: int | None = None) -> Estimate:
    """Peak memory of one GPU for a run of `config` on `device`.

    seq_len: the longest sample after template and cutoff (default: data.cutoff_len, the bound); a batch is
    padded to its longest sample, so `batch_size x seq_len` tokens are in flight.
    ZeRO: stage >= 1 shards optimizer states, >= 2 also gradients, 3 also parameters (frozen ones too) over the
    world size; with LoRA, ZeRO-2 leaves the frozen base replicated. offload_optimizer keeps optimizer states
    (and master weights) in host RAM.
    """
    t, d = config.train, config.distributed
    world = world_size or d.num_gpus * d.num_nodes
    precision = compute_precision(t.precision, device)
    elem = 4 if precision == "fp32" else 2
    seq = min(seq_len or config.data.cutoff_len, config.data.cutoff_len)
    tokens = t.batch_size * seq
    terms, host = parameter_terms(config, arch, elem, world)
    mixed = adapter_bytes(config, elem) != elem  # fp32 adapters under 16-bit autocast: each casts its input
    with_ckpt, without = activation_bytes(arch, config, tokens, seq, elem, mixed, device.fused_attention)
    terms["activations"] = with_ckpt if t.gradient_checkpointing else without
    terms["logits"] = logits_bytes(arch, tokens, elem, device)
    terms["overhead"] = FRAGMENTATION * (terms["activations"] + terms["logits"])
    if device.kind != "cpu":
        terms["overhead"] += CONTEXT_BYTES + (COLLECTIVE_BYTES if world > 1 else 0)
    notes = []
    if not device.fused_attention:
        notes.append(f"no fused attention kernel on {device.name}: SDPA keeps the s x s scores")
    if d.deepspeed_stage == 2:
        notes.append("ZeRO-2 shards optimizer states and gradients; the frozen base stays replicated")
    if d.deepspeed_stage == 3:
        notes.append("ZeRO-3 shards the frozen base too; two gathered layers are counted")
    return Estimate(
        breakdown={k: int(round(terms[k])) for k in TERMS}, device=device, precision=precision,
        world_size=world, zero_stage=d.deepspeed_stage, batch_size=t.batch_size, seq_len=seq,
        trainable_params=trainable_params(config, arch), base_params=arch.total_params(),
        activations_with_checkpointing=with_ckpt, activations_without_checkpointing=without,
        gradient_checkpointing=t.gradient_checkpointing, host_offload=host, notes=notes,
    )
