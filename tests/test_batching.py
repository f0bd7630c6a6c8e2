"""Padding-free batches give the same loss as padded ones: samples stay isolated from each other."""

from __future__ import annotations

import pytest

from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.tokenize import encode_conversation


@pytest.fixture(scope="module")
def batch(tokenizer):
    texts = [("Hi", "Hello there."), ("Count to five.", "one two three four five"),
             ("Describe the sea in one long sentence.", "The sea is wide, grey and restless " * 6)]
    return [encode_conversation(tokenizer, Conversation([Message("user", q), Message("assistant", a)], row=i), 512)
            for i, (q, a) in enumerate(texts)]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_padding_free_loss_equals_padded_loss(tiny_model_dir, tokenizer, batch, attention):
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)
    model.eval()
    examples = [{"input_ids": s.input_ids, "labels": s.labels} for s in batch]
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples)
    flat = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    assert "attention_mask" not in flat and flat["input_ids"].shape[0] == 1
    assert flat["input_ids"].shape[1] == sum(len(s.input_ids) for s in batch) < padded["input_ids"].numel()
    with torch.no_grad():
        padded_loss = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                            labels=padded["labels"]).loss
        # use_cache=False as in training: transformers derives the per-sample mask from position ids only then
        flat_loss = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], labels=flat["labels"],
                          use_cache=False).loss
        leaky = torch.arange(flat["input_ids"].shape[1])[None]  # one long sequence: samples see each other
        leaky_loss = model(input_ids=flat["input_ids"], position_ids=leaky, labels=flat["labels"],
                           use_cache=False).loss
    assert flat_loss.item() == pytest.approx(padded_loss.item(), abs=1e-5)
    assert abs(leaky_loss.item() - padded_loss.item()) > 1e-4  # the check would notice cross-contamination


def test_every_batching_mode_trains_the_same_first_steps(tmp_path, tiny_model_dir):
    """Through the real worker: the same random batches give the same losses padded or padding-free."""
    from tunedeck.core.jobs.runs import start_worker
    from tunedeck.core.stream.events import Step, read_events

    from .test_resilience import make_run

    losses = {}
    for mode in ("padded", "padding_free", "by_length"):
        (tmp_path / mode).mkdir()
        run = make_run(tmp_path / mode, tiny_model_dir, mode, "train.max_steps=2", f"train.batching={mode}")
        assert start_worker(run).wait(timeout=600) == 0, run.log_path.read_text()[-2000:]
        losses[mode] = [e.loss for e in read_events(run.events_path) if isinstance(e, Step)]
    assert losses["padding_free"] == pytest.approx(losses["padded"], abs=1e-4)
    assert len(losses["by_length"]) == 2 and losses["by_length"] != pytest.approx(losses["padded"], abs=1e-6)


def test_tokenized_data_is_cached_and_keyed_by_what_decides_it(tmp_path, tokenizer):
    import json

    from tunedeck.core.config_files import load_config
    from tunedeck.core.data.training_set import prepare_data
    from tunedeck.core.stream.events import EventWriter, Log, read_events

    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(6)]), encoding="utf-8")
    events = EventWriter(tmp_path / "events.jsonl")

    def prepare(*overrides):
        return prepare_data(load_config(overrides=[f"data.path={data}", *overrides]), tokenizer, events)

    first = prepare("data.val_size=0")
    again = prepare("data.val_size=0")
    other = prepare("data.val_size=0", "data.cutoff_len=64")
    assert again.key == first.key != other.key
    assert again.train["input_ids"] == first.train["input_ids"] and len(again.val) == 0
    cached = [e.message for e in read_events(tmp_path / "events.jsonl")
              if isinstance(e, Log) and "from the cache" in e.message]
    assert len(cached) == 1
    data.write_text(data.read_text(encoding="utf-8").replace("a5", "b5"), encoding="utf-8")
    assert prepare("data.val_size=0").key != first.key
