"""The export's steps in order: merge, GGUF, quantize, Modelfiles, then the checks and the report."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.export import checks
from tunedeck.core.export.manifest import inputs_key
from tunedeck.core.export.pipeline import Export, adapter_key

QUALITY_TOLERANCE = 1.25  # a quant whose perplexity exceeds the merged model's by more than this fails


def run_steps(export: Export, adapter: Path, checkpoint: str) -> dict[str, Any]:
    from tunedeck.core.export.gguf import convert_to_gguf, gguf_outtype
    from tunedeck.core.export.merge import merge_adapter, resolve_merge_dtype
    from tunedeck.core.export.quantize import quantize_gguf
    from tunedeck.core.models.loading import resolve_model_path

    config, options, layout, manifest = export.config, export.options, export.layout, export.manifest
    dtype = resolve_merge_dtype(options.merge_dtype, export.run.read_status().get("precision"))
    merge_key = inputs_key(adapter=adapter_key(adapter), base=config.model.name_or_path, dtype=dtype)
    export.step("merge", merge_key, [layout.merged], lambda: (
        merge_adapter(resolve_model_path(config.model.name_or_path), adapter, layout.merged, dtype),
        {"dtype": dtype, "message": f"merged {checkpoint} in {dtype}"})[1])

    outtype = gguf_outtype(dtype)
    base_gguf = layout.gguf(outtype)
    gguf_key = inputs_key(merged=manifest.output_fingerprint("merge", "merged"), outtype=outtype)
    export.step("gguf", gguf_key, [base_gguf], lambda: (
        convert_to_gguf(layout.merged, base_gguf, outtype, export.cancel, export.progress("gguf")),
        {"type": outtype, "message": f"{base_gguf.name}, {_mib(base_gguf)}"})[1])

    quants: dict[str, Path] = {}
    for quant in options.quantizations:
        target = layout.gguf(quant)
        key = inputs_key(source=manifest.output_fingerprint("gguf", base_gguf.name), quant=quant)
        export.step(f"quantize:{quant}", key, [target], lambda q=quant, t=target: (
            quantize_gguf(base_gguf, t, q, checks.threads()), {"message": f"{t.name}, {_mib(t)}"})[1])
        quants[quant] = target

    ctx = _Context(export, base_gguf)
    for quant, path in quants.items():
        _write_modelfile(ctx, quant, path)
    results = _run_checks(ctx, quants)
    return _report(ctx, adapter, checkpoint, dtype, base_gguf, quants, results)


class _Context:
    """What the later steps share: the training tokenizer, its chat format, stops, and the held-out set."""

    def __init__(self, export: Export, base_gguf: Path):
        from llama_cpp import Llama

        from tunedeck.core.export.chat_format import detect_chat_format, go_template, stop_strings
        from tunedeck.core.models.loading import load_tokenizer

        self.export = export
        self.tokenizer = load_tokenizer(str(export.layout.merged))
        self.format = detect_chat_format(self.tokenizer)
        self.stops = stop_strings(self.tokenizer)
        self.stop_ids = set(self.tokenizer.convert_tokens_to_ids(self.stops))
        vocab = Llama(str(base_gguf), vocab_only=True, verbose=False)
        self.gguf_adds_bos = vocab.metadata.get("tokenizer.ggml.add_bos_token") == "true"
        del vocab
        self.template = go_template(self.format, self.gguf_adds_bos)
        options, config = export.options, export.config
        self.system = options.system_prompt or config.data.system_prompt
        self.num_ctx = options.num_ctx or config.data.cutoff_len
        self.eval = checks.load_eval_set(config, self.tokenizer, options.eval_samples)
        self.eval_key = hashlib.sha256(json.dumps([c for c, _ in self.eval.chats]).encode()).hexdigest()[:16]
        prompt = (config.train.sample_prompts or [_first_user_text(self.eval.chats)])[0]
        self.prompt = prompt
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": prompt}]
        self.prompt_ids = checks._hf_ids(self.tokenizer, messages, None, True)

    def fp(self, step: str, path: Path) -> Any:
        return self.export.manifest.output_fingerprint(step, path.name)


def _first_user_text(chats: list[tuple[list[dict], Any]]) -> str:
    for messages, _ in chats:
        for message in messages:
            if message["role"] == "user" and message["content"].strip():
                return message["content"]
    return "Who are you?"


def _write_modelfile(ctx: _Context, quant: str, gguf: Path) -> None:
    from tunedeck.core.export.modelfile import ModelfileSpec, render_modelfile

    export = ctx.export
    options = export.options
    target = export.layout.modelfile(quant)
    spec = ModelfileSpec(
        gguf_file=gguf.name, template=ctx.template, system=ctx.system, stops=ctx.stops, num_ctx=ctx.num_ctx,
        sampling=options.sampling,
        comment=f"Ollama Modelfile for run {export.run.run_id} ({quant}), written by tunedeck export.\n"
                f"Use it with: ollama create {export.layout.name}:{quant.lower()} -f {target.name}",
    )
    text = render_modelfile(spec)
    key = inputs_key(gguf=ctx.fp(f"quantize:{quant}", gguf), text=text)
    export.step(f"modelfile:{quant}", key, [target], lambda: (
        write_atomic(target, text), {"message": target.name})[1])


def _run_checks(ctx: _Context, quants: dict[str, Path]) -> dict[str, Any]:
    export = ctx.export
    results: dict[str, Any] = {}
    key = inputs_key(template=ctx.template, system=ctx.system, chats=ctx.eval_key)
    results["modelfile"] = export.step("check:modelfile", key, [], lambda: checks.modelfile_template_check(
        ctx.tokenizer, ctx.format, ctx.eval.chats, ctx.system, ctx.gguf_adds_bos))
    export.check("modelfile", "TEMPLATE", results["modelfile"])

    merged_key = inputs_key(merged=export.manifest.output_fingerprint("merge", "merged"), chats=ctx.eval_key,
                            prompt=ctx.prompt_ids, stops=sorted(ctx.stop_ids))
    results["merged"] = export.step("check:merged", merged_key, [], lambda: _check_merged(ctx))
    export.check("stop", "merged", results["merged"]["stop"])

    for quant, path in quants.items():
        key = inputs_key(gguf=ctx.fp(f"quantize:{quant}", path), chats=ctx.eval_key, prompt=ctx.prompt_ids,
                         stops=sorted(ctx.stop_ids), max_tokens=export.options.check_max_tokens)
        result = export.step(f"check:{quant}", key, [], lambda p=path: _check_quant(ctx, p))
        merged_ppl = results["merged"]["quality"].get("perplexity")
        result["quality"] = _judge_quality(result["quality"], merged_ppl)
        for name in ("template", "stop", "quality"):
            export.check(name, quant, result[name])
        modelfile = export.layout.modelfile(quant)
        ollama_key = inputs_key(modelfile=ctx.fp(f"modelfile:{quant}", modelfile),
                                gguf=ctx.fp(f"quantize:{quant}", path))
        name = f"{export.layout.name}:{quant.lower()}"
        result["ollama"] = export.step(f"ollama:{quant}", ollama_key, [], lambda m=modelfile, n=name: (
            checks.ollama_check(m, n, ctx.prompt))) if _ollama_here() else checks.ollama_check(modelfile, name, "")
        export.check("ollama", quant, result["ollama"])
        results[quant] = result
    return results


def _ollama_here() -> bool:
    import shutil

    return shutil.which("ollama") is not None


def _check_merged(ctx: _Context) -> dict[str, Any]:
    import torch

    export = ctx.export
    dtype = torch.float32 if not torch.cuda.is_available() else getattr(
        torch, {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[export.manifest.steps["merge"]["result"]
                                                                          .get("dtype", "fp32")])
    export.say(f"measuring the merged model on {len(ctx.eval.samples)} {ctx.eval.source} samples")
    quality, model = checks.hf_perplexity(export.layout.merged, ctx.eval.samples, dtype)
    answer = checks.hf_answer(model, ctx.prompt_ids, ctx.stop_ids, export.options.check_max_tokens,
                              ctx.tokenizer.pad_token_id)
    text = ctx.tokenizer.decode(answer.pop("body"), skip_special_tokens=True).strip()
    ended = answer.pop("ended_id")
    answer.update(answer=text, ended_on=ctx.tokenizer.convert_ids_to_tokens(ended) if ended is not None
                  else "length limit")
    answer["message"] = _stop_message(answer)
    quality["passed"] = quality.get("perplexity") is not None
    quality["message"] = f"perplexity {quality.get('perplexity')}"
    del model
    return {"quality": quality, "stop": answer}


def _check_quant(ctx: _Context, gguf: Path) -> dict[str, Any]:
    options = ctx.export.options
    template = checks.template_round_trip(gguf, ctx.tokenizer, ctx.eval.chats)
    stop = checks.gguf_answer(gguf, ctx.prompt_ids, ctx.stop_ids, options.check_max_tokens)
    stop["message"] = _stop_message(stop)
    quality = checks.gguf_perplexity(gguf, ctx.eval.samples) if ctx.eval.samples else {"perplexity": None}
    return {"template": template, "stop": stop, "quality": quality}


def _judge_quality(quality: dict[str, Any], merged: float | None) -> dict[str, Any]:
    ppl = quality.get("perplexity")
    if ppl is None or merged is None:
        return {**quality, "passed": None, "message": "no perplexity to compare"}
    ratio = ppl / merged
    return {**quality, "ratio_to_merged": round(ratio, 4), "passed": ratio <= QUALITY_TOLERANCE,
            "message": f"perplexity {ppl:.4f} vs merged {merged:.4f} ({(ratio - 1) * 100:+.1f}%)"}


def _stop_message(answer: dict[str, Any]) -> str:
    if answer["passed"]:
        return f"stopped on {answer['ended_on']} after {answer['new_tokens']} tokens: {answer['answer'][:100]!r}"
    return f"no stop token within {answer['new_tokens']} tokens: {answer['answer'][:100]!r}"


def _mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"


def _report(ctx: _Context, adapter: Path, checkpoint: str, dtype: str, base_gguf: Path, quants: dict[str, Path],
            results: dict[str, Any]) -> dict[str, Any]:
    export = ctx.export
    layout = export.layout
    merged_size = sum(p.stat().st_size for p in layout.merged.rglob("*.safetensors"))
    merged = results["merged"]
    rows = [{
        "name": "merged", "path": str(layout.merged), "type": dtype, "size_bytes": merged_size,
        "perplexity": merged["quality"].get("perplexity"), "tokens_per_s": merged["quality"].get("tokens_per_s"),
        "gen_tokens_per_s": merged["stop"].get("gen_tokens_per_s"), "answer": merged["stop"].get("answer"),
        "ended_on": merged["stop"].get("ended_on"),
    }]
    checks_out: list[dict[str, Any]] = [_check_row("modelfile", "TEMPLATE", results["modelfile"]),
                                        _check_row("stop", "merged", merged["stop"])]
    for quant, path in quants.items():
        r = results[quant]
        rows.append({
            "name": quant, "path": str(path), "type": quant, "size_bytes": path.stat().st_size,
            "modelfile": str(layout.modelfile(quant)), "perplexity": r["quality"].get("perplexity"),
            "ratio_to_merged": r["quality"].get("ratio_to_merged"), "tokens_per_s": r["quality"].get("tokens_per_s"),
            "gen_tokens_per_s": r["stop"].get("gen_tokens_per_s"), "answer": r["stop"].get("answer"),
            "ended_on": r["stop"].get("ended_on"),
        })
        checks_out += [_check_row(name, quant, r[name]) for name in ("template", "stop", "quality", "ollama")]
    return {
        "run_id": export.run.run_id, "checkpoint": checkpoint, "adapter": str(adapter), "created_at": time.time(),
        "gguf": {"path": str(base_gguf), "size_bytes": base_gguf.stat().st_size},
        "chat_format": {"family": ctx.format.family, "default_system": ctx.format.default_system,
                        "tools": ctx.format.tools, "gguf_adds_bos": ctx.gguf_adds_bos},
        "stops": ctx.stops, "system_prompt": ctx.system, "num_ctx": ctx.num_ctx, "prompt": ctx.prompt,
        "eval": {"source": ctx.eval.source, "conversations": len(ctx.eval.chats),
                 "tokens": sum(s.trained_tokens for s in ctx.eval.samples)},
        "models": rows, "checks": checks_out,
        "passed": all(c["passed"] is not False for c in checks_out),
    }


def _check_row(name: str, target: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "target": target, "passed": result.get("passed"), "message": result.get("message", "")}
