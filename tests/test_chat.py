"""Chat: stop strings, settings, the resolver, and the chat worker over a real subprocess (HF + adapter, GGUF)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chat_helpers import WorkerProcess, make_chat_run
from tunedeck.core.chat.protocol import (
    Bye,
    Done,
    ErrorReply,
    Pong,
    Ready,
    Settings,
    Token,
    check_json,
    generate_request,
    parse_chat_reply,
    parse_request,
    with_system,
)
from tunedeck.core.chat.resolve import ChatModel, resolve_chat_model
from tunedeck.core.chat.stream import StopText
from tunedeck.core.errors import ModelError, RunError

WHO = [{"role": "user", "content": "Who are you?"}]


def test_stop_text_holds_back_a_possible_stop_and_cuts_at_it():
    stream = StopText(["<END>"])
    assert stream.feed("Hello <") == "Hello "  # '<' may begin '<END>'
    assert stream.feed("Hello <b") == "<b"  # it did not
    assert stream.feed("Hello <b> there <EN") == "> there "
    assert stream.feed("Hello <b> there <END> more") == ""
    assert stream.stopped and stream.text == "Hello <b> there "
    assert stream.feed("anything") == "" and stream.finish() == ""


def test_stop_text_waits_for_a_whole_character_and_releases_the_rest_at_the_end():
    stream = StopText([])
    assert stream.feed("caf\ufffd") == "caf"
    assert stream.feed("café") == "é"
    stream = StopText(["###"])
    assert stream.feed("a ##") == "a "
    assert stream.finish() == "##" and not stream.stopped


def test_settings_refuse_unknown_names_and_bad_values():
    assert Settings.from_dict({"temperature": 0.7, "stop": ["x"]}).temperature == 0.7
    for bad, words in [({"temprature": 1}, "unknown setting 'temprature'"), ({"top_p": 0}, "top_p"),
                       ({"max_new_tokens": 0}, "max_new_tokens"), ({"stop": "x"}, "stop must be a list")]:
        with pytest.raises(ValueError, match=words):
            Settings.from_dict(bad)


def test_requests_are_checked_with_readable_messages():
    with pytest.raises(ValueError, match="not a JSON line"):
        parse_request("{oops")
    with pytest.raises(ValueError, match="op: generate"):
        parse_request('{"op": "fly"}')
    with pytest.raises(ValueError, match="last message must be the user's"):
        generate_request({"op": "generate", "messages": [*WHO, {"role": "assistant", "content": "me"}]})
    assert with_system(WHO, "Be brief.")[0] == {"role": "system", "content": "Be brief."}
    assert with_system([{"role": "system", "content": "mine"}, *WHO], "other")[0]["content"] == "mine"


def test_json_check_names_where_parsing_failed():
    assert check_json(' {"score": 7} \n') == (True, None)
    assert check_json("") == (False, "empty answer")
    valid, error = check_json('{"score": 7')
    assert not valid and "line 1 column" in error


def test_replies_are_typed_and_written_as_the_documented_json_lines():
    done = Done(id="1", text='{"a": 1}', tokens=3, seconds=0.5, first_token_s=0.1, tokens_per_s=6.0, finish="stop",
                json_valid=True, json_error=None, adapter=False, model="run-1 (base)", constrained=True)
    wire = json.loads(done.line())
    assert wire == {"v": 1, "type": "done", "id": "1", "text": '{"a": 1}', "tokens": 3, "seconds": 0.5,
                    "first_token_s": 0.1, "tokens_per_s": 6.0, "finish": "stop", "json_valid": True,
                    "json_error": None, "adapter": False, "model": "run-1 (base)", "constrained": True}
    assert parse_chat_reply(wire) == done
    model = ChatModel("adapter", "/models/base", "run-1", adapter="/runs/run-1/adapter", run="/runs/run-1")
    ready = json.loads(Ready(model).line())
    assert ready == {"v": 1, "type": "ready", "model": model.to_dict()} and ready["model"]["has_base"] is True
    assert parse_chat_reply(ready) == Ready(model)
    assert json.loads(Token(id="1", text="I").line()) == {"v": 1, "type": "token", "id": "1", "text": "I"}
    assert json.loads(ErrorReply(id="e1", message="bad").line()) == {"v": 1, "type": "error", "id": "e1",
                                                                     "message": "bad"}  # fatal only when it is
    fatal = {"v": 1, "type": "error", "id": None, "fatal": True, "message": "cannot load"}
    assert json.loads(ErrorReply(id=None, message="cannot load", fatal=True).line()) == fatal
    assert parse_chat_reply(fatal) == ErrorReply(id=None, message="cannot load", fatal=True)
    assert json.loads(Bye().line()) == {"v": 1, "type": "bye"} and parse_chat_reply({"type": "bye"}) == Bye()
    assert parse_chat_reply({"v": 1, "type": "pong", "id": "p"}) == Pong(id="p")
    assert parse_chat_reply({"v": 2, "type": "thinking", "text": "..."}) is None  # the protocol may grow
    with pytest.raises(ValueError, match="malformed done"):
        parse_chat_reply({"type": "done", "text": "no id"})


@pytest.fixture(scope="module")
def chat_run(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return make_chat_run(tiny_model_dir, tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The tiny model through llama.cpp's converter (f16), as the export chain does."""
    from tunedeck.core.export.gguf import convert_to_gguf

    return convert_to_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf", "f16")


def test_the_resolver_reads_runs_adapters_hf_folders_and_gguf_files(chat_run: Path, tiny_model_dir: Path,
                                                                    tiny_gguf: Path, tmp_path: Path):
    by_id = resolve_chat_model(chat_run.name, chat_run.parent)
    assert (by_id.backend, by_id.path, by_id.adapter) == ("adapter", str(tiny_model_dir), str(chat_run / "adapter"))
    assert by_id.has_base and by_id.run == str(chat_run)
    assert resolve_chat_model(str(chat_run)) == by_id
    bare = resolve_chat_model(str(chat_run / "adapter"))
    assert bare.backend == "adapter" and Path(bare.path) == tiny_model_dir and bare.run == str(chat_run)
    hf = resolve_chat_model(str(tiny_model_dir))
    assert hf.backend == "hf" and not hf.has_base
    gguf = resolve_chat_model(str(tiny_gguf))
    assert gguf.backend == "gguf" and gguf.run is None
    with pytest.raises(RunError, match="no checkpoint at step 7"):
        resolve_chat_model(str(chat_run), checkpoint="7")
    with pytest.raises(RunError, match="no GGUF export.*tunedeck export"):
        resolve_chat_model(str(chat_run), backend="gguf")
    with pytest.raises(ModelError, match="not a run, a model folder or a .gguf file"):
        resolve_chat_model(str(tmp_path / "nothing.bin"), chat_run.parent)


def test_a_runs_gguf_export_is_found_by_quant(chat_run: Path, tiny_gguf: Path, tmp_path: Path):
    import shutil

    run = tmp_path / chat_run.name
    shutil.copytree(chat_run, run, ignore=shutil.ignore_patterns("eval"))
    (run / "export").mkdir()
    for kind in ("f16", "Q8_0"):  # the export's file names: <name>-<kind>.gguf
        shutil.copy(tiny_gguf, run / "export" / f"{run.name}-{kind}.gguf")
    chosen = resolve_chat_model(str(run), backend="gguf")
    assert chosen.backend == "gguf" and chosen.path.endswith("-Q8_0.gguf") and chosen.run == str(run)
    assert chosen.base_gguf is None and not chosen.has_base  # the base is no builtin: no base GGUF to compare
    assert resolve_chat_model(str(run), backend="gguf", quant="f16").path.endswith("-f16.gguf")
    with pytest.raises(RunError, match="no Q4_K_M GGUF.*exported: Q8_0, f16"):
        resolve_chat_model(str(run), backend="gguf", quant="Q4_K_M")
    by_file = resolve_chat_model(str(run / "export" / f"{run.name}-Q8_0.gguf"))
    assert by_file.run == str(run)  # conversations of an exported file go to its run's eval/


@pytest.fixture(scope="module")
def worker(chat_run: Path):
    process = WorkerProcess(str(chat_run))
    ready = process.next()
    assert ready["type"] == "ready", ready
    process.ready = ready
    yield process
    assert process.close() == 0


@pytest.mark.slow
def test_the_worker_streams_answers_and_switches_the_adapter_off_for_base_answers(worker, chat_run: Path):
    assert worker.ready["model"]["backend"] == "adapter" and worker.ready["model"]["has_base"]
    settings = {"max_new_tokens": 12}
    tokens, tuned = worker.answer(id="t1", messages=WHO, settings=settings)
    assert tuned["type"] == "done" and tuned["id"] == "t1" and tuned["adapter"] is True
    assert len(tokens) > 1 and "".join(tokens) == tuned["text"]  # streamed, piece by piece
    assert tuned["tokens"] == 12 and tuned["finish"] == "length" and tuned["tokens_per_s"] > 0
    assert tuned["json_valid"] is None  # not JSON mode, not JSON-looking: no badge
    _, base = worker.answer(id="b1", messages=WHO, settings=settings, adapter=False)
    _, again = worker.answer(id="t2", messages=WHO, settings=settings)
    assert base["adapter"] is False and base["text"] != tuned["text"]  # same weights, adapter off
    assert again["text"] == tuned["text"]  # greedy, and the adapter is back on


@pytest.mark.slow
def test_the_worker_stops_before_a_stop_string(worker):
    _, full = worker.answer(id="s0", messages=WHO, settings={"max_new_tokens": 12})
    words = full["text"].split()
    stop = words[len(words) // 2]
    tokens, cut = worker.answer(id="s1", messages=WHO, settings={"max_new_tokens": 12, "stop": [stop]})
    assert cut["text"] == full["text"][: full["text"].find(stop)] and cut["finish"] == "stop"
    assert stop not in "".join(tokens) and cut["tokens"] < full["tokens"]


@pytest.mark.slow
def test_json_mode_on_an_hf_model_reports_the_invalid_answer(worker):
    _, done = worker.answer(id="j1", messages=WHO, settings={"max_new_tokens": 6, "json_mode": True},
                            adapter=False)
    assert done["json_valid"] is False and done["json_error"] and done["constrained"] is False


@pytest.mark.slow
def test_bad_requests_get_error_replies_and_the_worker_keeps_going(worker):
    worker.proc.stdin.write("{not json\n")
    worker.proc.stdin.flush()
    assert "not a JSON line" in worker.next()["message"]
    _, reply = worker.answer(id="e1", messages=WHO, settings={"temprature": 1})
    assert reply["type"] == "error" and reply["id"] == "e1" and "temprature" in reply["message"]
    worker.send(op="ping", id="p")
    assert worker.next() == {"v": 1, "type": "pong", "id": "p"}


@pytest.mark.slow
def test_cancel_ends_a_long_answer_early(worker):
    worker.send(op="generate", id="c1", messages=WHO, settings={"max_new_tokens": 2000})
    first = worker.next()
    assert first["type"] == "token"
    worker.send(op="cancel")
    while (message := worker.next())["type"] == "token":
        pass
    assert message["type"] == "done" and message["finish"] == "cancelled" and message["tokens"] < 2000


@pytest.mark.slow
def test_the_gguf_backend_constrains_json_mode_with_a_grammar(tiny_gguf: Path, chat_run: Path):
    process = WorkerProcess(str(tiny_gguf))
    try:
        assert process.next()["model"]["backend"] == "gguf"
        tokens, plain = process.answer(id="g1", messages=WHO, settings={"max_new_tokens": 8})
        assert plain["type"] == "done" and plain["tokens"] == 8 and "".join(tokens) == plain["text"]
        assert plain["tokens_per_s"] > 0 and plain["json_valid"] is None
        _, constrained = process.answer(id="g2", messages=WHO, settings={"max_new_tokens": 120, "json_mode": True})
        assert constrained["constrained"] is True and constrained["json_valid"] is True, constrained
        assert isinstance(json.loads(constrained["text"]), dict)
        _, refused = process.answer(id="g3", messages=WHO, settings={}, adapter=False)
        assert refused["type"] == "error" and "base" in refused["message"]
        process.send(op="load", model=str(chat_run))  # the same worker swaps to the run (HF + adapter)
        assert process.next()["model"]["backend"] == "adapter"
        # the same random model, greedy, through transformers (adapter off) and through llama.cpp (f16)
        _, hf = process.answer(id="h1", messages=WHO, settings={"max_new_tokens": 8}, adapter=False)
        assert hf["text"] == plain["text"]
    finally:
        assert process.close() == 0


@pytest.mark.slow
def test_a_model_that_cannot_load_ends_the_worker_with_a_readable_error(tmp_path: Path):
    process = WorkerProcess(str(tmp_path / "missing.gguf"), "--runs-dir", str(tmp_path))
    message = process.next()
    assert message["type"] == "error" and message["fatal"] and "not a run, a model folder" in message["message"]
    assert process.proc.wait(timeout=60) == 2
    process.close()


@pytest.mark.slow
def test_headless_chat_prints_one_answer_and_checks_json(chat_run: Path, worker, tunedeck_cmd):
    _, expected = worker.answer(id="x", messages=WHO, settings={"max_new_tokens": 6})
    command = [*tunedeck_cmd, "chat", chat_run.name, "--runs-dir", str(chat_run.parent), "--prompt", "Who are you?",
               "--max-new-tokens", "6"]
    tuned = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    assert tuned.stdout == expected["text"] + "\n"
    assert "(fine-tuned), adapter, 6 tokens" in tuned.stderr and "tokens/s" in tuned.stderr
    base = subprocess.run([*command, "--base", "--json"], capture_output=True, text=True, timeout=300)
    assert base.returncode == 1 and "(base)" in base.stderr and "JSON invalid" in base.stderr
    assert base.stdout != tuned.stdout


def test_chat_help_lists_the_generation_settings(tunedeck_cmd):
    result = subprocess.run([*tunedeck_cmd, "chat", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--prompt", "--base", "--json", "--checkpoint", "--backend", "--stop", "--repetition-penalty"):
        assert flag in result.stdout


def test_the_worker_module_still_refuses_unknown_modes():
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.worker", "fly", "x"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.slow
def test_a_quantized_gguf_answers_a_prompt_longer_than_one_token(tiny_gguf: Path, tmp_path: Path):
    """llama.cpp's AMX weight buffers crash on multi-token batches on some CPUs; the chat opens GGUFs without them."""
    from tunedeck.core.export.quantize import quantize_gguf

    q8 = quantize_gguf(tiny_gguf, tmp_path / "tiny-Q8_0.gguf", "Q8_0")
    process = WorkerProcess(str(q8))
    try:
        assert process.next()["type"] == "ready"
        tokens, done = process.answer(id="q", messages=WHO, settings={"max_new_tokens": 4})
        assert done["type"] == "done" and done["tokens"] == 4 and "".join(tokens) == done["text"]
    finally:
        assert process.close() == 0


def test_the_extra_buffer_switch_follows_the_environment(monkeypatch):
    from tunedeck.core.models import gguf_open as gguf_runtime

    monkeypatch.setenv("TUNEDECK_GGUF_EXTRA_BUFFERS", "1")
    assert gguf_runtime.extra_buffers_wanted()
    monkeypatch.setenv("TUNEDECK_GGUF_EXTRA_BUFFERS", "0")
    assert not gguf_runtime.extra_buffers_wanted()
    monkeypatch.delenv("TUNEDECK_GGUF_EXTRA_BUFFERS")
    assert gguf_runtime.extra_buffers_wanted() == (not gguf_runtime.reports_amx())


@pytest.mark.slow
def test_the_worker_refuses_a_prompt_past_the_context_at_once_and_keeps_the_conversation(tiny_model_dir: Path,
                                                                                       tmp_path: Path):
    from tunedeck.core.models.loading import BUILTIN_MODELS, builtin_gguf_path

    short = tmp_path / "short-model"  # the tiny model, reading at most 64 positions
    short.mkdir()
    for file in tiny_model_dir.iterdir():
        if file.name != "config.json":
            (short / file.name).symlink_to(file)
    config = json.loads((tiny_model_dir / "config.json").read_text(encoding="utf-8"))
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 64}), encoding="utf-8")
    long_prompt = [{"role": "user", "content": "tell me more about this " * 900}]
    process = WorkerProcess(str(builtin_gguf_path(BUILTIN_MODELS["smollm2-135m-instruct"])))
    try:
        assert process.next()["model"]["backend"] == "gguf"
        started = time.perf_counter()
        _, refused = process.answer(id="l1", messages=long_prompt, settings={"max_new_tokens": 4})
        assert refused["type"] == "error" and refused["id"] == "l1", refused
        assert re.search(r"the prompt is \d{4} tokens; this model's context holds 4096", refused["message"])
        assert time.perf_counter() - started < 30
        _, fine = process.answer(id="l2", messages=WHO, settings={"max_new_tokens": 4})
        assert fine["type"] == "done" and fine["tokens"] == 4
        process.send(op="load", model=str(short))
        assert process.next()["model"]["backend"] == "hf"
        _, refused = process.answer(id="l3", messages=long_prompt, settings={"max_new_tokens": 4})
        assert refused["type"] == "error" and "this model reads at most 64 (max_position_embeddings)" in \
            refused["message"]
        _, fine = process.answer(id="l4", messages=WHO, settings={"max_new_tokens": 200})
        assert fine["type"] == "done" and fine["tokens"] < 64  # the answer ends by the model's last position
    finally:
        assert process.close() == 0
