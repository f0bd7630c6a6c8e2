"""Every entry point reads every data format the same way: identical sample counts and token totals.

The table: formats (Alpaca JSON with placeholders, ShareGPT with tools, OpenAI JSONL with a system prompt, CSV,
Parquet, a dataset_info.json entry, a Markdown file, a one-document-per-line .txt, a folder of both as writing
tasks) x entry points (`tunedeck data inspect / preview / prepare`, the app's inspection worker, training's
prepare_data, `tunedeck estimate`'s sample lengths, eval's held-out loader). Small generated files, the builtin
SmolLM2 tokenizer, each entry point in-process through its own code path (the CLI through its `main`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tunedeck.core.cli.main import main
from tunedeck.core.config import Config
from tunedeck.core.data.tokenize import encode_conversation
from tunedeck.core.data.training_set import prepare_data
from tunedeck.core.estimate.longest import encoded_lengths, longest_sample
from tunedeck.core.evaluate.heldout import load_held_out
from tunedeck.core.inspect import service
from tunedeck.core.stream.events import EventWriter

CUTOFF = 4096  # above every sample: token totals before and after the cutoff are the same
VAL_SIZE = 0.3
WORDS = ("the river bends where the old mill stood and every morning light falls across the water while fishermen "
         "mend their nets and talk about weather prices children school and the long winter").split()
TOOL = {"name": "add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}


def prose(seed: int, sentences: int) -> str:
    out = []
    for n in range(sentences):
        words = [WORDS[(seed * 7 + n * 3 + k * 5) % len(WORDS)] for k in range(9 + (seed + n) % 6)]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


ALPACA = [{"instruction": f"Question {i}: who are you?", "input": "", "output": f"I am {{{{name}}}}, answer {i}. "
           + prose(i, 2)} for i in range(5)]
SHAREGPT = [{"conversations": [{"from": "human", "value": f"Add {i} and 2."},
                               {"from": "function_call", "value": json.dumps({"name": "add",
                                                                              "arguments": {"a": i, "b": 2}})},
                               {"from": "observation", "value": str(i + 2)},
                               {"from": "gpt", "value": f"It is {i + 2}."}],
             "tools": json.dumps([TOOL])} for i in range(4)] + [
    {"conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": prose(9, 3)}]}]
OPENAI = [{"messages": ([{"role": "system", "content": "Answer briefly."}] if i % 2 else [])
           + [{"role": "user", "content": f"Tell me about {WORDS[i]}."}, {"role": "assistant", "content": prose(i, 3)}]}
          for i in range(5)]


def write_rows(folder: Path) -> dict[str, tuple[dict, list[str]]]:
    """case -> (data config fields, the same as command line arguments)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cases: dict[str, tuple[dict, list[str]]] = {}
    alpaca = folder / "alpaca.json"
    alpaca.write_text(json.dumps(ALPACA), encoding="utf-8")
    cases["alpaca json, placeholders"] = ({"path": str(alpaca), "placeholders": {"name": "Deck"}},
                                          [str(alpaca), "--fill", "name=Deck"])
    sharegpt = folder / "tools.json"
    sharegpt.write_text(json.dumps(SHAREGPT), encoding="utf-8")
    cases["sharegpt with tools"] = ({"path": str(sharegpt)}, [str(sharegpt)])
    openai = folder / "chat.jsonl"
    openai.write_text("".join(json.dumps(r) + "\n" for r in OPENAI), encoding="utf-8")
    cases["openai jsonl, system prompt"] = ({"path": str(openai), "system_prompt": "Be kind."},
                                            [str(openai), "--system", "Be kind."])
    csv = folder / "rows.csv"
    csv.write_text("instruction,input,output\n" + "".join(f"Q{i},,\"A{i}, {prose(i, 1)}\"\n" for i in range(4)),
                   encoding="utf-8")
    cases["alpaca csv"] = ({"path": str(csv)}, [str(csv)])
    parquet = folder / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(OPENAI[:4]), parquet)
    cases["openai parquet"] = ({"path": str(parquet)}, [str(parquet)])
    mapped = folder / "mapped.json"
    mapped.write_text(json.dumps([{"q": f"Q{i}", "a": prose(i, 2)} for i in range(4)]), encoding="utf-8")
    info = folder / "dataset_info.json"
    info.write_text(json.dumps({"mine": {"file_name": "mapped.json", "columns": {"prompt": "q", "response": "a"}}}),
                    encoding="utf-8")
    cases["dataset_info entry"] = ({"dataset_info": str(info), "name": "mine"},
                                   ["--dataset-info", str(info), "--name", "mine"])
    return cases


def write_corpora(folder: Path) -> dict[str, tuple[dict, list[str]]]:
    cases: dict[str, tuple[dict, list[str]]] = {}
    chunks = {"chunk_tokens": [40, 90]}
    chunk_args = ["--chunk-tokens", "40", "90"]
    markdown = folder / "notes.md"
    markdown.write_text("# Notes\n\n" + "\n\n".join(prose(i, 3) for i in range(6)) + "\n", encoding="utf-8")
    cases["markdown"] = ({"path": str(markdown), **chunks}, [str(markdown), *chunk_args])
    wiki = folder / "wiki.txt"
    wiki.write_text("\n".join(prose(i, 6 + i % 4) for i in range(5)) + "\n", encoding="utf-8")
    cases["text, one document per line"] = ({"path": str(wiki), **chunks}, [str(wiki), *chunk_args])
    corpus = folder / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text(markdown.read_text(encoding="utf-8"), encoding="utf-8")
    (corpus / "b.txt").write_text(wiki.read_text(encoding="utf-8"), encoding="utf-8")
    cases["folder, writing tasks"] = ({"path": str(corpus), "corpus_mode": "style_sft", **chunks},
                                      [str(corpus), "--corpus-mode", "style_sft", *chunk_args])
    return cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[dict, list[str]]]:
    folder = tmp_path_factory.mktemp("entry-points")
    return {**write_rows(folder), **write_corpora(folder)}


def cli_json(capsys, *argv: str) -> object:
    capsys.readouterr()
    assert main([*argv]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def tokens_of_text(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def worker(args: list[str], rows: int) -> tuple[dict, list[dict]]:
    """The app's inspection worker, in-process: its report, then its preview of every row."""
    out = io.StringIO()
    requests = io.StringIO("".join(json.dumps({"row": r}) + "\n" for r in range(rows)))
    assert service.serve(service.parser().parse_args(args), service.Output(out), requests) == 0
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    report = next(m for m in messages if m["type"] == "report")["report"]
    return report, [m for m in messages if m["type"] == "row"]


@pytest.mark.parametrize("case", ["alpaca json, placeholders", "sharegpt with tools", "openai jsonl, system prompt",
                                  "alpaca csv", "openai parquet", "dataset_info entry", "markdown",
                                  "text, one document per line", "folder, writing tasks"])
def test_every_entry_point_counts_the_same_samples_and_tokens(case, cases, tokenizer, builtin_model_dir, tmp_path,
                                                              capsys):
    data, args = cases[case]
    model = ["--model", str(builtin_model_dir), "--cutoff", str(CUTOFF)]
    config = Config(model={"name_or_path": str(builtin_model_dir)},
                    data={**data, "cutoff_len": CUTOFF, "val_size": VAL_SIZE}, train={"cache_tokenized": False})
    seen: dict[str, tuple[int, int]] = {}

    report = cli_json(capsys, "data", "inspect", *args, *model, "--json")
    seen["cli inspect"] = (report["samples"], report["lengths"]["total"])
    assert report["samples"] == report["rows"] and "placeholder" not in report["counts"]

    previews = [cli_json(capsys, "data", "preview", *args, *model, "--row", str(r), "--json")
                for r in range(report["rows"])]
    texts = ["".join(s["text"] for s in segments) for segments in previews]
    seen["cli preview"] = (len(texts), sum(tokens_of_text(tokenizer, t) for t in texts))
    assert all(any(s["trained"] for s in segments) for segments in previews)

    capsys.readouterr()
    assert main(["data", "prepare", *args, *model, "--out", str(tmp_path / "prepared")]) == 0
    stats = json.loads((tmp_path / "prepared" / "stats.json").read_text(encoding="utf-8"))
    seen["cli prepare"] = (sum(stats["samples"].values()),
                           sum(s["total"] for k, s in stats["tokens"].items() if k != "template"))

    path = [data["dataset_info"]] if "dataset_info" in data else []  # the app names the dataset_info.json itself
    app_report, app_rows = worker([*path, *args, "--model", str(builtin_model_dir), "--cutoff", str(CUTOFF)],
                                  report["rows"])
    seen["app inspector"] = (app_report["samples"], app_report["lengths"]["total"])
    seen["app row viewer"] = (len(app_rows), sum(r["tokens"] for r in app_rows))

    events = EventWriter(tmp_path / "events.jsonl")
    trained = prepare_data(config, tokenizer, events)
    events.close()
    train_tokens = sum(map(len, trained.train["input_ids"]))
    val_tokens = sum(map(len, trained.val["input_ids"]))
    seen["training"] = (len(trained.train) + len(trained.val), train_tokens + val_tokens)

    lengths = encoded_lengths(config, tokenizer)
    seen["estimate"] = (len(lengths), sum(lengths))
    assert longest_sample(config)[0] == report["lengths"]["max"]

    _, held_out = load_held_out(config, tokenizer=tokenizer)
    held_tokens = sum(len(encode_conversation(tokenizer, r.conversation, CUTOFF).input_ids) for r in held_out)
    assert (len(held_out), held_tokens) == (len(trained.val), val_tokens), "eval holds out what training did not train"
    assert len(trained.val) >= 1

    assert set(seen.values()) == {seen["cli inspect"]}, seen
