"""The training recipe: a run's config in; a LoRA adapter, checkpoints and events out."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from tunedeck.core.atomic import atomic_dir
from tunedeck.core.config import Config
from tunedeck.core.data.cache import TokenizedData
from tunedeck.core.data.training_set import prepare_data
from tunedeck.core.hardware.detect import detect_hardware, precision_warning, resolve_precision
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from tunedeck.core.private import private_dir
from tunedeck.core.stream.events import EventWriter, Log, RunFinished, RunStarted, Sample
from tunedeck.core.training.distributed import is_main_process, under_launcher
from tunedeck.core.training.launch import launch_record

log = logging.getLogger(__name__)


def run_training(run: RunDir, events: EventWriter, cancel: threading.Event, resume: bool = False) -> RunFinished:
    """Train one run to completion (or to a stop request); errors propagate to the worker.

    With resume, training continues from the newest complete checkpoint: same global step,
    optimizer, scheduler, RNG and data order.
    """
    config = run.load_config()
    widened = private_dir(run.path) if is_main_process() else None
    if widened is not None:
        events.emit(Log(level="warning", message=f"the run folder was open to others (mode {widened:o}): made "
                        "private (700), as run folders are"))
    checkpoint = _resume_point(run, events) if resume else None
    hardware = detect_hardware()
    launched = launch_record(run) if under_launcher() else None  # ranks share the launch job's precision
    precision = launched["precision"] if launched else resolve_precision(config.train.precision, hardware)
    warning = precision_warning(precision, hardware)
    if warning and is_main_process():
        events.emit(Log(level="warning", message=warning))
    _configure_threads(config, hardware)

    say(events, f"loading tokenizer from {config.model.name_or_path}")
    model_path = resolve_model_path(config.model.name_or_path)
    tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
    prepared = prepare_data(config, tokenizer, events)
    run.update_status(longest_sample=max(map(len, prepared.train["input_ids"]), default=0))

    if cancel.is_set():
        return RunFinished(status="stopped", message="stopped before training began")
    say(events, f"loading model ({precision})")
    model = _load_model(config, model_path, precision)

    trainer = _build_trainer(config, run, model, tokenizer, prepared, precision, hardware, events, cancel)
    say(events, f"training on {len(prepared.train)} samples, validating on {len(prepared.val)}")
    _check_fingerprint(run, prepared, events, resuming=checkpoint is not None)
    _reset_peak_memory(hardware)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - started
    state = trainer.state
    stopped = cancel.is_set()
    _report_early_stop(trainer, config, events)

    peak = _peak_memory(hardware)
    adapter = save_adapter_ranks(trainer, run) if under_launcher() else save_adapter(trainer.model, tokenizer, run)
    say(events, f"adapter saved to {adapter}")
    # Rank 0 answers alone; under ZeRO-3 it holds only a shard of the weights, so there are no samples.
    if config.train.sample_prompts and not stopped and is_main_process() and config.distributed.deepspeed_stage < 3:
        answer_samples(trainer.model, tokenizer, config.train.sample_prompts, events)
    return RunFinished(
        status="stopped" if stopped else "completed",
        best_checkpoint=state.best_model_checkpoint,
        final_step=state.global_step,
        adapter=str(adapter),
        message="stopped on request" if stopped else "",
        train_seconds=round(train_seconds, 3),
        train_tokens=int(getattr(trainer, "_total_train_tokens", 0)) or None,
        peak_memory=peak,
    )


def _resume_point(run: RunDir, events: EventWriter) -> Any:
    from tunedeck.core.errors import RunError
    from tunedeck.core.training.checkpoints import newest_complete

    found = newest_complete(run.checkpoints, warn=lambda m: events.emit(Log(level="warning", message=m)))
    if found is None:
        raise RunError("no complete checkpoint to resume from", where=str(run.checkpoints),
                       hint=f"start it again with: tunedeck train {run.config_path}")
    say(events, f"resuming from {found[1].name} (step {found[0]})")
    return found[1]


def _check_fingerprint(run: RunDir, prepared: TokenizedData, events: EventWriter, resuming: bool) -> None:
    """Record what the run trains on; warn on resume if the data or tokenizer changed since."""
    fingerprint = prepared.key
    before = run.read_status().get("data_fingerprint")
    if resuming and before and before != fingerprint:
        events.emit(Log(level="warning", message="the training data changed since this run started: "
                        "the resumed run will not see the same samples in the same order"))
    run.update_status(data_fingerprint=fingerprint)


def _report_early_stop(trainer: Any, config: Config, events: EventWriter) -> None:
    """Say so when early stopping ended the run, and which checkpoint was best."""
    patience = config.train.early_stopping_patience
    if not patience:
        return
    state = trainer.state
    for callback in trainer.callback_handler.callbacks:
        if getattr(callback, "early_stopping_patience_counter", 0) >= patience:
            events.emit(Log(level="info", message=(
                f"stopped early at step {state.global_step} of {state.max_steps}: eval loss has not improved "
                f"for {patience} evaluations (best {state.best_metric:.4f} at {state.best_model_checkpoint})")))


def say(events: EventWriter, message: str) -> None:
    log.info(message)
    events.emit(Log(level="info", message=message))


def _reset_peak_memory(hardware: dict[str, Any]) -> None:
    import torch

    if hardware["accelerator"] != "cpu":
        torch.cuda.reset_peak_memory_stats()


def _peak_memory(hardware: dict[str, Any]) -> int:
    """Peak GPU allocation of this process, or its peak resident memory on a CPU."""
    import resource

    import torch

    if hardware["accelerator"] != "cpu":
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _configure_threads(config: Config, hardware: dict[str, Any]) -> None:
    import torch

    if hardware["accelerator"] == "cpu":
        torch.set_num_threads(config.train.num_threads or hardware["cpu_cores"])


def _torch_dtype(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _load_model(config: Config, model_path: str, precision: str) -> Any:
    kwargs: dict[str, Any] = {}
    if config.model.attn_implementation != "auto":
        kwargs["attn_implementation"] = config.model.attn_implementation
    if config.model.quantization != "none":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=config.model.quantization == "4bit",
            load_in_8bit=config.model.quantization == "8bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=_torch_dtype(precision if precision != "fp32" else "bf16"),
        )
    # fp16 training keeps fp32 master weights for the adapter; the frozen base can be fp16.
    return load_causal_lm(model_path, _torch_dtype(precision), config.model.trust_remote_code, **kwargs)


def _build_trainer(config, run, model, tokenizer, prepared, precision, hardware, events, cancel) -> Any:
    from peft import LoraConfig
    from transformers import EarlyStoppingCallback, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from tunedeck.core.training.callbacks import EventCallback, StopCallback

    t = config.train
    has_val = len(prepared.val) > 0
    if not has_val and t.eval_strategy != "no":
        events.emit(Log(level="info", message=f"{no_validation_reason(config)}: evaluation is off"))
    eval_strategy = t.eval_strategy if has_val else "no"
    args = SFTConfig(
        output_dir=str(run.checkpoints),
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=hardware["accelerator"] == "cpu",
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        logging_steps=t.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=None,  # EventCallback rotates, after the newest checkpoint's manifest is written
        metric_for_best_model="eval_loss" if eval_strategy != "no" else None,
        greater_is_better=False,
        load_best_model_at_end=t.load_best_at_end and eval_strategy != "no",
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        disable_tqdm=True,
        max_length=None,  # samples arrive cut to data.cutoff_len by core.data.tokenize
        padding_free=t.batching == "padding_free",
        train_sampling_strategy="group_by_length" if t.batching == "by_length" else "random",
        use_liger_kernel=t.liger_kernels,
        dataloader_pin_memory=hardware["accelerator"] != "cpu",
        deepspeed=(launch_record(run) or {}).get("deepspeed_config") if under_launcher() else None,
        ddp_find_unused_parameters=False,  # every adapter weight takes part in each forward pass
    )
    peft_config = LoraConfig(
        r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules, use_rslora=config.lora.use_rslora,
        use_dora=config.lora.use_dora, task_type="CAUSAL_LM",
    )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    samples_per_step = t.batch_size * t.gradient_accumulation_steps * world_size

    def started(state) -> None:
        events.emit(RunStarted(
            run_id=run.run_id, config=config.model_dump(mode="json"), world_size=world_size,
            hardware=hardware, precision=precision, total_steps=state.max_steps, num_epochs=t.num_epochs,
            train_samples=len(prepared.train), eval_samples=len(prepared.val),
            resumed_from_step=state.global_step,
        ))
        run.update_status(status="running", total_steps=state.max_steps, precision=precision)

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=prepared.train,
        eval_dataset=prepared.val if has_val else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[EventCallback(run, events, samples_per_step, started, keep=t.save_total_limit),
                   StopCallback(cancel, events)],
    )
    if t.early_stopping_patience and eval_strategy != "no":
        trainer.add_callback(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
    trainer.remove_callback(PrinterCallback)  # the event stream already carries every log line
    return trainer


def no_validation_reason(config: Config) -> str:
    """Why a run has no validation samples, as it is: no split asked for, or one that came out empty."""
    data = config.data
    if data.val_path:
        return f"no validation samples: none of {data.val_path} fits data.cutoff_len"
    if data.val_size == 0:
        return "no validation split (data.val_size is 0)"
    return (f"no validation samples: data.val_size {data.val_size} held out none (too few rows, or every held-out "
            "sample was cut away by data.cutoff_len)")


def save_adapter(model: Any, tokenizer: Any, run: RunDir) -> Any:
    """Write the adapter and tokenizer (with its chat template) to adapter/, atomically."""
    with atomic_dir(run.adapter) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return run.adapter


def save_adapter_ranks(trainer: Any, run: RunDir) -> Any:
    """Every rank takes part (ZeRO-3 gathers the adapter's shards); rank 0 writes it, then moves it into place."""
    import shutil

    staging = run.path / ".adapter-partial"
    trainer.save_model(str(staging))  # the Trainer writes the adapter and tokenizer on the main process only
    if trainer.is_world_process_zero():
        old = run.path / ".adapter-old"
        if run.adapter.exists():
            os.replace(run.adapter, old)
        os.replace(staging, run.adapter)
        shutil.rmtree(old, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return run.adapter


def answer_samples(model: Any, tokenizer: Any, prompts: list[str], events: EventWriter) -> None:
    """Answer each prompt greedily with the adapter off (base) and on (fine-tuned)."""
    from tunedeck.core.models.generate import generate_reply

    model.eval()
    for prompt in prompts:
        with model.disable_adapter():
            base = generate_reply(model, tokenizer, [{"role": "user", "content": prompt}])
        tuned = generate_reply(model, tokenizer, [{"role": "user", "content": prompt}])
        events.emit(Sample(prompt=prompt, base=base, tuned=tuned))
