"""`tunedeck doctor [--json]`: GPUs, torch build, measured precision speed, kernels, QLoRA, DeepSpeed, disk."""

from __future__ import annotations

import argparse

from tunedeck.core.cli.commands import add_runs_dir


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check this machine: GPUs, torch build, fp16/bf16/fp32 speed, kernels, DeepSpeed, disk",
        description="Inspect the machine for training: GPUs and drivers, whether the torch build has kernels for "
                    "them, a short fp32/fp16/bf16 matmul benchmark (its answer is what train.precision 'auto' "
                    "uses), attention kernels, bitsandbytes (QLoRA), DeepSpeed ops and free disk in the runs "
                    "root. Every problem comes with its fix. Exit code 1 when a check fails.")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--preset", default=argparse.SUPPRESS,
                        help="size the disk check for this preset's model (default: the built-in model)")
    add_runs_dir(doctor)
    doctor.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace, open_app=None) -> int:
    from pathlib import Path

    from tunedeck.core.config_files import load_config
    from tunedeck.core.doctor.report import run_doctor

    config = None
    if args.preset or args.config or args.overrides:
        config = load_config(preset=args.preset, files=[Path(p) for p in args.config], overrides=args.overrides)
    report = run_doctor(args.runs_dir, config)
    print(report.to_json() if args.json else report.to_text())
    return 1 if report.worst == "fail" else 0
