"""The export recipe: a run's adapter in; a merged model, GGUFs, Ollama Modelfiles, checks and report.json out."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import ExportConfig
from tunedeck.core.export import checks
from tunedeck.core.export.chat_format import detect_chat_format, go_template, stop_strings
from tunedeck.core.export.gguf import convert_to_gguf, gguf_outtype
from tunedeck.core.export.layout import resolve_adapter
from tunedeck.core.export.manifest import fingerprint, inputs_key
from tunedeck.core.export.merge import merge_adapter, resolve_merge_dtype
from tunedeck.core.export.modelfile import ModelfileSpec, render_modelfile
from tunedeck.core.export.quantize import quantize_gguf
from tunedeck.core.export.report import build_report, finished_event
from tunedeck.core.export.runner import Export, ExportStopped
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.models.loading import load_tokenizer, resolve_model_path
from tunedeck.core.stream.events import EventWriter, ExportFinished, ExportStarted


def run_export(run: RunDir, options: ExportConfig, events: EventWriter, cancel: threading.Event) -> ExportFinished:
    """Export a run end to end; returns the finished event (errors propagate to the worker)."""
    export = Export(run, run.load_config(), options, events, cancel)
    for leftover in export.layout.remove_leftovers():
        export.say(f"removed an unfinished file from an earlier export: {leftover.name}")
    checkpoint, adapter = resolve_adapter(run, options.checkpoint)
    events.emit(ExportStarted(run_id=run.run_id, checkpoint=checkpoint, adapter=str(adapter),
                              steps=plan(options, with_ollama=_ollama_installed()),
                              options=options.model_dump(mode="json")))
    try:
        dtype = _merge(export, adapter, checkpoint)
        base_gguf = _convert(export, dtype)
        quants = {quant: _quantize(export, base_gguf, quant) for quant in options.quantizations}
        chat = ChatSetup(export, base_gguf)
        for quant, gguf in quants.items():
            _write_modelfile(export, chat, quant, gguf)
        results = _run_checks(export, chat, quants)
    except ExportStopped as exc:
        return ExportFinished(status="stopped", message=str(exc))
    source = {"run_id": run.run_id, "checkpoint": checkpoint, "adapter": str(adapter)}
    report = build_report(export.layout, source, chat.summary(), dtype, base_gguf, quants, results)
    write_atomic(export.layout.report, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return finished_event(report, export.layout.report)


def plan(options: ExportConfig, with_ollama: bool = False) -> list[str]:
    """Step names in the order they run (ollama:* only where ollama is installed)."""
    quants = options.quantizations
    return ["merge", "gguf", *[f"quantize:{q}" for q in quants], *[f"modelfile:{q}" for q in quants],
            "check:modelfile", "check:merged",
            *[s for q in quants for s in (f"check:{q}", *([f"ollama:{q}"] if with_ollama else []))]]


def _merge(export: Export, adapter: Path, checkpoint: str) -> str:
    """Fold the adapter into the base model (safetensors, with the training tokenizer); returns the dtype used."""
    base = export.config.model.name_or_path
    dtype = resolve_merge_dtype(export.options.merge_dtype, export.run.read_status().get("precision"))
    key = inputs_key(adapter=_adapter_key(adapter), base=base, dtype=dtype)

    def work() -> dict[str, Any]:
        merge_adapter(resolve_model_path(base), adapter, export.layout.merged, dtype)
        return {"dtype": dtype, "message": f"merged {checkpoint} in {dtype}"}

    export.step("merge", key, [export.layout.merged], work)
    return dtype


def _convert(export: Export, dtype: str) -> Path:
    """The merged model as a float GGUF, written by llama.cpp's converter."""
    outtype = gguf_outtype(dtype)
    target = export.layout.gguf(outtype)
    key = inputs_key(merged=export.output_fingerprint("merge", export.layout.merged), outtype=outtype)

    def work() -> dict[str, Any]:
        convert_to_gguf(export.layout.merged, target, outtype, export.cancel, export.progress("gguf"))
        return {"type": outtype, "message": f"{target.name}, {_mib(target)}"}

    export.step("gguf", key, [target], work)
    return target


def _quantize(export: Export, base_gguf: Path, quant: str) -> Path:
    """The float GGUF quantized to one type by llama.cpp."""
    target = export.layout.gguf(quant)
    key = inputs_key(source=export.output_fingerprint("gguf", base_gguf), quant=quant)

    def work() -> dict[str, Any]:
        quantize_gguf(base_gguf, target, quant, checks.threads())
        return {"message": f"{target.name}, {_mib(target)}"}

    export.step(f"quantize:{quant}", key, [target], work)
    return target


class ChatSetup:
    """What the Modelfiles and the checks share, worked out once from the merged model.

    The training tokenizer, its chat format and Ollama TEMPLATE, the stops, system prompt and context length,
    the held-out set, and the prompt every model answers.
    """

    def __init__(self, export: Export, base_gguf: Path):
        from llama_cpp import Llama

        options, config = export.options, export.config
        self.tokenizer = load_tokenizer(str(export.layout.merged))
        self.format = detect_chat_format(self.tokenizer)
        self.stops = stop_strings(self.tokenizer)
        self.stop_ids = set(self.tokenizer.convert_tokens_to_ids(self.stops))
        vocab = Llama(str(base_gguf), vocab_only=True, verbose=False)
        self.gguf_adds_bos = vocab.metadata.get("tokenizer.ggml.add_bos_token") == "true"
        del vocab
        self.template = go_template(self.format, self.gguf_adds_bos)
        self.system = options.system_prompt or config.data.system_prompt
        self.num_ctx = options.num_ctx or config.data.cutoff_len
        self.eval = checks.load_eval_set(config, self.tokenizer, options.eval_samples)
        self.eval_key = hashlib.sha256(json.dumps([c for c, _ in self.eval.chats]).encode()).hexdigest()[:16]
        self.prompt = (config.train.sample_prompts or [_first_user_text(self.eval.chats)])[0]
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": self.prompt}]
        self.prompt_ids = checks.hf_chat_ids(self.tokenizer, messages, None, True)

    def summary(self) -> dict[str, Any]:
        """The report's account of the chat side: format, stops, system prompt, context, prompt, held-out set."""
        return {
            "chat_format": {"family": self.format.family, "default_system": self.format.default_system,
                            "tools": "native" if self.format.tools else "fallback form",
                            "gguf_adds_bos": self.gguf_adds_bos},
            "stops": self.stops, "system_prompt": self.system, "num_ctx": self.num_ctx, "prompt": self.prompt,
            "eval": {"source": self.eval.source, "conversations": len(self.eval.chats),
                     "tokens": sum(s.trained_tokens for s in self.eval.samples)},
        }


def _write_modelfile(export: Export, chat: ChatSetup, quant: str, gguf: Path) -> None:
    """Modelfile.<QUANT> beside its GGUF: TEMPLATE, SYSTEM, a stop per end token, num_ctx and sampling."""
    target = export.layout.modelfile(quant)
    spec = ModelfileSpec(
        gguf_file=gguf.name, template=chat.template, system=chat.system, stops=chat.stops, num_ctx=chat.num_ctx,
        sampling=export.options.sampling,
        comment=f"Ollama Modelfile for run {export.run.run_id} ({quant}), written by tunedeck export.\n"
                f"Use it with: ollama create {export.layout.name}:{quant.lower()} -f {target.name}",
    )
    text = render_modelfile(spec)
    key = inputs_key(gguf=export.output_fingerprint(f"quantize:{quant}", gguf), text=text)

    def work() -> dict[str, Any]:
        write_atomic(target, text)
        return {"message": target.name}

    export.step(f"modelfile:{quant}", key, [target], work)


def _run_checks(export: Export, chat: ChatSetup, quants: dict[str, Path]) -> dict[str, Any]:
    """The TEMPLATE against the training template, then the merged model, then each quant against it."""
    results: dict[str, Any] = {}
    key = inputs_key(template=chat.template, system=chat.system, chats=chat.eval_key)
    results["modelfile"] = export.step("check:modelfile", key, [], lambda: checks.modelfile_template_check(
        chat.tokenizer, chat.format, chat.eval.chats, chat.system, chat.gguf_adds_bos))
    export.check("modelfile", "TEMPLATE", results["modelfile"])

    key = inputs_key(merged=export.output_fingerprint("merge", export.layout.merged), chats=chat.eval_key,
                     prompt=chat.prompt_ids, stops=sorted(chat.stop_ids))
    results["merged"] = export.step("check:merged", key, [], lambda: _check_merged(export, chat))
    export.check("stop", "merged", results["merged"]["stop"])

    merged_perplexity = results["merged"]["quality"].get("perplexity")
    for quant, gguf in quants.items():
        results[quant] = _check_quant(export, chat, quant, gguf, merged_perplexity)
    return results


def _check_merged(export: Export, chat: ChatSetup) -> dict[str, Any]:
    """The merged model in torch: perplexity on the held-out set, and whether its answer ends on a stop token."""
    import torch

    merged_dtype = export.manifest.steps["merge"]["result"].get("dtype", "fp32")
    dtype = torch.float32 if not torch.cuda.is_available() else getattr(
        torch, {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[merged_dtype])
    export.say(f"measuring the merged model on {len(chat.eval.samples)} {chat.eval.source} samples")
    quality, model = checks.hf_perplexity(export.layout.merged, chat.eval.samples, dtype)
    answer = checks.hf_answer(model, chat.prompt_ids, chat.stop_ids, export.options.check_max_tokens,
                              chat.tokenizer.pad_token_id)
    text = chat.tokenizer.decode(answer.pop("body"), skip_special_tokens=True).strip()
    ended = answer.pop("ended_id")
    answer.update(answer=text, ended_on=chat.tokenizer.convert_ids_to_tokens(ended) if ended is not None
                  else "length limit")
    answer["message"] = checks.stop_message(answer)
    quality["passed"] = quality.get("perplexity") is not None
    quality["message"] = f"perplexity {quality.get('perplexity')}"
    del model
    return {"quality": quality, "stop": answer}


def _check_quant(export: Export, chat: ChatSetup, quant: str, gguf: Path,
                 merged_perplexity: float | None) -> dict[str, Any]:
    """One quant: template round trip, stop, perplexity against the merged model's, and ollama where installed."""
    key = inputs_key(gguf=export.output_fingerprint(f"quantize:{quant}", gguf), chats=chat.eval_key,
                     prompt=chat.prompt_ids, stops=sorted(chat.stop_ids), max_tokens=export.options.check_max_tokens)
    result = export.step(f"check:{quant}", key, [], lambda: _measure_gguf(export, chat, gguf))
    result["quality"] = checks.judge_quality(result["quality"], merged_perplexity)
    for name in ("template", "stop", "quality"):
        export.check(name, quant, result[name])
    modelfile = export.layout.modelfile(quant)
    name = f"{export.layout.name}:{quant.lower()}"
    if _ollama_installed():
        key = inputs_key(modelfile=export.output_fingerprint(f"modelfile:{quant}", modelfile),
                         gguf=export.output_fingerprint(f"quantize:{quant}", gguf))
        result["ollama"] = export.step(f"ollama:{quant}", key, [],
                                       lambda: checks.ollama_check(modelfile, name, chat.prompt))
    else:
        result["ollama"] = checks.ollama_check(modelfile, name, "")
    export.check("ollama", quant, result["ollama"])
    return result


def _measure_gguf(export: Export, chat: ChatSetup, gguf: Path) -> dict[str, Any]:
    template = checks.template_round_trip(gguf, chat.tokenizer, chat.eval.chats)
    stop = checks.gguf_answer(gguf, chat.prompt_ids, chat.stop_ids, export.options.check_max_tokens)
    stop["message"] = checks.stop_message(stop)
    quality = checks.gguf_perplexity(gguf, chat.eval.samples) if chat.eval.samples else {"perplexity": None}
    return {"template": template, "stop": stop, "quality": quality}


def _adapter_key(adapter: Path) -> dict[str, Any]:
    return {name: fingerprint(adapter / name) for name in ("adapter_config.json", "adapter_model.safetensors",
                                                            "chat_template.jinja", "tokenizer_config.json")
            if (adapter / name).is_file()}


def _first_user_text(chats: list[tuple[list[dict], Any]]) -> str:
    for messages, _ in chats:
        for message in messages:
            if message["role"] == "user" and message["content"].strip():
                return message["content"]
    return "Who are you?"


def _ollama_installed() -> bool:
    return shutil.which("ollama") is not None


def _mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"
