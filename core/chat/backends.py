"""The models a chat worker can hold: an HF model (with a LoRA adapter it can switch off) and a GGUF via llama.cpp."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tunedeck.core.chat.protocol import GenerateRequest, with_system
from tunedeck.core.chat.resolve import ChatModel
from tunedeck.core.chat.stream import StopText
from tunedeck.core.errors import ModelError

log = logging.getLogger(__name__)
Emit = Callable[[str], None]
GGUF_CTX = 4096


@dataclass
class Answer:
    text: str
    tokens: int  # tokens of the answer, end-of-turn token not counted
    seconds: float  # the whole request: prompt processing and generation
    first_token_s: float | None
    finish: str  # stop (end of turn or a stop string) | length | cancelled

    @property
    def tokens_per_s(self) -> float | None:
        return round(self.tokens / self.seconds, 2) if self.tokens and self.seconds > 0 else None


class Backend(Protocol):
    model: ChatModel

    def generate(self, request: GenerateRequest, emit: Emit, cancel: threading.Event) -> Answer: ...


def chat_threads() -> int | None:
    """TUNEDECK_CHAT_THREADS: CPU threads for answering (on a busy shared box, 1 often decodes faster than all)."""
    value = os.environ.get("TUNEDECK_CHAT_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def load_backend(model: ChatModel) -> Backend:
    """Load a resolved model once; every later answer reuses it."""
    if model.backend == "gguf":
        return GGUFBackend(model)
    return HFBackend(model)


class _Follower:
    """A transformers streamer: decodes the growing answer and emits what is final, watching for stop strings."""

    def __init__(self, tokenizer: Any, stop_text: StopText, emit: Emit, end_ids: set[int]):
        self.tokenizer, self.stop_text, self.emit, self.end_ids = tokenizer, stop_text, emit, end_ids
        self.ids: list[int] = []
        self.ended = False
        self.prompt_seen = False
        self.first_at: float | None = None

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() hands the prompt over first
            self.prompt_seen = True
            return
        self.first_at = self.first_at or time.perf_counter()
        for token in value.reshape(-1).tolist():
            if token in self.end_ids:
                self.ended = True
                continue
            if not self.ended:
                self.ids.append(token)
        delta = self.stop_text.feed(self.tokenizer.decode(self.ids, skip_special_tokens=True))
        if delta:
            self.emit(delta)

    def end(self) -> None:
        pass


class HFBackend:
    """transformers on CPU or GPU; with an adapter, base answers come from the same weights, adapter disabled."""

    def __init__(self, model: ChatModel):
        import torch

        from tunedeck.core.models.generate import stop_token_ids
        from tunedeck.core.models.loading import load_causal_lm, load_tokenizer, resolve_model_path

        self.model = model
        base_path = resolve_model_path(model.path) if model.backend == "adapter" else model.path
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu" and chat_threads():
            torch.set_num_threads(chat_threads())
        self.tokenizer = load_tokenizer(_tokenizer_dir(model, base_path))
        net = load_causal_lm(base_path, _dtype(self.device))
        if model.adapter:
            net = _with_adapter(net, model.adapter)
        self.net = net.to(self.device).eval()
        self.end_ids = stop_token_ids(self.tokenizer)
        # In fp32 (CPU) the adapter is folded into the weights: decoding then costs what the base costs (the
        # separate LoRA matmuls made it 1.1-3.5x slower here), and unfolding for a base answer restores the base
        # to float rounding. Half-precision weights would drift with every fold, so GPUs keep the LoRA path.
        self.merged = bool(model.adapter) and _dtype(self.device) == torch.float32
        if self.merged:
            self.net.base_model.merge_adapter()

    def generate(self, request: GenerateRequest, emit: Emit, cancel: threading.Event) -> Answer:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        settings = request.settings
        if not request.adapter and not self.model.adapter:
            raise ModelError("this model has no adapter to switch off, so it cannot answer as its base",
                             where=self.model.label, hint="chat with a run (base + adapter) for base answers")
        messages = with_system(request.messages, settings.system)
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True).to(self.device)
        room = self._room(inputs["input_ids"].shape[-1], settings.max_new_tokens)
        follower = _Follower(self.tokenizer, StopText(settings.stop), emit, set(self.end_ids))

        class Until(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ARG002
                return torch.full((input_ids.shape[0],), follower.stop_text.stopped or cancel.is_set(),
                                  dtype=torch.bool, device=input_ids.device)

        started = time.perf_counter()
        as_base = bool(self.model.adapter) and not request.adapter
        if as_base and self.merged:
            self.net.base_model.unmerge_adapter()
        try:
            with self.net.disable_adapter() if as_base else nullcontext(), torch.no_grad():
                self.net.generate(**inputs, **_sampling(settings), max_new_tokens=room,
                                  eos_token_id=self.end_ids, pad_token_id=self.tokenizer.pad_token_id,
                                  streamer=follower, stopping_criteria=StoppingCriteriaList([Until()]))
        finally:
            if as_base and self.merged:
                self.net.base_model.merge_adapter()
        rest = follower.stop_text.finish()
        if rest:
            emit(rest)
        finish = ("cancelled" if cancel.is_set() else "stop" if follower.ended or follower.stop_text.stopped
                  else "length")
        first = round(follower.first_at - started, 3) if follower.first_at else None
        return Answer(follower.stop_text.text, len(follower.ids), time.perf_counter() - started, first, finish)


    def _room(self, prompt_tokens: int, wanted: int) -> int:
        """The answer's token budget within the model's positions; ModelError at once when the prompt fills them
        (generating past them runs for minutes and then fails or answers noise)."""
        limit = getattr(self.net.config, "max_position_embeddings", None)
        if not limit:
            return wanted
        if prompt_tokens >= limit:
            raise ModelError(f"the prompt is {prompt_tokens} tokens; this model reads at most {limit} "
                             "(max_position_embeddings)", where=self.model.label,
                             hint="shorten the prompt, or start a new conversation")
        return min(wanted, limit - prompt_tokens)


def _sampling(settings: Any) -> dict[str, Any]:
    """generate() arguments for the settings: greedy at temperature 0."""
    out: dict[str, Any] = {"repetition_penalty": settings.repetition_penalty}
    if settings.temperature > 0:
        out.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    else:
        out.update(do_sample=False)
    return out


def _dtype(device: str) -> Any:
    import torch

    if device == "cpu":
        return torch.float32  # bf16 is emulated and many times slower on CPUs
    from tunedeck.core.hardware.detect import detect_hardware, has_fast_bf16

    return torch.bfloat16 if has_fast_bf16(detect_hardware()) else torch.float16


def _tokenizer_dir(model: ChatModel, base_path: str) -> str:
    """The tokenizer saved with the adapter (it carries the training chat template), else the run's, else the base's."""
    candidates = [Path(model.adapter)] if model.adapter else []
    if model.run:
        candidates.append(Path(model.run) / "adapter")
    for folder in candidates:
        if (folder / "tokenizer_config.json").is_file():
            return str(folder)
    return base_path


def _with_adapter(net: Any, adapter: str) -> Any:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(net, adapter, is_trainable=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"the adapter does not fit the base model: {str(exc).splitlines()[0]}", where=adapter,
                         hint="chat with the base model the run was trained on") from None


class GGUFBackend:
    """llama.cpp through llama-cpp-python, with the chat template stored in the file; JSON mode is a grammar."""

    def __init__(self, model: ChatModel):
        self.model = model
        self.llm = _open_gguf(model.path)
        self.base_llm: Any = None

    def _llama(self, adapter: bool) -> Any:
        if adapter:
            return self.llm
        if not self.model.base_gguf:
            raise ModelError("no base model GGUF to answer as the base", where=self.model.label,
                             hint="open the base model's .gguf file in the other pane")
        if self.base_llm is None:
            self.base_llm = _open_gguf(self.model.base_gguf)
        return self.base_llm

    def generate(self, request: GenerateRequest, emit: Emit, cancel: threading.Event) -> Answer:
        settings = request.settings
        llm = self._llama(request.adapter)
        stop_text = StopText(settings.stop)
        kwargs: dict[str, Any] = dict(
            messages=with_system(request.messages, settings.system), temperature=settings.temperature,
            top_p=settings.top_p, top_k=settings.top_k, repeat_penalty=settings.repetition_penalty,
            max_tokens=settings.max_new_tokens, stop=settings.stop or None, stream=True)
        if settings.json_mode:
            kwargs["response_format"] = {"type": "json_object"}  # llama.cpp constrains sampling to a JSON grammar
        started, first, text, finish, tokens = time.perf_counter(), None, "", "length", 0
        for chunk in _checked_stream(llm.create_chat_completion(**kwargs), self.model.label):
            if cancel.is_set():
                finish = "cancelled"
                break
            choice = chunk["choices"][0]
            delta = choice.get("delta", {})
            tokens += "content" in delta  # llama-cpp-python streams one chunk per generated token
            piece = delta.get("content") or ""
            if piece:
                first = first or time.perf_counter()
                text += piece
                released = stop_text.feed(text)
                if released:
                    emit(released)
            if choice.get("finish_reason"):
                finish = "stop" if choice["finish_reason"] == "stop" else "length"
        rest = stop_text.finish()
        if rest:
            emit(rest)
        return Answer(stop_text.text, tokens, time.perf_counter() - started,
                      round(first - started, 3) if first else None, "stop" if stop_text.stopped else finish)


CONTEXT_FULL = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def _checked_stream(chunks: Iterator[dict[str, Any]], label: str) -> Iterator[dict[str, Any]]:
    """llama.cpp's answer stream, with a prompt longer than the context refused as a ModelError naming both sizes
    (llama.cpp checks it after tokenizing, before any work)."""
    try:
        yield next(chunks)
    except StopIteration:
        return
    except ValueError as exc:
        full = CONTEXT_FULL.search(str(exc))
        if full is None:
            raise
        raise ModelError(f"the prompt is {full[1]} tokens; this model's context holds {full[2]} (n_ctx)", where=label,
                         hint="shorten the prompt, or start a new conversation") from None
    yield from chunks


def _open_gguf(path: str) -> Any:
    from tunedeck.core.export.checks import threads
    from tunedeck.core.models.gguf_open import open_llama

    try:
        llm = open_llama(path, n_ctx=GGUF_CTX, n_threads=chat_threads() or threads(), verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"llama.cpp cannot load this GGUF: {str(exc).splitlines()[0]}", where=path,
                         hint="check the file is a complete GGUF (re-run `tunedeck export` to rebuild it)") from None
    if "tokenizer.chat_template" not in llm.metadata:
        raise ModelError("the GGUF carries no chat template", where=path,
                         hint="export the run with tunedeck, which writes the training template into the GGUF")
    llm.chat_format = "chat_template.default"  # the file's own template, never a guessed look-alike
    return llm
