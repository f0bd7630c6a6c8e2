"""`tunedeck eval-compare A B`: two evaluations of the same rows side by side, with paired bootstrap intervals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunedeck.core.cli.commands import add_runs_dir
from tunedeck.core.evaluate.compare import compare_evaluations, predictions_path, read_predictions
from tunedeck.core.evaluate.compat import NAME as LLAMAFACTORY
from tunedeck.core.evaluate.table import format_table, provenance, verdict


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "eval-compare", help="compare two evaluations of the same held-out rows (two runs or two checkpoints)",
        description="Score the answers of two evaluations of the same held-out rows again, side by side, with "
                    "paired bootstrap 95%% intervals of every difference (B minus A) and a sentence on whether the "
                    "difference is real. A and B are run ids (their latest `tunedeck eval`) or predictions.jsonl "
                    "files (keep a copy of one checkpoint's before evaluating another).")
    compare.add_argument("baseline", metavar="A", help="the baseline: a run id or a predictions.jsonl file")
    compare.add_argument("other", metavar="B", help="compared against A: a run id or a predictions.jsonl file")
    compare.add_argument("--tolerance", type=float, default=1.0,
                         help="numeric JSON fields agree within +-this (default 1)")
    compare.add_argument("--compat", choices=(LLAMAFACTORY,),
                         help="also score as LLaMA-Factory's predict stage does (predict_bleu-4, predict_rouge-*)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    add_runs_dir(compare)
    compare.set_defaults(func=eval_compare_command)


def eval_compare_command(args: argparse.Namespace, open_app=None) -> int:
    sides = []
    for source in (args.baseline, args.other):
        path = predictions_path(source, Path(args.runs_dir))
        sides.append((source, read_predictions(path)))
    metrics = compare_evaluations(sides[0], sides[1], args.tolerance, args.compat)
    if args.json:
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
        return 0
    print(f"{args.other} against {args.baseline} · {metrics['rows']} rows")
    print(format_table(metrics))
    for line in [verdict(metrics) or "", *provenance(metrics)]:
        if line:
            print(line)
    return 0
