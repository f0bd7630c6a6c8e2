"""`tunedeck data inspect PATH` and `tunedeck data prepare PATH --out DIR`: check and split a dataset.

Exit codes of `data inspect`: 0 when no finding is an error (warnings and notes allowed), 1 when at least
one is (rows training skips or cannot learn from, bad JSON answers), 2 when the file cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys

from tunedeck.core.config import DataConfig
from tunedeck.core.data.corpus import corpus_format
from tunedeck.core.data.placeholders import parse_fill
from tunedeck.core.data.records import resolve_data_path
from tunedeck.core.errors import DataError
from tunedeck.core.inspect.inspect import inspect_dataset, load_inspect_tokenizer, load_rows, source_config
from tunedeck.core.inspect.prepare import parse_split, prepare_dataset
from tunedeck.core.inspect.preview import Segment, conversation_at, render_sample
from tunedeck.core.inspect.report import KINDS, InspectReport
from tunedeck.core.inspect.service import row_segments

FORMAT_CHOICES = ("auto", "alpaca", "sharegpt", "openai", "markdown", "text")


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect a dataset, or prepare normalized train/validation/test files")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    inspect = actions.add_parser(
        "inspect", help="lint a dataset and measure its token lengths",
        description="Read a dataset (Alpaca, ShareGPT, OpenAI messages; JSON, JSONL, CSV, Parquet; a dataset_info.json "
                    "entry; a .md / .txt corpus or a folder of them) as training reads it, lint every row and "
                    "measure token lengths with the model's tokenizer and the run's chat template. "
                    "Exit code: 0 no errors, 1 errors found, 2 the file cannot be read.")
    _source_arguments(inspect)
    inspect.add_argument("--json", action="store_true", help="print the whole report as JSON")
    inspect.add_argument("--show", type=int, default=20, metavar="N", help="findings listed (default 20)")
    inspect.add_argument("--kind", choices=KINDS, action="append", help="list only findings of this kind")
    inspect.add_argument("--progress", action="store_true",
                         help='report progress on stderr as JSON lines {"done": N, "total": M}')
    inspect.set_defaults(func=inspect_command)

    preview = actions.add_parser(
        "preview", help="show one row exactly as the model sees it, trained parts marked",
        description="Render one row with the run's chat template and tokenizer. Plain output marks trained "
                    "(assistant) text with [[ ]] and text past the cutoff with {{ }}; --json prints the "
                    'segments as [{"text", "trained", "cut"}].')
    _source_arguments(preview)
    preview.add_argument("--row", type=int, required=True, help="0-based row of the file")
    preview.add_argument("--json", action="store_true", help="print the segments as JSON")
    preview.set_defaults(func=preview_command)

    prepare = actions.add_parser(
        "prepare", help="write normalized train/validation/test JSONL and stats.json",
        description="Normalize every usable row to OpenAI-style messages and split by a stable hash of its "
                    "content (the same row always lands in the same split).")
    _source_arguments(prepare)
    prepare.add_argument("--out", required=True, help="folder for train.jsonl, validation.jsonl, test.jsonl")
    prepare.add_argument("--split", default="0.9,0.05,0.05", help="train,validation,test shares (default "
                         "0.9,0.05,0.05)")
    prepare.add_argument("--seed", type=int, help="split seed (default: train.seed)")
    prepare.add_argument("--redact", action="store_true", help="replace emails, phones, IPs, ID numbers")
    prepare.add_argument("--fix-encoding", action="store_true", help="repair double-encoded text with ftfy and strip "
                         "control and invisible characters (ESC, NUL, zero-width, bidi controls)")
    prepare.add_argument("--dedupe", action="store_true", help="drop exact duplicate samples")
    prepare.add_argument("--no-tokens", action="store_true", help="skip token statistics (no tokenizer load)")
    prepare.set_defaults(func=prepare_command)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", default="", help="data file (or the folder of --dataset-info)")
    parser.add_argument("--format", choices=FORMAT_CHOICES, default="auto", help="row format (default: detect)")
    parser.add_argument("--dataset-info", metavar="FILE", help="LLaMA-Factory dataset_info.json describing the file")
    parser.add_argument("--name", help="the dataset_info.json entry to use")
    parser.add_argument("--template", default="auto", help="chat template: auto (the model's) or chatml, qwen, "
                        "llama3")
    parser.add_argument("--cutoff", type=int, help="training cutoff in tokens (default: data.cutoff_len)")
    parser.add_argument("--model", help="model whose tokenizer measures lengths (default: the builtin SmolLM2)")
    parser.add_argument("--system", help="system prompt given to conversations without one (data.system_prompt)")
    parser.add_argument("--fill", action="append", default=[], metavar="NAME=VALUE",
                        help="value for {{NAME}} placeholders in the text (data.placeholders); repeatable")
    parser.add_argument("--corpus-mode", choices=("pretrain", "style_sft"), default="pretrain",
                        help="Markdown / text corpora: data.corpus_mode (default pretrain)")
    parser.add_argument("--chunk-tokens", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="Markdown / text corpora: data.chunk_tokens (default 300 800)")


def _data_config(args: argparse.Namespace) -> DataConfig:
    """The arguments as the DataConfig a run would hold, so the data is read the way training reads it."""
    fields = {"system_prompt": args.system, "placeholders": parse_fill(args.fill), "corpus_mode": args.corpus_mode}
    if args.cutoff:
        fields["cutoff_len"] = args.cutoff
    if args.chunk_tokens:
        fields["chunk_tokens"] = list(args.chunk_tokens)
    return source_config(args.path, args.format, args.dataset_info, args.name, **fields)


def inspect_command(args: argparse.Namespace, open_app=None) -> int:
    def progress(done: int, total: int) -> None:
        sys.stderr.write(json.dumps({"done": done, "total": total}) + "\n")
        sys.stderr.flush()

    report = inspect_dataset(_data_config(args), template=args.template, model=args.model,
                             progress=progress if args.progress else None)
    if args.json:
        json.dump(report.to_json(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(format_report(report, args.show, args.kind))
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def format_report(report: InspectReport, show: int = 20, kinds: list[str] | None = None) -> str:
    """The human summary: counts, token lengths, findings per kind, the first findings with file:line."""
    layout = f" ({report.layout})" if report.layout else ""
    lines = [f"{report.source}: {report.format}{layout}, {report.rows} rows, {report.samples} trainable samples, "
             f"template {report.template}"]
    if report.roles:
        lines.append("roles: " + ", ".join(f"{role} {n}" for role, n in report.roles.items()))
    if report.lengths is not None:
        s = report.lengths.summary()
        if s["count"]:
            lines.append(f"tokens: min {s['min']}  mean {s['mean']}  p50 {s['p50']}  p90 {s['p90']}  p99 {s['p99']}"
                         f"  max {s['max']}  total {s['total']}")
        lines.append(f"cutoff {s['cutoff']}: {s['over_cutoff']} samples longer (cut), {s['assistant_lost']} lose "
                     "their whole answer (dropped)" + _cut_advice(s))
    if report.placeholders:
        listed = ", ".join(f"{{{{{name}}}}} in {n} rows" for name, n in report.placeholders.items())
        fill = " ".join(f"--fill {name}=..." for name in report.placeholders)
        lines.append(f"placeholders: {listed}; trained literally unless filled: {fill}")
    severities = {sev: sum(1 for f in report.findings if f.severity == sev) for sev in ("error", "warning", "info")}
    lines.append("findings: " + ", ".join(f"{n} {sev}{'s' if n != 1 and sev != 'info' else ''}"
                                          for sev, n in severities.items()))
    if report.findings:
        lines.append("  " + ", ".join(f"{kind} {n}" for kind, n in report.counts().items()))
    listed = [f for f in report.findings if not kinds or f.kind in kinds]
    for finding in listed[:show]:
        fix = f" -> {finding.fix}" if finding.fix and finding.kind != "encoding" else ""
        if finding.kind == "encoding" and finding.fix:
            fix = f" -> ftfy: {finding.fix[:60]!r}"
        lines.append(f"{finding.where(report.source)}: {finding.severity}: {finding.kind}: {finding.message}{fix}")
    if len(listed) > show:
        lines.append(f"... {len(listed) - show} more (--show N, --kind KIND, or --json)")
    return "\n".join(lines)


def _cut_advice(summary: dict) -> str:
    """What the cut samples lose, and the cutoffs that keep 95% / 99% of the samples whole (on its own line)."""
    if not summary["over_cutoff"]:
        return ""
    lost = summary.get("answer_tokens_lost")
    total = summary["answer_tokens"]
    lost_text = f"the cut samples lose {lost} of {total} trained tokens; " if lost is not None else ""
    keep95, keep99 = (max(summary["cutoff"], summary[key]) for key in ("cutoff_keeps_95", "cutoff_keeps_99"))
    return f"\n  {lost_text}--cutoff {keep95} keeps 95% of the samples whole, {keep99} keeps 99%"


def prepare_command(args: argparse.Namespace, open_app=None) -> int:
    ratios = parse_split(args.split)
    cfg = _data_config(args)
    tokenizer = None if args.no_tokens and not _is_corpus(cfg) else load_inspect_tokenizer(args.model)
    result = prepare_dataset(cfg, args.out, ratios, seed=args.seed, redact_pii=args.redact,
                             fix_text=args.fix_encoding, dedupe=args.dedupe, tokenizer=tokenizer,
                             template=args.template, measure=not args.no_tokens)
    written = ", ".join(f"{split} {n}" for split, n in result.samples.items())
    print(f"{result.source}: {result.format}, {result.rows} rows -> {args.out}: {written}")
    extras = [f"{len(result.skipped)} rows skipped (see stats.json)" if result.skipped else "",
              f"{result.duplicates_dropped} duplicates dropped" if result.duplicates_dropped else "",
              f"{result.redacted} personal data items redacted" if result.redacted else "",
              f"{result.encoding_fixed} turns repaired" if result.encoding_fixed else "",
              f"{result.controls_stripped} control characters stripped" if result.controls_stripped else ""]
    if any(extras):
        print("; ".join(e for e in extras if e))
    return 0


def _is_corpus(cfg: DataConfig) -> bool:
    """True when the data is a Markdown / text corpus, whose chunks are measured with the model's tokenizer."""
    return not cfg.dataset_info and corpus_format(resolve_data_path(cfg.path), cfg.format) is not None


def preview_command(args: argparse.Namespace, open_app=None) -> int:
    cfg = _data_config(args)
    tokenizer = load_inspect_tokenizer(args.model)
    loaded = load_rows(cfg, tokenizer=tokenizer)
    conv = conversation_at(loaded.conversations, args.row)
    if conv is None:
        raise DataError(f"row {args.row} is not a readable sample", where=loaded.source,
                        hint=f"rows run from 0 to {loaded.rows - 1}; `tunedeck data inspect` lists unreadable ones")
    conv = conv.with_system(cfg.system_prompt)
    if "text" in conv.meta:  # pretraining text: no chat template, every token trained
        segments = [Segment(*run) for run in row_segments(conv, tokenizer, cfg.cutoff_len)[0]]
    else:
        segments = render_sample(conv, tokenizer, cfg.cutoff_len, args.template)
    if args.json:
        print(json.dumps([s._asdict() for s in segments], ensure_ascii=False))
        return 0
    kept = "".join(f"[[{s.text}]]" if s.trained else s.text for s in segments if not s.cut)
    cut = "".join(f"[[{s.text}]]" if s.trained else s.text for s in segments if s.cut)
    print(kept + (f"{{{{{cut}}}}}" if cut else ""))
    return 0
