"""Self-checks of an export: template round trip, stop on a stop token, perplexity and speed, ollama."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunedeck.core.config import Config
from tunedeck.core.data.loading import load_data, split_train_val
from tunedeck.core.data.tokenize import IGNORE_INDEX, EncodedSample, encode_conversation
from tunedeck.core.data.tool_format import template_inputs, uses_tools
from tunedeck.core.export.ollama_reference import render_like_ollama
from tunedeck.core.models.gguf_open import open_llama
from tunedeck.core.models.loading import load_causal_lm

QUALITY_TOLERANCE = 1.25  # a quant whose perplexity exceeds the merged model's by more than this fails


@dataclass
class EvalSet:
    """Held-out conversations for the checks, as chat messages and as encoded samples (assistant labels)."""

    source: str  # validation | training (when the run has no validation split)
    chats: list[tuple[list[dict[str, Any]], Any]] = field(default_factory=list)  # (messages, tools)
    samples: list[EncodedSample] = field(default_factory=list)


def load_eval_set(config: Config, tokenizer: Any, limit: int) -> EvalSet:
    """Held-out conversations (else training ones); when the data has tools and none of those does, the template
    checks also get the first conversation with tools, so a tool-call conversation is always compared."""
    data = load_data(config.data)
    train, val = split_train_val(data.conversations, config.data.val_size, config.train.seed)
    chosen, source = (val, "validation") if val else (train, "training")
    out = EvalSet(source)
    for conv in chosen[:limit]:
        out.chats.append((conv.to_chat(), conv.tools))
        sample = encode_conversation(tokenizer, conv, config.data.cutoff_len)
        if sample.trained_tokens:
            out.samples.append(sample)
    if not any(uses_tools(messages, tools) for messages, tools in out.chats):
        with_tools = next((c for c in val + train if uses_tools(c.to_chat(), c.tools)), None)
        if with_tools is not None:
            out.chats.append((with_tools.to_chat(), with_tools.tools))
    return out


def prompt_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation up to (not including) its last assistant turn: what a user sends for that answer."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    return messages[:last]


def hf_chat_ids(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, generation: bool) -> list[int]:
    """Token ids of a conversation through the training chat template (a prompt when `generation`), with what the
    template cannot show in the fallback form, as training rendered it."""
    messages, tools = template_inputs(tokenizer, messages, tools)
    ids = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, add_generation_prompt=generation,
                                        return_dict=False)
    return list(ids)


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def template_round_trip(gguf: Path, tokenizer: Any, chats: list[tuple[list[dict], Any]]) -> dict[str, Any]:
    """Held-out conversations rendered by the HF template and by the GGUF's embedded template give the same tokens.

    The GGUF side is what llama-cpp-python does for a chat request: its Jinja formatter over the template
    stored in the file, then llama.cpp's tokenizer with special tokens parsed. Both sides get tools and tool
    calls the template cannot show in the fallback form (core/data/tool_format.py).
    """
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = Llama(str(gguf), vocab_only=True, verbose=False)
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return {"passed": False, "message": "the GGUF carries no chat template", "compared": 0}
    eos = llm._model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
    bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
    compared, mismatches = 0, []
    for messages, tools in chats:
        for generation, msgs in ((False, messages), (True, prompt_messages(messages))):
            if not msgs:
                continue
            expected = hf_chat_ids(tokenizer, msgs, tools, generation)
            formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                            add_generation_prompt=generation)
            gguf_msgs, gguf_tools = template_inputs(tokenizer, msgs, tools)
            prompt = formatter(messages=gguf_msgs, tools=gguf_tools).prompt
            got = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            compared += 1
            if got != expected:
                at = _first_difference(expected, got)
                mismatches.append({"at_token": at, "hf": tokenizer.decode(expected[max(0, at - 8): at + 8]),
                                   "gguf": llm.detokenize(got[max(0, at - 8): at + 8], special=True).decode(
                                       "utf-8", errors="replace")})
    passed = compared > 0 and not mismatches
    message = (f"{compared} renderings give identical tokens" if passed
               else f"{len(mismatches)} of {compared} renderings differ" if compared else "no conversations to compare")
    return {"passed": passed, "message": message, "compared": compared, "mismatches": mismatches[:5],
            "gguf_adds_bos": llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"}


def modelfile_template_check(tokenizer: Any, fmt: Any, chats: list[tuple[list[dict], Any]], system: str | None,
                             gguf_adds_bos: bool) -> dict[str, Any]:
    """The Modelfile TEMPLATE, as Ollama applies it, renders the same prompt text as the training template."""
    compared, mismatches = 0, []
    for messages, tools in chats:
        msgs = prompt_messages(messages)
        if not msgs:
            continue
        jinja_msgs = msgs if not system or msgs[0]["role"] == "system" else [
            {"role": "system", "content": system}, *msgs]
        jinja_msgs, jinja_tools = template_inputs(tokenizer, jinja_msgs, tools)
        expected = tokenizer.apply_chat_template(jinja_msgs, tools=jinja_tools, tokenize=False,
                                                 add_generation_prompt=True)
        if gguf_adds_bos and tokenizer.bos_token and not expected.startswith(tokenizer.bos_token):
            expected = tokenizer.bos_token + expected  # llama.cpp adds it; training did not
        got = render_like_ollama(fmt, msgs, system, tools, gguf_adds_bos, tokenizer.bos_token or "")
        compared += 1
        if got != expected:
            at = next((i for i, (x, y) in enumerate(zip(expected, got, strict=False)) if x != y),
                      min(len(expected), len(got)))
            mismatches.append({"at_char": at, "training": expected[max(0, at - 40): at + 40],
                               "ollama": got[max(0, at - 40): at + 40]})
    passed = compared > 0 and not mismatches
    message = (f"{compared} prompts render identically" if passed
               else f"{len(mismatches)} of {compared} prompts differ" if compared else "no conversations to compare")
    return {"passed": passed, "message": message, "compared": compared, "mismatches": mismatches[:5]}


def threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def gguf_answer(gguf: Path, prompt_ids: list[int], stop_ids: set[int], max_tokens: int) -> dict[str, Any]:
    """A greedy answer from the GGUF, and whether it ended on a stop token or ran into the length limit."""
    import llama_cpp

    llm = open_llama(str(gguf), n_ctx=len(prompt_ids) + max_tokens + 8, n_threads=threads(), verbose=False)
    tokens: list[int] = []
    started = time.perf_counter()
    first_at = None
    for token in llm.generate(prompt_ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        first_at = first_at or time.perf_counter()
        tokens.append(token)
        if token in stop_ids or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(tokens) >= max_tokens:
            break
    done = time.perf_counter()
    ended = tokens[-1] if tokens else None
    stopped = ended is not None and (ended in stop_ids)
    body = tokens[:-1] if stopped else tokens
    return {
        "answer": llm.detokenize(body).decode("utf-8", errors="replace").strip(),
        "ended_on": llm._model.token_get_text(ended) if stopped else "length limit",
        "passed": stopped,
        "new_tokens": len(tokens),
        "gen_tokens_per_s": _rate(len(tokens) - 1, done - first_at) if first_at else None,
        "seconds": round(done - started, 2),
    }


def gguf_perplexity(gguf: Path, samples: list[EncodedSample]) -> dict[str, Any]:
    """Perplexity on the assistant tokens of held-out samples (the training eval loss, through llama.cpp)."""
    longest = max(len(s.input_ids) for s in samples)
    llm = open_llama(str(gguf), n_ctx=longest + 8, n_batch=min(512, longest + 8), logits_all=True,
                     n_threads=threads(), verbose=False)
    nll, count, seen = 0.0, 0, 0
    started = time.perf_counter()
    for sample in samples:
        llm.reset()
        llm.eval(sample.input_ids)
        n = len(sample.input_ids)
        logits = np.asarray(llm.scores[:n], dtype=np.float64)
        seen += n
        for pos in range(1, n):
            if sample.labels[pos] == IGNORE_INDEX:
                continue
            row = logits[pos - 1]
            top = row.max()
            nll += top + math.log(np.exp(row - top).sum()) - row[sample.input_ids[pos]]
            count += 1
    took = time.perf_counter() - started
    return _ppl(nll, count, seen, took)


def hf_perplexity(model_dir: Path, samples: list[EncodedSample], dtype: Any) -> tuple[dict[str, Any], Any]:
    """The merged model's perplexity on the same tokens, in torch; returns the loaded model for reuse."""
    import torch

    model = load_causal_lm(str(model_dir), dtype)
    model.eval()
    nll, count, seen = 0.0, 0, 0
    started = time.perf_counter()
    with torch.no_grad():
        for sample in samples:
            ids = torch.tensor([sample.input_ids], device=model.device)
            logits = model(input_ids=ids).logits[0, :-1].double()
            labels = torch.tensor(sample.labels[1:], device=model.device)
            mask = labels != IGNORE_INDEX
            losses = torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="sum")
            nll += float(losses)
            count += int(mask.sum())
            seen += len(sample.input_ids)
    return _ppl(nll, count, seen, time.perf_counter() - started), model


def hf_answer(model: Any, prompt_ids: list[int], stop_ids: set[int], max_tokens: int, pad_id: int | None) -> dict:
    import torch

    ids = torch.tensor([prompt_ids], device=model.device)
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                             do_sample=False, eos_token_id=sorted(stop_ids), pad_token_id=pad_id)
    took = time.perf_counter() - started
    new = out[0, len(prompt_ids):].tolist()
    stopped = bool(new) and new[-1] in stop_ids
    return {"new_tokens": len(new), "passed": stopped, "gen_tokens_per_s": _rate(len(new), took),
            "body": new[:-1] if stopped else new, "ended_id": new[-1] if stopped else None}


def ollama_check(modelfile: Path, name: str, prompt: str) -> dict[str, Any]:
    """`ollama create` the model and ask it one prompt; passed None when ollama is not installed."""
    exe = shutil.which("ollama")
    if exe is None:
        return {"passed": None, "message": "ollama is not on PATH: skipped"}
    created = subprocess.run([exe, "create", name, "-f", str(modelfile)], capture_output=True, text=True,
                             timeout=1800, cwd=modelfile.parent)
    if created.returncode != 0:
        failure = (created.stderr or created.stdout).strip()[-300:]
        return {"passed": False, "message": f"ollama create failed: {failure}"}
    answered = subprocess.run([exe, "run", name, prompt], capture_output=True, text=True, timeout=600)
    answer = answered.stdout.strip()
    passed = answered.returncode == 0 and bool(answer)
    return {"passed": passed, "answer": answer,
            "message": f"ollama run {name}: {answer[:120]!r}" if passed else
            f"ollama run failed: {answered.stderr.strip()[-300:]}"}


def judge_quality(quality: dict[str, Any], merged: float | None) -> dict[str, Any]:
    """A quant's perplexity against the merged model's: passes within QUALITY_TOLERANCE."""
    ppl = quality.get("perplexity")
    if ppl is None or merged is None:
        return {**quality, "passed": None, "message": "no perplexity to compare"}
    ratio = ppl / merged
    return {**quality, "ratio_to_merged": round(ratio, 4), "passed": ratio <= QUALITY_TOLERANCE,
            "message": f"perplexity {ppl:.4f} vs merged {merged:.4f} ({(ratio - 1) * 100:+.1f}%)"}


def stop_message(answer: dict[str, Any]) -> str:
    """One line saying how a greedy answer ended, and how it began."""
    if answer["passed"]:
        return f"stopped on {answer['ended_on']} after {answer['new_tokens']} tokens: {answer['answer'][:100]!r}"
    return f"no stop token within {answer['new_tokens']} tokens: {answer['answer'][:100]!r}"


def _rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 and count > 0 else None


def _ppl(nll: float, count: int, seen: int, seconds: float) -> dict[str, Any]:
    if not count:
        return {"perplexity": None, "eval_loss": None, "tokens": 0, "tokens_per_s": None}
    loss = nll / count
    return {"perplexity": round(math.exp(min(loss, 50.0)), 4), "eval_loss": round(loss, 5), "tokens": count,
            "tokens_per_s": _rate(seen, seconds)}
