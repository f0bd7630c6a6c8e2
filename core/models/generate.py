"""Generate replies from an HF model (with or without its adapter) through the chat template."""

from __future__ import annotations

from typing import Any

from tunedeck.core.models.templates import TEMPLATES

END_MARKERS = tuple(dict.fromkeys(m for t in TEMPLATES.values() for m in t.end_of_turn))


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Every end-of-turn / end-of-text token this tokenizer defines."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[m] for m in END_MARKERS if m in vocab]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def generate_reply(model: Any, tokenizer: Any, messages: list[dict[str, Any]], max_new_tokens: int = 64) -> str:
    """A greedy reply to a conversation, decoded without special tokens."""
    import torch

    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
