"""What GPU sampling costs a training step: the time of one sampling round, as a share of the sampling period.

One round (every GPU source found here plus host RAM, and writing the events) runs once a second in the worker,
so its share of any step is (round time / 1 s). Run: .venv/bin/python bench/gpu_sampler.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tunedeck.core.hardware.monitor import SAMPLE_EVERY_S, GpuSampler, open_sources
from tunedeck.core.stream.events import EventWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    started = time.perf_counter()
    sources, reasons = open_sources()
    opened = time.perf_counter() - started
    print(f"sources: {', '.join(s.label for s in sources) or 'none'}"
          + (f" (no GPU data: {'; '.join(reasons)})" if not sources else ""))
    with tempfile.TemporaryDirectory() as tmp:
        writer = EventWriter(Path(tmp) / "events.jsonl")
        sampler = GpuSampler(writer.emit, open_sources=lambda: (sources, reasons))
        times = []
        for _ in range(args.rounds):
            begin = time.perf_counter()
            sampler._sample(sources)
            times.append(time.perf_counter() - begin)
        writer.close()
    round_s = statistics.median(times)
    print(f"opening the sources once: {opened * 1000:.1f} ms (in the sampler thread, not in a step)")
    p95 = sorted(times)[int(0.95 * len(times))]
    print(f"one sampling round: median {round_s * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms")
    print(f"share of training time at one round per {SAMPLE_EVERY_S:g} s: {round_s / SAMPLE_EVERY_S:.4%} "
          f"(target < 1%)")


if __name__ == "__main__":
    main()
