"""GPU and host memory sampling: NVML, ROCm SMI or sysfs readings into `gpu` events, host RAM into `host` events."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tunedeck.core.stream.events import Event, Gpu, Host, Log

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 1.0
DRM_ROOT = Path("/sys/class/drm")
AMD_VENDOR = "0x1002"
MIB = 1 << 20


class GpuSource(Protocol):
    """One way of reading GPUs; opening it raises when the library, driver or devices are missing."""

    label: str

    def read(self) -> list[Gpu]: ...

    def close(self) -> None: ...


class NoDevices(Exception):
    """A library loaded but saw no GPU."""


def _number(value: Any, scale: float = 1.0) -> float | None:
    """A reading as a float, or None for the 'not supported' answers (-1, 'N/A', errors)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number < 0 or number != number else number * scale


def _read_or_none(read: Callable[[], Any], scale: float = 1.0) -> float | None:
    try:
        return _number(read(), scale)
    except Exception:  # noqa: BLE001 - drivers answer 'not supported' in many ways
        return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlSource:
    """NVIDIA GPUs through nvidia-ml-py (NVML)."""

    label = "nvidia-ml-py"

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        count = pynvml.nvmlDeviceGetCount()
        if not count:
            pynvml.nvmlShutdown()
            raise NoDevices("NVML sees no NVIDIA GPU")
        self._devices = []
        for index in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._devices.append((index, handle, _text(pynvml.nvmlDeviceGetName(handle))))

    def read(self) -> list[Gpu]:
        nvml = self._nvml
        readings = []
        for index, handle, name in self._devices:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            readings.append(Gpu(
                index=index, name=name, mem_used=int(memory.used), mem_total=int(memory.total),
                util=_read_or_none(lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h).gpu),
                temp=_read_or_none(lambda h=handle: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
                power=_read_or_none(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h), scale=1e-3),  # mW
            ))
        return readings

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - closing must never fail the run
            pass


class PyrsmiSource:
    """AMD GPUs through pyrsmi (ROCm SMI); it has no temperature reading."""

    label = "pyrsmi"

    def __init__(self) -> None:
        from pyrsmi import rocml

        rocml.smi_initialize()
        self._rocml = rocml
        count = rocml.smi_get_device_count()
        if not count or count < 0:
            raise NoDevices("pyrsmi sees no AMD GPU")
        self._devices = [(index, _text(rocml.smi_get_device_name(index))) for index in range(count)]

    def read(self) -> list[Gpu]:
        smi = self._rocml
        readings = []
        for index, name in self._devices:
            readings.append(Gpu(
                index=index, name=name,
                mem_used=int(_number(smi.smi_get_device_memory_used(index)) or 0),
                mem_total=int(_number(smi.smi_get_device_memory_total(index)) or 0),
                util=_read_or_none(lambda i=index: smi.smi_get_device_utilization(i)),
                power=_read_or_none(lambda i=index: smi.smi_get_device_average_power(i)),
            ))
        return readings

    def close(self) -> None:
        try:
            self._rocml.smi_shutdown()
        except Exception:  # noqa: BLE001
            pass


class AmdsmiSource:
    """AMD GPUs through the amdsmi package shipped with ROCm."""

    label = "amdsmi"

    def __init__(self) -> None:
        import amdsmi

        amdsmi.amdsmi_init()
        self._smi = amdsmi
        handles = amdsmi.amdsmi_get_processor_handles()
        if not handles:
            amdsmi.amdsmi_shut_down()
            raise NoDevices("amdsmi sees no AMD GPU")
        self._devices = []
        for index, handle in enumerate(handles):
            try:
                name = _text(amdsmi.amdsmi_get_gpu_asic_info(handle).get("market_name") or "")
            except Exception:  # noqa: BLE001
                name = ""
            self._devices.append((index, handle, name or f"AMD GPU {index}"))

    def read(self) -> list[Gpu]:
        smi = self._smi
        readings = []
        for index, handle, name in self._devices:
            vram = smi.amdsmi_get_gpu_vram_usage(handle)  # MiB
            readings.append(Gpu(
                index=index, name=name,
                mem_used=int((_number(vram.get("vram_used")) or 0) * MIB),
                mem_total=int((_number(vram.get("vram_total")) or 0) * MIB),
                util=_read_or_none(lambda h=handle: smi.amdsmi_get_gpu_activity(h)["gfx_activity"]),
                temp=_read_or_none(lambda h=handle: smi.amdsmi_get_temp_metric(
                    h, smi.AmdSmiTemperatureType.EDGE, smi.AmdSmiTemperatureMetric.CURRENT)),
                power=_read_or_none(lambda h=handle: _amdsmi_power(smi.amdsmi_get_power_info(h))),
            ))
        return readings

    def close(self) -> None:
        try:
            self._smi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass


def _amdsmi_power(info: dict[str, Any]) -> float | None:
    for key in ("current_socket_power", "average_socket_power", "socket_power"):
        value = _number(info.get(key))
        if value:
            return value
    return None


class SysfsAmdSource:
    """AMD GPUs through the amdgpu driver's files under /sys/class/drm/card*/device."""

    label = "sysfs"

    def __init__(self, root: Path = DRM_ROOT) -> None:
        if not root.is_dir():
            raise NoDevices(f"{root} does not exist")
        cards = sorted((p for p in root.iterdir() if re.fullmatch(r"card\d+", p.name)),
                       key=lambda p: int(p.name[4:]))
        self._devices = []
        for card in cards:
            device = card / "device"
            if _read_file(device / "vendor") == AMD_VENDOR and (device / "mem_info_vram_total").is_file():
                name = _read_file(device / "product_name") or f"AMD GPU {_read_file(device / 'device') or ''}"
                self._devices.append((len(self._devices), device, name.strip()))
        if not self._devices:
            raise NoDevices(f"no amdgpu card under {root}")

    def read(self) -> list[Gpu]:
        readings = []
        for index, device, name in self._devices:
            hwmon = next(iter(sorted(device.glob("hwmon/hwmon*"))), None)
            power = None
            if hwmon is not None:
                power = _number(_read_file(hwmon / "power1_average"), 1e-6)
                if power is None:
                    power = _number(_read_file(hwmon / "power1_input"), 1e-6)
            readings.append(Gpu(
                index=index, name=name,
                mem_used=int(_number(_read_file(device / "mem_info_vram_used")) or 0),
                mem_total=int(_number(_read_file(device / "mem_info_vram_total")) or 0),
                util=_number(_read_file(device / "gpu_busy_percent")),
                temp=_number(_read_file(hwmon / "temp1_input"), 1e-3) if hwmon is not None else None,
                power=power,
            ))
        return readings

    def close(self) -> None:
        pass


def _read_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


NVIDIA_SOURCES: tuple[Callable[[], GpuSource], ...] = (NvmlSource,)
AMD_SOURCES: tuple[Callable[[], GpuSource], ...] = (PyrsmiSource, AmdsmiSource, SysfsAmdSource)


def open_sources(
    nvidia: tuple[Callable[[], GpuSource], ...] = NVIDIA_SOURCES,
    amd: tuple[Callable[[], GpuSource], ...] = AMD_SOURCES,
) -> tuple[list[GpuSource], list[str]]:
    """The first working source per vendor, and why each one that was tried did not work."""
    sources: list[GpuSource] = []
    reasons: list[str] = []
    for chain in (nvidia, amd):
        for opener in chain:
            label = getattr(opener, "label", getattr(opener, "__name__", "source"))
            try:
                sources.append(opener())
                break
            except ImportError:
                reasons.append(f"{label} not installed")
            except Exception as exc:  # noqa: BLE001 - missing libraries and drivers fail in many ways
                reasons.append(f"{label}: {_first_line(exc)}")
    return sources, reasons


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def host_memory() -> tuple[int, int]:
    """Host RAM (used, total) in bytes; used counts what other programs cannot have."""
    import psutil

    memory = psutil.virtual_memory()
    return int(memory.total - memory.available), int(memory.total)


class GpuSampler:
    """A daemon thread writing one `gpu` event per GPU it can read and one `host` event every interval."""

    def __init__(self, emit: Callable[[Event], Any], interval_s: float = SAMPLE_EVERY_S,
                 open_sources: Callable[[], tuple[list[GpuSource], list[str]]] = open_sources):
        self._emit = emit
        self._interval = interval_s
        self._open = open_sources
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    def start(self) -> GpuSampler:
        self._thread = threading.Thread(target=self._run, name="tunedeck-gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        sources, reasons = self._open()
        if not sources:
            self._emit(Log(level="info", message=f"no GPU data: {'; '.join(reasons) or 'no GPU source'}"))
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                sources = self._sample(sources)
                self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            for source in sources:
                source.close()

    def _sample(self, sources: list[GpuSource]) -> list[GpuSource]:
        """One round of events; a source that starts failing is dropped with a log event."""
        used, total = host_memory()
        readings: list[Gpu] = []
        for source in list(sources):
            try:
                readings.extend(source.read())
            except Exception as exc:  # noqa: BLE001 - a GPU falling off the bus must not end the run
                sources.remove(source)
                source.close()
                self._emit(Log(level="warning", message=f"GPU sampling through {source.label} stopped: "
                               f"{_first_line(exc)}"))
        for reading in readings:
            self._emit(reading)
        self._emit(Host(ram_used=used, ram_total=total))
        self.samples += 1
        return sources


def sampler_wanted() -> bool:
    """Only one process per machine samples: the worker itself, or local rank 0 under a launcher."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("TUNEDECK_NO_GPU_SAMPLING") != "1"


@contextmanager
def gpu_sampling(emit: Callable[[Event], Any], interval_s: float = SAMPLE_EVERY_S) -> Iterator[GpuSampler | None]:
    """Sample GPUs and host RAM into `emit` for the duration of the block (when this process should)."""
    sampler = GpuSampler(emit, interval_s).start() if sampler_wanted() else None
    try:
        yield sampler
    finally:
        if sampler is not None:
            sampler.stop()
