"""`tunedeck export RUN`: merge, convert, quantize and write Ollama Modelfiles, with self-checks, headless."""

from __future__ import annotations

import argparse

from tunedeck.core.cli.commands import add_runs_dir
from tunedeck.core.cli.follow import follow_export
from tunedeck.core.errors import ConfigError
from tunedeck.core.export.job import start_export
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.export.options import export_options
from tunedeck.core.export.quant_types import QUANT_TYPES
from tunedeck.core.jobs.runs import find_run


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="export a run as GGUF quants with Ollama Modelfiles, and check them",
        description="Merge the run's adapter, convert to GGUF, quantize, write an Ollama Modelfile per quant and "
                    "verify them (template round trip, stop tokens, perplexity, ollama when installed). "
                    "Re-running skips steps that are already complete.")
    export.add_argument("run_id", nargs="?", help="the run to export (see `tunedeck runs`)")
    export.add_argument("--checkpoint", help="best (default), last, or a checkpoint's step number")
    export.add_argument("--quant", help="comma-separated quantization types, e.g. Q4_K_M,Q8_0")
    export.add_argument("--system", help="SYSTEM prompt for the Modelfile (default: data.system_prompt)")
    export.add_argument("--merge-dtype", choices=["auto", "fp16", "bf16", "fp32"], help="dtype of the merged model")
    export.add_argument("--name", help="model name for files and `ollama create` (default: the run id)")
    export.add_argument("--list-quants", action="store_true", help="list the quantization types and exit")
    add_runs_dir(export)
    export.set_defaults(func=export_command)


def export_command(args: argparse.Namespace, open_app=None) -> int:
    if args.list_quants:
        for name, (_, what) in QUANT_TYPES.items():
            print(f"{name:8} {what}")
        return 0
    if not args.run_id:
        raise ConfigError("which run? give its id", where="tunedeck export", hint="see `tunedeck runs`")
    run = find_run(args.runs_dir, args.run_id)
    options = export_options(run, checkpoint=args.checkpoint, quant=args.quant, system=args.system,
                             merge_dtype=args.merge_dtype, name=args.name)
    proc = start_export(run, options)
    layout = ExportLayout.for_run(run, options.ollama_name)
    print(f"export of {run.run_id} started (pid {proc.pid}); files go to {layout.root}")
    return follow_export(layout, proc)
