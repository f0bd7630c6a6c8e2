"""The run configuration: one pydantic tree, the only place defaults live."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tunedeck.core.export.quant_types import normalize_quant_types
from tunedeck.core.models.templates import TEMPLATE_NAMES

Precision = Literal["auto", "fp32", "fp16", "bf16"]


def _yaml_no(value: Any) -> Any:
    """YAML 1.1 reads a bare `no` as false; for a strategy it means 'no'."""
    return "no" if value is False else value


Strategy = Annotated[Literal["no", "steps", "epoch"], BeforeValidator(_yaml_no)]


def _numeric(annotation: Any) -> bool:
    """Whether a field holds a number (int, float, a literal of numbers, or an optional one) and never a bool."""
    if annotation in (int, float):
        return True
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    if origin in (Union, types.UnionType):
        return bool not in args and any(_numeric(a) for a in args if a is not type(None))
    return False


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true / false are not 1 / 0: `lora.r: true` is a mistake, not rank 1."""
        if isinstance(value, bool) and _numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


class ModelConfig(Section):
    name_or_path: str = Field(
        "builtin:smollm2-135m-instruct",
        description="Base model: a local Hugging Face directory, a hub id already in the local cache, "
        "or 'builtin:smollm2-135m-instruct' (the embedded default, no download needed).",
    )
    template: str = Field(
        "auto",
        description="Chat template used for training and written into exports: 'auto' keeps the "
        "tokenizer's own template; or one of chatml, qwen, llama3.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped inside the model repository. Off unless you trust the source.",
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none",
        description="Load the frozen base quantized through bitsandbytes (QLoRA). Needs CUDA kernels; "
        "bitsandbytes has none for gfx906 (MI50).",
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto",
        description="Attention kernel: 'auto' lets transformers choose (SDPA where available).",
    )

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        if value != "auto" and value not in TEMPLATE_NAMES:
            raise ValueError(f"unknown template {value!r}; use 'auto' or one of {', '.join(TEMPLATE_NAMES)}")
        return value


class DataConfig(Section):
    path: str = Field(
        "builtin:demo_identity.json",
        description="Training data: a JSON / JSONL file or 'builtin:NAME' for a dataset shipped with tunedeck. "
        "Relative paths are resolved against the config file's folder.",
    )
    format: Literal["auto", "alpaca", "sharegpt", "openai", "markdown", "text"] = Field(
        "auto", description="Row format; 'auto' detects it from the first rows. A .md / .txt file or a folder of "
        "them is a markdown / text corpus."
    )
    dataset_info: str | None = Field(
        None,
        description="LLaMA-Factory dataset_info.json whose entry 'name' describes the file, columns and tags.",
    )
    name: str | None = Field(None, description="Entry of dataset_info to use.")
    cutoff_len: int = Field(
        2048,
        ge=16,
        le=1_048_576,
        description="Longest training sequence in tokens, chat template included; longer samples are cut.",
    )
    val_path: str | None = Field(
        None,
        description="A separate validation file in the same format; when set, val_size is not used. "
        "Relative paths are resolved against the config file's folder.",
    )
    val_size: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Fraction of rows held out for validation, chosen by a stable hash of each row.",
    )
    max_samples: int | None = Field(
        None, ge=1, description="Use at most this many rows (after the split); for quick trials."
    )
    system_prompt: str | None = Field(
        None, description="System prompt given to every conversation that has none of its own."
    )
    placeholders: dict[str, str] = Field(
        default_factory=dict,
        description="Values for template placeholders in the data, e.g. {name: Tunedeck, author: me} turns "
        "'I am {{name}}' into 'I am Tunedeck' (LLaMA-Factory's identity.json uses {{name}} and {{author}}).",
    )
    corpus_mode: Literal["pretrain", "style_sft"] = Field(
        "pretrain",
        description="Markdown / text corpora only: 'pretrain' trains on the cleaned text itself (continued "
        "pretraining, every token trained); 'style_sft' turns each chunk into a writing task (continue, expand "
        "from an outline) whose answer is the original text.",
    )
    chunk_tokens: list[int] = Field(
        [300, 800],
        description="Markdown / text corpora only: [min, max] tokens per chunk, cut on paragraph boundaries and "
        "measured with the model's tokenizer.",
    )
    corpus_tasks: list[Literal["continue", "expand"]] = Field(
        ["continue", "expand"],
        min_length=1,
        description="Writing tasks for corpus_mode style_sft, taking turns across chunks: 'continue' (the opening "
        "paragraphs given, the rest answered) and 'expand' (an extractive outline given, the chunk answered).",
    )

    @field_validator("chunk_tokens")
    @classmethod
    def _chunk_range(cls, value: list[int]) -> list[int]:
        if len(value) != 2 or not 16 <= value[0] < value[1]:
            raise ValueError("data.chunk_tokens is [min, max] with 16 <= min < max, e.g. [300, 800]")
        return value

    @field_validator("placeholders", mode="before")
    @classmethod
    def _placeholder_values(cls, value: Any) -> Any:
        if value is None:  # an emptied form field
            return {}
        if isinstance(value, dict):  # YAML reads `name: 2` as a number and `name:` as None: all are text
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _info_needs_name(self) -> DataConfig:
        if self.dataset_info and not self.name:
            raise ValueError("data.dataset_info needs data.name: the entry to read from it")
        return self


class LoraConfig(Section):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank: capacity of the adapter.")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA alpha: the adapter's scale is alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: str | list[str] = Field(
        "all-linear",
        description="Modules that get adapters: 'all-linear' or a list of names such as q_proj, v_proj.",
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r) instead of alpha / r.")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA); slower, sometimes better.")


class TrainConfig(Section):
    num_epochs: float = Field(3.0, gt=0, le=1000, description="Passes over the training split.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps; overrides num_epochs."
    )
    batch_size: int = Field(2, ge=1, le=4096, description="Samples per device per forward pass.")
    gradient_accumulation_steps: int = Field(
        8, ge=1, le=4096, description="Forward passes summed into one optimizer step."
    )
    learning_rate: float = Field(1e-4, gt=0, le=1, description="Peak learning rate of the adapter.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Fraction of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay on the adapter.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    optim: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "sgd"] = Field(
        "adamw_torch", description="Optimizer; adamw_8bit needs bitsandbytes."
    )
    precision: Precision = Field(
        "auto",
        description="Compute precision. 'auto' picks from the hardware: fp32 on CPUs (bf16 is ~15x slower "
        "there), bf16 on GPUs with bf16 hardware, fp16 otherwise.",
    )
    batching: Literal["padded", "by_length", "padding_free"] = Field(
        "by_length",
        description="How samples form a batch. 'padded': random batches padded to their longest sample. "
        "'by_length': random batches of similar lengths, so little compute goes to padding (the default). "
        "'padding_free': each batch is one concatenated sequence with per-sample position ids and no padding; "
        "samples stay isolated through transformers' packed-sequence attention masks. Fastest with "
        "flash-attention; without it (CPUs, gfx906) the mask grows with the square of the batch's total length, "
        "so prefer by_length there (tunedeck doctor tells).",
    )
    cache_tokenized: bool = Field(
        True,
        description="Keep the tokenized dataset in the cache, keyed by data, tokenizer, template and cutoff, "
        "so restarts and resumes skip tokenization.",
    )
    liger_kernels: bool = Field(
        False,
        description="Use Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused cross-entropy): less memory "
        "and more speed on NVIDIA GPUs. Needs the liger-kernel package; not for CPUs or ROCm gfx906.",
    )
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: much less memory, ~30% slower."
    )
    logging_steps: int = Field(1, ge=1, description="Optimizer steps between two 'step' events.")
    eval_strategy: Strategy = Field(
        "epoch", description="When to compute validation loss."
    )
    eval_steps: int | None = Field(None, ge=1, description="Steps between evaluations when eval_strategy is steps.")
    save_strategy: Strategy = Field("epoch", description="When to write checkpoints.")
    save_steps: int | None = Field(None, ge=1, description="Steps between checkpoints when save_strategy is steps.")
    save_total_limit: int | None = Field(
        3, ge=1, description="Keep at most this many checkpoints: the best (by eval loss) and the newest ones."
    )
    load_best_at_end: bool = Field(
        True,
        description="When training ends, the adapter in adapter/ is the checkpoint with the lowest eval loss, "
        "not the last one (e.g. epoch 3 when eval loss rises after it). Needs matching eval and save strategies.",
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop when eval loss has not improved for this many evaluations; empty: never."
    )
    early_stopping_threshold: float = Field(
        0.0, ge=0.0, description="How much eval loss must fall to count as an improvement for early stopping."
    )
    seed: int = Field(42, ge=0, le=2**32 - 1,
                      description="Seed for adapter initialisation, data order and the validation split.")
    num_threads: int | None = Field(
        None, ge=1, le=1024, description="CPU threads for torch; empty uses every core."
    )
    sample_prompts: list[str] = Field(
        default_factory=list,
        description="Prompts answered by the base and the fine-tuned model when training ends, "
        "so you can see the difference.",
    )

    @model_validator(mode="after")
    def _steps_strategies_need_steps(self) -> TrainConfig:
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ValueError("train.eval_strategy 'steps' needs train.eval_steps")
        if self.save_strategy == "steps" and self.save_steps is None:
            raise ValueError("train.save_strategy 'steps' needs train.save_steps")
        return self

    @model_validator(mode="after")
    def _best_needs_matching_strategies(self) -> TrainConfig:
        if self.early_stopping_patience is not None and self.eval_strategy == "no":
            raise ValueError("train.early_stopping_patience needs an eval_strategy other than 'no'")
        if not self.load_best_at_end or self.eval_strategy == "no":
            return self
        if self.save_strategy != self.eval_strategy:
            raise ValueError("train.load_best_at_end needs save_strategy equal to eval_strategy "
                             "(or set load_best_at_end: false)")
        if self.save_strategy == "steps" and (self.save_steps or 0) % (self.eval_steps or 1):
            raise ValueError("train.load_best_at_end needs save_steps to be a multiple of eval_steps")
        return self


class DistributedConfig(Section):
    num_gpus: int = Field(1, ge=1, le=64, description="GPUs per node; more than one launches accelerate.")
    num_nodes: int = Field(1, ge=1, le=1024, description="Machines taking part; more than one needs a hostfile "
                           "or hosts, and the run folder on a file system every node sees.")
    hostfile: str | None = Field(None, description="DeepSpeed hostfile listing the nodes for multi-node runs, "
                                 "one 'HOST slots=N' line per node, the main node first.")
    hosts: list[str] = Field(
        default_factory=list,
        description="Nodes of a multi-node run, the main node first, instead of a hostfile: tunedeck writes the "
        "hostfile with num_gpus slots each. The nodes must reach each other by passwordless ssh (pdsh).",
    )
    main_process_ip: str | None = Field(
        None, description="Address where the other nodes reach the main node; empty: the first host."
    )
    main_process_port: int = Field(29500, ge=1024, le=65535, description="Port of the main node's rendezvous.")
    multinode_launcher: Literal["pdsh", "openmpi", "mvapich", "mpich"] = Field(
        "pdsh", description="How DeepSpeed starts the processes on the other nodes."
    )
    deepspeed_stage: Literal[0, 2, 3] = Field(
        0,
        description="DeepSpeed ZeRO stage: 0 off (plain data parallel), 2 shards optimizer states and gradients, "
        "3 also shards parameters.",
    )
    offload_optimizer: bool = Field(False, description="ZeRO: keep optimizer states in CPU memory.")
    offload_params: bool = Field(False, description="ZeRO-3: keep parameters in CPU memory.")

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> DistributedConfig:
        if self.offload_optimizer and self.deepspeed_stage == 0:
            raise ValueError("distributed.offload_optimizer needs deepspeed_stage 2 or 3")
        if self.offload_params and self.deepspeed_stage != 3:
            raise ValueError("distributed.offload_params needs deepspeed_stage 3")
        return self

    @model_validator(mode="after")
    def _nodes_need_hosts(self) -> DistributedConfig:
        if self.num_nodes > 1 and not (self.hostfile or self.hosts):
            raise ValueError("distributed.num_nodes > 1 needs distributed.hostfile or distributed.hosts")
        if self.hosts and len(self.hosts) != self.num_nodes:
            raise ValueError(f"distributed.hosts lists {len(self.hosts)} nodes but num_nodes is {self.num_nodes}")
        return self

    @property
    def world_size(self) -> int:
        return self.num_gpus * self.num_nodes


class SamplingConfig(Section):
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="Sampling temperature; 0 answers greedily.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling: keep the smallest set of tokens "
                         "whose probabilities add up to this.")
    top_k: int = Field(40, ge=0, le=100_000, description="Sample among the k most likely tokens; 0 keeps all.")
    repeat_penalty: float = Field(1.1, ge=0.0, le=10.0, description="Penalty on tokens already generated; "
                                  "1.0 is off.")


class ExportConfig(Section):
    checkpoint: str = Field(
        "best",
        description="Adapter to export: 'best' (lowest validation loss, else the final adapter), 'last' "
        "(the final adapter) or a checkpoint's step number.",
    )
    merge_dtype: Literal["auto", "fp16", "bf16", "fp32"] = Field(
        "auto", description="Dtype of the merged model; 'auto' keeps the training precision (fp16 for fp32)."
    )
    quantizations: list[str] = Field(
        default_factory=lambda: ["Q4_K_M"],
        description="GGUF quantization types to produce, e.g. Q4_K_M, Q5_K_M, Q8_0 (`tunedeck export --list-quants`).",
    )
    system_prompt: str | None = Field(
        None, description="SYSTEM prompt written into the Ollama Modelfile; empty uses data.system_prompt."
    )
    ollama_name: str | None = Field(None, description="Name for 'ollama create'; empty uses the run id.")
    num_ctx: int | None = Field(
        None, ge=16, le=1_048_576, description="Context length written into the Modelfile; empty uses data.cutoff_len."
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig, description="Sampling defaults written into the Modelfile."
    )
    eval_samples: int = Field(
        32, ge=1, le=100_000,
        description="Validation conversations used by the export checks (template round trip, perplexity).",
    )
    check_max_tokens: int = Field(
        128, ge=8, le=8192, description="Longest greedy answer the stop check waits for before calling it a failure."
    )

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_choice(cls, value: str) -> str:
        if value not in ("best", "last") and not value.isdigit():
            raise ValueError("use 'best', 'last' or a checkpoint's step number")
        return value

    @field_validator("quantizations")
    @classmethod
    def _known_quantizations(cls, value: list[str]) -> list[str]:
        return normalize_quant_types(value)


class Config(Section):
    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model and its template.")
    data: DataConfig = Field(default_factory=DataConfig, description="The training data.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="The LoRA adapter.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The optimisation loop.")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="GPUs, nodes and DeepSpeed."
    )
    export: ExportConfig = Field(default_factory=ExportConfig, description="Merge, GGUF and Ollama export.")
