"""Evaluate a run's adapter on held-out rows: loss and perplexity, greedy answers, scores; the base side by side."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tunedeck.core.data.tokenize import IGNORE_INDEX, EncodedSample, encode_conversation
from tunedeck.core.data.tool_format import template_inputs
from tunedeck.core.evaluate.heldout import HeldOutRow, load_held_out
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.evaluate.output import write_metrics, write_predictions
from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation
from tunedeck.core.export.layout import resolve_adapter
from tunedeck.core.hardware.detect import detect_hardware, resolve_precision
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.models.generate import stop_token_ids
from tunedeck.core.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from tunedeck.core.models.templates import TEMPLATES
from tunedeck.core.stream.events import EvalProgress, EvalStarted, Log

Emit = Callable[[Any], Any]


def run_evaluation(run: RunDir, request: EvalRequest, emit: Emit, cancel: threading.Event) -> dict[str, Any]:
    """Score the fine-tuned model (and the base, when asked) on held-out rows; write eval/ and return the metrics."""
    started = time.perf_counter()
    config = run.load_config()
    checkpoint, adapter = resolve_adapter(run, request.checkpoint)
    tokenizer = load_eval_tokenizer(config, adapter)
    source, rows = load_held_out(config, request.data, request.max_rows, tokenizer)
    phases = ["loss", "generate"] + (["base_loss", "base_generate"] if request.compare_base else [])
    emit(EvalStarted(run_id=run.run_id, source=source, rows=len(rows), phases=phases, adapter=str(adapter)))
    emit(Log(level="info", message=f"adapter: {checkpoint} ({adapter})"))
    model, tokenizer, precision = load_model(config, adapter, tokenizer)
    emit(Log(level="info", message=f"model loaded ({precision}, {model.device})"))
    samples = [encode_conversation(tokenizer, row.conversation, config.data.cutoff_len) for row in rows]
    max_new_tokens = request.max_new_tokens or answer_budget(tokenizer, rows)

    sides = [("finetuned", "")] + ([("base", "base_")] if request.compare_base else [])
    answered: dict[str, SideAnswers] = {}
    for side, prefix in sides:
        with model.disable_adapter() if side == "base" else nullcontext():
            losses = eval_losses(model, samples, request.batch_size, _progress(emit, prefix + "loss", cancel))
            answers = generate_answers(model, tokenizer, rows, max_new_tokens, request.batch_size,
                                       _progress(emit, prefix + "generate", cancel))
        answered[side] = SideAnswers(answers, losses)
    emit(Log(level="info", message="scoring the answers"))
    scored, scoring = score_evaluation([row.reference for row in rows], answered, request.tolerance, request.compat)
    results = {side: {"answers": given.answers, "losses": row_losses(given.losses),
                      "tokens": [t for _, t in given.losses], **scored[side]} for side, given in answered.items()}

    layout = EvalLayout.for_run(run)
    write_predictions(layout, rows, results)
    metrics = {
        "run_id": run.run_id, "checkpoint": checkpoint, "adapter": str(adapter), "source": source,
        "rows": len(rows), "max_new_tokens": max_new_tokens, "precision": precision,
        "seconds": round(time.perf_counter() - started, 1),
        **{side: result["summary"] for side, result in results.items()},
        **scoring,
    }
    write_metrics(layout, metrics)
    return metrics


def answer_budget(tokenizer: Any, rows: list[HeldOutRow]) -> int:
    """Enough new tokens for the longest reference answer, plus room to ramble a little (32)."""
    longest = max((len(tokenizer(r.reference, add_special_tokens=False)["input_ids"]) for r in rows), default=0)
    return min(longest + 32, 2048)


def _progress(emit: Emit, phase: str, cancel: threading.Event) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        emit(EvalProgress(phase=phase, done=done, total=total))
        if cancel.is_set():
            raise InterruptedError("stopped on request")

    return report


def load_eval_tokenizer(config: Any, adapter: Path) -> Any:
    """The tokenizer training used: saved with the adapter (or the run's final adapter), else the base model's
    with the run's named template."""
    base_path = resolve_model_path(config.model.name_or_path)
    tokenizer_dir = next((p for p in (adapter, adapter.parent.parent / "adapter")
                          if (p / "tokenizer_config.json").is_file()), None)
    tokenizer = load_tokenizer(str(tokenizer_dir or base_path), config.model.trust_remote_code)
    if tokenizer_dir is None and config.model.template != "auto":
        tokenizer.chat_template = TEMPLATES[config.model.template].jinja
    return tokenizer


def load_model(config: Any, adapter: Path, tokenizer: Any = None) -> tuple[Any, Any, str]:
    """The base model with the run's adapter on top (PEFT), its training tokenizer, and the precision used."""
    import torch
    from peft import PeftModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hardware = detect_hardware()
    precision = resolve_precision(config.train.precision, hardware)
    if hardware["accelerator"] == "cpu":
        torch.set_num_threads(config.train.num_threads or hardware["cpu_cores"])
    base_path = resolve_model_path(config.model.name_or_path)
    tokenizer = tokenizer if tokenizer is not None else load_eval_tokenizer(config, adapter)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    base = load_causal_lm(base_path, dtype, config.model.trust_remote_code)
    if torch.cuda.is_available():
        base = base.to("cuda")
    model = PeftModel.from_pretrained(base, str(adapter))
    model.eval()
    return model, tokenizer, precision


def _batches(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, max(size, 1))]


def eval_losses(model: Any, samples: list[EncodedSample], batch_size: int,
                progress: Callable[[int, int], None]) -> list[tuple[float, int]]:
    """Per row: (summed negative log-likelihood of its answer tokens, how many tokens), in padded batches."""
    import torch

    out: list[tuple[float, int]] = []
    for batch in _batches(len(samples), batch_size):
        chunk = [samples[i] for i in batch]
        width = max(len(s.input_ids) for s in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, sample in enumerate(chunk):
            n = len(sample.input_ids)
            ids[row, :n] = torch.tensor(sample.input_ids)
            labels[row, :n] = torch.tensor(sample.labels)
            mask[row, :n] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logits, targets = logits[:, :-1].float(), labels[:, 1:].to(logits.device)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                                                reduction="none")
        counted = targets != IGNORE_INDEX
        for row in range(len(chunk)):
            out.append((float(nll[row][counted[row]].sum()), int(counted[row].sum())))
        progress(batch.stop, len(samples))
    return out


def generate_answers(model: Any, tokenizer: Any, rows: list[HeldOutRow], max_new_tokens: int, batch_size: int,
                     progress: Callable[[int, int], None]) -> list[str]:
    """Greedy answers to each row's prompt through the chat template, left-padded in batches."""
    import torch

    stops = stop_token_ids(tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers: list[str] = []
    try:
        for batch in _batches(len(rows), batch_size):
            texts = [_prompt_text(tokenizer, rows[i]) for i in batch]
            inputs = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                        pad_token_id=tokenizer.pad_token_id)
            new = output[:, inputs["input_ids"].shape[1]:]
            answers += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
            progress(batch.stop, len(rows))
    finally:
        tokenizer.padding_side = side
    return answers


def _prompt_text(tokenizer: Any, row: HeldOutRow) -> str:
    """The row's prompt through the chat template, tools it cannot show in the fallback form (as trained);
    pretraining text as it was trained: no template, the BOS token first where the tokenizer adds one."""
    if row.text_prompt is not None:
        ids = tokenizer(row.text_prompt, add_special_tokens=True)["input_ids"]
        adds_bos = tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]
        return (tokenizer.bos_token if adds_bos else "") + row.text_prompt
    messages, tools = template_inputs(tokenizer, row.prompt, row.conversation.tools)
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)


def row_losses(losses: list[tuple[float, int]]) -> list[float | None]:
    """Each row's mean answer-token loss, as predictions.jsonl shows it."""
    return [round(n / t, 5) if t else None for n, t in losses]
