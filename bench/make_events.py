"""Write a long recorded run (events.jsonl, config.yaml, status.json) for benchmarks: 100k steps by default."""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from tunedeck.core.config import Config
from tunedeck.core.config_files import dump_config
from tunedeck.core.stream.events import Checkpoint, Eval, Gpu, Host, Log, RunFinished, RunStarted, Step

GIB = 1 << 30


def write_long_run(run_path: Path, steps: int = 100_000, gpus: int = 2, step_s: float = 0.5,
                   eval_every: int = 2000, finished: bool = False, seed: int = 0) -> Path:
    """A run folder whose events look like a long multi-GPU run: steps, evals, checkpoints, ~1 Hz GPU and host
    readings."""
    rng = random.Random(seed)
    run_path.mkdir(parents=True, exist_ok=True)
    config = Config()
    (run_path / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    start = time.time() - steps * step_s
    epochs = 5
    per_epoch = steps / epochs
    gpu_every = max(1, round(1.0 / step_s))
    with open(run_path / "events.jsonl", "w", encoding="utf-8") as out:
        def emit(event) -> None:
            out.write(event.to_json() + "\n")

        emit(Log(level="info", message="loading model (bf16)", t=start - 30))
        emit(RunStarted(run_id=run_path.name, config=config.model_dump(mode="json"), world_size=gpus,
                        hardware={"accelerator": "rocm", "gpus": [{"index": i, "name": "AMD Instinct MI50"}
                                                                  for i in range(gpus)]},
                        precision="bf16", total_steps=steps, num_epochs=epochs, train_samples=int(per_epoch * 8),
                        eval_samples=800, t=start))
        for step in range(1, steps + 1):
            t = start + step * step_s
            loss = 0.4 + 2.2 * math.exp(-step / (steps / 8)) + rng.gauss(0, 0.08)
            lr = 5e-5 * 0.5 * (1 + math.cos(math.pi * step / steps))
            emit(Step(step=step, epoch=round(step / per_epoch, 4), loss=loss, lr=lr, grad_norm=abs(rng.gauss(1, .3)),
                      tokens_per_s=round(rng.uniform(780, 840), 4), samples_per_s=round(rng.uniform(3, 3.4), 4),
                      total_steps=steps, t=t))
            if step % gpu_every == 0:
                for index in range(gpus):
                    emit(Gpu(index=index, name="AMD Instinct MI50", mem_used=int((28 + rng.random()) * GIB),
                             mem_total=32 * GIB, util=round(rng.uniform(90, 100), 1), temp=70.0 + index,
                             power=round(rng.uniform(200, 230), 1), t=t))
                emit(Host(ram_used=40 * GIB, ram_total=128 * GIB, t=t))
            if step % eval_every == 0:
                eval_loss = 0.55 + 2.0 * math.exp(-step / (steps / 8)) + 0.05 * (step / steps) ** 2
                emit(Eval(step=step, epoch=round(step / per_epoch, 4), eval_loss=eval_loss,
                          perplexity=math.exp(eval_loss), t=t))
                emit(Checkpoint(step=step, path=f"checkpoints/checkpoint-{step}", eval_loss=eval_loss, t=t))
        if finished:
            emit(RunFinished(status="completed", final_step=steps, adapter=str(run_path / "adapter"),
                             t=start + steps * step_s + 1))
    status = {"status": "completed" if finished else "running", "run_id": run_path.name, "preset": "mi50-2x",
              "base_model": config.model.name_or_path, "created_at": start - 60, "started_at": start - 60,
              "step": steps, "total_steps": steps}
    (run_path / "status.json").write_text(json.dumps(status), encoding="utf-8")
    (run_path / "worker.log").write_text("worker started\n", encoding="utf-8")
    return run_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--gpus", type=int, default=2)
    args = parser.parse_args()
    path = write_long_run(args.run_dir, args.steps, args.gpus)
    size = (path / "events.jsonl").stat().st_size
    print(f"{path}: {args.steps} steps, {size / 1e6:.1f} MB of events")


if __name__ == "__main__":
    main()
