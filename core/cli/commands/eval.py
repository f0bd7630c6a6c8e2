"""`tunedeck eval RUN`: score a run on held-out rows (loss, predictions, chrF/ROUGE/BLEU/JSON), in the foreground."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from tunedeck.core.cli.commands import add_runs_dir
from tunedeck.core.cli.printers import EvalPrinter
from tunedeck.core.errors import ConfigError
from tunedeck.core.evaluate.compat import NAME as LLAMAFACTORY
from tunedeck.core.evaluate.job import execute, prepare
from tunedeck.core.evaluate.layout import EvalRequest
from tunedeck.core.evaluate.table import format_table, provenance, verdict
from tunedeck.core.jobs.runs import find_run

COMPAT = (LLAMAFACTORY,)


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval", help="evaluate a run on held-out rows: eval loss, predictions, chrF/ROUGE/BLEU, JSON checks",
        description="Compute eval loss and perplexity on the run's held-out rows (its validation file or split, "
                    "or --data), answer each prompt greedily, and score the answers against the references: "
                    "sacrebleu BLEU and chrF (tok:13a, or tok:zh for Chinese; signatures printed), rouge-score "
                    "ROUGE-1/2/L/Lsum (Chinese cut into words by jieba), exact match, JSON validity and per-field "
                    "agreement, led by what suits the answers. With --compare-base, paired bootstrap 95%% intervals "
                    "of every difference. Writes RUN/eval/predictions.jsonl, predictions.csv and metrics.json.")
    evaluate.add_argument("run_id", help="the run to evaluate (see `tunedeck runs`)")
    evaluate.add_argument("--data", metavar="FILE", help="held-out rows in the run's data format "
                          "(default: the run's validation file or split)")
    evaluate.add_argument("--compare-base", action="store_true", help="score the base model (adapter off) too")
    evaluate.add_argument("--max-rows", type=int, metavar="N", help="evaluate the first N held-out rows only")
    evaluate.add_argument("--max-new-tokens", type=int, metavar="N",
                          help="longest answer (default: the longest reference plus 32 tokens)")
    evaluate.add_argument("--batch-size", type=int, default=8, metavar="N", help="rows per batch (default 8)")
    evaluate.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint's step")
    evaluate.add_argument("--tolerance", type=float, default=1.0,
                          help="numeric JSON fields agree within +-this (default 1)")
    evaluate.add_argument("--compat", choices=COMPAT,
                          help="also score as LLaMA-Factory's predict stage does (predict_bleu-4, predict_rouge-*)")
    evaluate.add_argument("--json", action="store_true", help="print metrics.json instead of a table")
    add_runs_dir(evaluate)
    evaluate.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace, open_app=None) -> int:
    for flag in ("max_rows", "max_new_tokens", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1", where="tunedeck eval")
    run = find_run(args.runs_dir, args.run_id)
    request = EvalRequest(data=args.data, compare_base=args.compare_base, max_rows=args.max_rows,
                          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          checkpoint=args.checkpoint, tolerance=args.tolerance, compat=args.compat)
    layout = prepare(run, request)
    printer = EvalPrinter(sys.stderr)
    finished = execute(run, request, threading.Event(), on_event=printer.handle)
    printer.end_line()
    if finished.status != "completed":
        print(f"evaluation {finished.status}: {finished.message}", file=sys.stderr)
        return 130 if finished.status == "stopped" else 1
    metrics = json.loads(layout.metrics.read_text(encoding="utf-8"))
    if args.json:
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
        return 0
    print(f"{run.run_id} · {metrics['checkpoint']} · {metrics['rows']} rows from {metrics['source']}")
    print(format_table(metrics))
    said = verdict(metrics)
    if said:
        print(said)
    for line in provenance(metrics):
        print(line)
    print(f"predictions: {layout.predictions_jsonl} (and .csv); metrics: {layout.metrics}")
    return 0
