"""`tunedeck data inspect PATH` and `tunedeck data prepare PATH --out DIR`: check and split a dataset.

Exit codes of `data inspect`: 0 when no finding is an error (warnings and notes allowed), 1 when at least
one is (rows training skips or cannot learn from, bad JSON answers), 2 when the file cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys

from tunedeck.core.inspect.report import KINDS, InspectReport

FORMAT_CHOICES = ("auto", "alpaca", "sharegpt", "openai")


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect a dataset, or prepare normalized train/validation/test files")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    inspect = actions.add_parser(
        "inspect", help="lint a dataset and measure its token lengths",
        description="Read a dataset (Alpaca, ShareGPT, OpenAI messages; JSON, JSONL, CSV, Parquet), lint every "
                    "row and measure token lengths with the model's tokenizer and the run's chat template. "
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
    prepare.add_argument("--fix-encoding", action="store_true", help="repair double-encoded text with ftfy")
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


def inspect_command(args: argparse.Namespace, open_app=None) -> int:
    from tunedeck.core.inspect.inspect import inspect_dataset

    def progress(done: int, total: int) -> None:
        sys.stderr.write(json.dumps({"done": done, "total": total}) + "\n")
        sys.stderr.flush()

    report = inspect_dataset(args.path, fmt=args.format, dataset_info=args.dataset_info, name=args.name,
                             template=args.template, cutoff=args.cutoff, model=args.model,
                             system_prompt=args.system, progress=progress if args.progress else None)
    if args.json:
        json.dump(report.to_json(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(format_report(report, args.show, args.kind))
    return 1 if any(f.severity == "error" for f in report.findings) else 0


def format_report(report: InspectReport, show: int = 20, kinds: list[str] | None = None) -> str:
    """The human summary: counts, token lengths, findings per kind, the first findings with file:line."""
    lines = [f"{report.source}: {report.format}, {report.rows} rows, {report.samples} trainable samples, "
             f"template {report.template}"]
    lines.append("roles: " + ", ".join(f"{role} {n}" for role, n in report.roles.items()))
    if report.lengths is not None:
        s = report.lengths.summary()
        if s["count"]:
            lines.append(f"tokens: min {s['min']}  mean {s['mean']}  p50 {s['p50']}  p90 {s['p90']}  p99 {s['p99']}"
                         f"  max {s['max']}  total {s['total']}")
        lines.append(f"cutoff {s['cutoff']}: {s['over_cutoff']} samples longer (cut), {s['assistant_lost']} lose "
                     "their whole answer (dropped)")
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


def prepare_command(args: argparse.Namespace, open_app=None) -> int:
    from tunedeck.core.inspect.inspect import load_inspect_tokenizer
    from tunedeck.core.inspect.prepare import parse_split, prepare_dataset

    ratios = parse_split(args.split)
    tokenizer = None if args.no_tokens else load_inspect_tokenizer(args.model)
    result = prepare_dataset(args.path, args.out, ratios, seed=args.seed, fmt=args.format,
                             dataset_info=args.dataset_info, name=args.name, redact_pii=args.redact,
                             fix_text=args.fix_encoding, dedupe=args.dedupe, system_prompt=args.system,
                             tokenizer=tokenizer, template=args.template, cutoff=args.cutoff)
    written = ", ".join(f"{split} {n}" for split, n in result.samples.items())
    print(f"{result.source}: {result.format}, {result.rows} rows -> {args.out}: {written}")
    extras = [f"{len(result.skipped)} rows skipped (see stats.json)" if result.skipped else "",
              f"{result.duplicates_dropped} duplicates dropped" if result.duplicates_dropped else "",
              f"{result.redacted} personal data items redacted" if result.redacted else "",
              f"{result.encoding_fixed} turns repaired" if result.encoding_fixed else ""]
    if any(extras):
        print("; ".join(e for e in extras if e))
    return 0


def preview_command(args: argparse.Namespace, open_app=None) -> int:
    from tunedeck.core.config import DataConfig
    from tunedeck.core.errors import DataError
    from tunedeck.core.inspect.inspect import load_inspect_tokenizer, load_rows
    from tunedeck.core.inspect.preview import conversation_at, render_sample

    loaded = load_rows(args.path, args.format, args.dataset_info, args.name)
    conv = conversation_at(loaded.conversations, args.row)
    if conv is None:
        raise DataError(f"row {args.row} is not a readable sample", where=loaded.source,
                        hint=f"rows run from 0 to {loaded.rows - 1}; `tunedeck data inspect` lists unreadable ones")
    cutoff = args.cutoff or DataConfig.model_fields["cutoff_len"].default
    segments = render_sample(conv.with_system(args.system), load_inspect_tokenizer(args.model), cutoff,
                             args.template)
    if args.json:
        print(json.dumps([s._asdict() for s in segments], ensure_ascii=False))
        return 0
    kept = "".join(f"[[{s.text}]]" if s.trained else s.text for s in segments if not s.cut)
    cut = "".join(f"[[{s.text}]]" if s.trained else s.text for s in segments if s.cut)
    print(kept + (f"{{{{{cut}}}}}" if cut else ""))
    return 0
