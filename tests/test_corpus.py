"""Markdown / text corpora: cleaning, chunking by the real tokenizer, pretraining text and style pairs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from tunedeck.core.config import DataConfig
from tunedeck.core.data.chunking import chunk_paragraphs, token_counter
from tunedeck.core.data.corpus import EXPAND_PROMPT, corpus_format
from tunedeck.core.data.loading import data_files, load_data, split_train_val
from tunedeck.core.data.markdown import clean_markdown, paragraphs
from tunedeck.core.data.tokenize import encode_conversation, encode_split
from tunedeck.core.errors import DataError

WORDS = ("the river bends where the old mill stood and every morning light falls across the water while "
         "fishermen mend their nets and talk about weather prices children school and the long winter").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    return " ".join(words).capitalize() + rng.choice([".", ".", "!", "?"])


def article(rng: random.Random, paragraphs_count: int, long_paragraph: bool = False) -> str:
    parts = ["---\ntitle: A walk\ndate: 2024-01-01\n---", "# A walk by the river"]
    for index in range(paragraphs_count):
        if index % 5 == 2:
            parts.append(f"## Part {index}")
        parts.append(" ".join(sentence(rng) for _ in range(rng.randint(2, 7))))
    if long_paragraph:
        parts.insert(3, " ".join(sentence(rng) for _ in range(90)))  # ~1300 tokens: split by sentences
    return "\n\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("corpus")
    (root / "a-first.md").write_text(article(rng, 40, long_paragraph=True), encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "b-second.md").write_text(article(rng, 12), encoding="utf-8")
    (root / "sub" / "c-short.txt").write_text("Only a few words here.\n\nAnd a second paragraph.\n", encoding="utf-8")
    (root / ".drafts").mkdir()
    (root / ".drafts" / "hidden.md").write_text("# never read\n\ntext\n", encoding="utf-8")
    (root / "cover.png").write_bytes(b"\x89PNG not text")
    return root


def test_cleaning_keeps_prose_and_headings_and_drops_markup():
    text = (
        "---\ntitle: Post\ntags: [a, b]\n---\n\n"
        "#  Heading   one\n\n"
        "Read <em>this</em> [guide](https://example.com/guide_(v2)) and [the docs][docs].\n"
        "<!-- an editor's\nnote -->\nSame   paragraph,\tsecond line&nbsp;here.\n\n"
        "![a photo](img/photo.jpg)\n\n"
        "<div class=\"note\">\n</div>\n\n"
        "Autolink <https://example.org/x> stays as text.  \n\n\n\n"
        "```python\nx = \"<b>kept</b>\"\n\ny = 2\n```\n\n"
        "[docs]: https://example.com/docs\n"
    )
    paras = paragraphs(text)
    assert [p.text for p in paras] == [
        "# Heading one",
        "Read this guide and the docs.\nSame paragraph, second line here.",
        "Autolink https://example.org/x stays as text.",
        "```python\nx = \"<b>kept</b>\"\n\ny = 2\n```",
    ]
    assert [p.line for p in paras] == [6, 8, 18, 22]  # lines of the original file, front matter included
    cleaned = clean_markdown(text)
    for gone in ("title:", "photo", "img/", "https://example.com", "<em>", "editor", "class="):
        assert gone not in cleaned
    assert "\n\n\n" not in cleaned


def test_inline_code_and_placeholders_are_text_not_markup():
    text = "Runs live in `runs/<run-id>/`, named <name>; see `[x](y)` and `a &amp; b`.\n<script>x()\n</script>\nend"
    [para] = paragraphs(text)
    assert para.text == "Runs live in `runs/<run-id>/`, named <name>; see `[x](y)` and `a &amp; b`.\nend"


def test_plain_text_only_has_its_whitespace_normalized():
    paras = paragraphs("A  <b>tag</b> [kept](x)\r\n\r\n\r\nnext\tline\n", markdown=False)
    assert [(p.text, p.line) for p in paras] == [("A <b>tag</b> [kept](x)", 1), ("next line", 4)]


def test_chunks_stay_in_the_token_range_on_paragraph_boundaries(tokenizer):
    count = token_counter(tokenizer)
    text = article(random.Random(1), 60, long_paragraph=True)
    paras = paragraphs(text)
    chunks = chunk_paragraphs(paras, count, 300, 800)
    assert len(chunks) >= 4
    for chunk in chunks:
        measured = len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"])
        assert measured == chunk.tokens
        assert 300 <= measured <= 800, (measured, chunk.line)
    long_one = max(paras, key=lambda p: len(p.text))
    assert count(long_one.text) > 800  # the one paragraph that had to be cut
    kept_whole = [p.text for p in paras if p is not long_one]
    pieces = [part for chunk in chunks for part in chunk.parts]
    assert [part for part in pieces if part in kept_whole] == kept_whole  # every other paragraph whole, in order
    cut = [part for part in pieces if part not in kept_whole]
    assert len(cut) >= 2 and " ".join(cut) == long_one.text
    assert all(part.endswith((".", "!", "?")) for part in cut)  # cut on sentence ends
    assert chunks[0].line == paras[0].line and chunks[1].line in {p.line for p in paras}


def test_a_short_document_is_one_chunk_and_nothing_exceeds_the_maximum(tokenizer):
    count = token_counter(tokenizer)
    [chunk] = chunk_paragraphs(paragraphs("# Title\n\nOne short paragraph.\n"), count, 300, 800)
    assert chunk.parts == ["# Title", "One short paragraph."] and chunk.tokens < 300
    word_soup = "x" * 5000  # no sentence end, no space: cut by tokens
    chunks = chunk_paragraphs(paragraphs(word_soup), count, 50, 120)
    assert "".join(c.text for c in chunks) == word_soup
    assert all(count(c.text) <= 120 for c in chunks)


def test_a_folder_of_markdown_becomes_pretraining_text(corpus_dir: Path, tokenizer):
    cfg = DataConfig(path=str(corpus_dir))
    assert corpus_format(corpus_dir) == "markdown"
    data = load_data(cfg, tokenizer)
    assert data.format == "markdown" and not data.problems
    files = [c.meta["file"] for c in data.conversations]
    assert files == sorted(files, key=["a-first.md", "sub/b-second.md", "sub/c-short.txt"].index)
    assert set(files) == {"a-first.md", "sub/b-second.md", "sub/c-short.txt"}  # hidden folder and png skipped
    assert all(not c.messages and c.line is None for c in data.conversations)
    text = "\n".join(c.meta["text"] for c in data.conversations)
    assert "title: A walk" not in text and "# A walk by the river" in text
    assert [c.row for c in data.conversations] == list(range(len(data.conversations)))
    assert {p.name for p in data_files(cfg)} == {"a-first.md", "b-second.md", "c-short.txt"}

    sample = encode_conversation(tokenizer, data.conversations[0], 2048)
    assert sample.labels == sample.input_ids and sample.input_ids[-1] == tokenizer.eos_token_id
    assert sample.full_length == data.conversations[0].meta["tokens"] + 1
    train, val = split_train_val(data.conversations, 0.3, seed=1)
    assert train and val and len(train) + len(val) == len(data.conversations)
    assert encode_split(tokenizer, data.conversations, 128).truncated == sum(
        c.meta["tokens"] + 1 > 128 for c in data.conversations)


def test_style_pairs_answer_with_the_original_text(corpus_dir: Path, tokenizer):
    cfg = DataConfig(path=str(corpus_dir / "a-first.md"), corpus_mode="style_sft")
    data = load_data(cfg, tokenizer)
    chunks = load_data(DataConfig(path=str(corpus_dir / "a-first.md")), tokenizer).conversations
    assert [c.meta["task"] for c in data.conversations[:4]] == ["continue", "expand", "continue", "expand"]
    for conv, chunk in zip(data.conversations, chunks, strict=True):
        user, assistant = conv.messages
        assert (user.role, assistant.role) == ("user", "assistant") and conv.line == chunk.line
        if conv.meta["task"] == "continue":
            head = user.content.split("\n\n", 1)[1]
            assert chunk.meta["text"] == f"{head}\n\n{assistant.content}" or chunk.meta["text"] == (
                f"{head} {assistant.content}")
            assert len(head) < len(chunk.meta["text"]) * 0.6
        else:
            assert assistant.content == chunk.meta["text"]
            assert user.content.startswith(EXPAND_PROMPT.split("{")[0])
            assert chunk.meta["text"].split("\n", 1)[0][:20] in user.content  # a heading or first sentence
    encoded = encode_split(tokenizer, data.conversations, 2048)
    assert not encoded.dropped and all(s.trained_tokens > 0 for s in encoded.samples)


def test_corpus_settings_are_validated(tmp_path: Path):
    with pytest.raises(ValidationError, match="chunk_tokens"):
        DataConfig(chunk_tokens=[800, 300])
    with pytest.raises(ValidationError):
        DataConfig(corpus_tasks=["rewrite"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .md or .txt files"):
        load_data(DataConfig(path=str(tmp_path / "empty")))
    (tmp_path / "only-front-matter.md").write_text("---\ntitle: x\n---\n<!-- nothing -->\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text after cleaning"):
        load_data(DataConfig(path=str(tmp_path / "only-front-matter.md")))


def test_a_corpus_prepares_as_training_data(corpus_dir: Path, tokenizer, tmp_path: Path):
    from tunedeck.core.config_files import load_config
    from tunedeck.core.data.training_set import prepare_data
    from tunedeck.core.stream.events import EventWriter, read_events

    config = load_config(preset="cpu-demo", overrides=[f"data.path={corpus_dir}", "data.cutoff_len=1024",
                                                       "train.cache_tokenized=false"])
    prepared = prepare_data(config, tokenizer, EventWriter(tmp_path / "events.jsonl"))
    assert len(prepared.train) + len(prepared.val) == len(load_data(config.data, tokenizer).conversations)
    assert all(row["labels"] == row["input_ids"] for row in prepared.train)  # pretraining: every token trained
    messages = [e.message for e in read_events(tmp_path / "events.jsonl")]
    assert any(m.startswith(f"markdown data from {corpus_dir}:") for m in messages)
