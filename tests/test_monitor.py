"""GPU sampling: sysfs readings, graceful degradation without drivers, and the sampler thread's events."""

from __future__ import annotations

import time
from pathlib import Path

from tunedeck.core.hardware.monitor import GpuSampler, SysfsAmdSource, host_memory, open_sources
from tunedeck.core.stream.events import EventWriter, Gpu, Host, Log, read_events

GIB = 1 << 30


def fake_drm(root: Path) -> Path:
    """A /sys/class/drm tree as the amdgpu driver lays it out: one MI50, one non-AMD card, one connector."""
    card = root / "card1" / "device"
    (card / "hwmon" / "hwmon3").mkdir(parents=True)
    files = {"vendor": "0x1002\n", "device": "0x66a1\n", "product_name": "AMD Instinct MI50\n",
             "mem_info_vram_used": f"{28 * GIB}\n", "mem_info_vram_total": f"{32 * GIB}\n",
             "gpu_busy_percent": "97\n", "hwmon/hwmon3/temp1_input": "71000\n",
             "hwmon/hwmon3/power1_average": "212000000\n"}
    for name, text in files.items():
        (card / name).write_text(text)
    other = root / "card0" / "device"
    other.mkdir(parents=True)
    (other / "vendor").write_text("0x10de\n")
    (root / "card1-DP-1").mkdir()
    return root


def test_sysfs_source_reads_amdgpu_files(tmp_path: Path):
    source = SysfsAmdSource(fake_drm(tmp_path))
    [reading] = source.read()
    assert (reading.index, reading.name) == (0, "AMD Instinct MI50")
    assert (reading.mem_used, reading.mem_total) == (28 * GIB, 32 * GIB)
    assert (reading.util, reading.temp, reading.power) == (97.0, 71.0, 212.0)


def test_sources_that_cannot_open_say_why(tmp_path: Path):
    def broken():
        raise OSError("driver not loaded")

    def missing():
        raise ImportError("no module")

    sources, reasons = open_sources(nvidia=(broken,), amd=(missing, lambda: SysfsAmdSource(tmp_path / "none")))
    assert sources == []
    assert reasons[0] == "broken: driver not loaded"
    assert reasons[1] == "missing not installed"
    assert "does not exist" in reasons[2]


def test_this_machine_degrades_to_a_reason_never_a_crash():
    sources, reasons = open_sources()  # the real libraries: nvidia-ml-py and pyrsmi are installed, no GPU here
    for source in sources:  # a machine with a GPU gets readings instead
        assert all(isinstance(r, Gpu) and r.mem_total > 0 for r in source.read())
        source.close()
    assert sources or any(r.startswith(("nvidia-ml-py", "pyrsmi")) for r in reasons)


def test_sampler_writes_a_reason_once_and_host_samples(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    sampler = GpuSampler(writer.emit, interval_s=0.05, open_sources=lambda: ([], ["pyrsmi: no ROCm"])).start()
    time.sleep(0.4)
    sampler.stop()
    events = list(read_events(path))
    logs = [e for e in events if isinstance(e, Log)]
    samples = [e for e in events if isinstance(e, Host)]
    assert [log.message for log in logs] == ["no GPU data: pyrsmi: no ROCm"]
    assert len(samples) >= 4 and not any(isinstance(e, Gpu) for e in events)
    used, total = host_memory()
    assert all(s.ram_total == total and s.node is None for s in samples)
    assert 0 < samples[-1].ram_used < total


def test_a_source_that_starts_failing_is_dropped_with_a_warning(tmp_path: Path):
    class FlakyGpu:
        label = "flaky"
        reads = 0

        def read(self):
            self.reads += 1
            if self.reads > 2:
                raise RuntimeError("GPU has fallen off the bus")
            return [Gpu(index=0, name="Test GPU", mem_used=GIB, mem_total=2 * GIB)]

        def close(self):
            pass

    events = []
    sampler = GpuSampler(events.append, interval_s=0.02, open_sources=lambda: ([FlakyGpu()], [])).start()
    time.sleep(0.3)
    sampler.stop()
    readings = [e for e in events if isinstance(e, Gpu | Host)]
    assert [type(e) for e in readings[:4]] == [Gpu, Host, Gpu, Host]  # host RAM next to each round of GPUs
    assert [e.index for e in readings[:4:2]] == [0, 0] and all(e.ram_total for e in readings[1:4:2])
    assert any(isinstance(e, Log) and "fallen off the bus" in e.message for e in events)
    assert [type(e) for e in readings[4:]] == [Host] * len(readings[4:]) and len(readings) > 5  # host RAM keeps coming
