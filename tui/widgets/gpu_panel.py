"""One panel per GPU (memory bar and history, utilisation, temperature, power) and one for host RAM."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from tunedeck.core.stream.events import Gpu, Host

GIB = 1 << 30
BAR_WIDTH = 24


def memory_bar(used: int, total: int, width: int = BAR_WIDTH) -> Text:
    """'████████░░░░ 28.1/32.0 GiB 88%' with the colour rising towards full."""
    share = used / total if total else 0.0
    filled = round(width * min(share, 1.0))
    style = "red" if share >= 0.95 else "yellow" if share >= 0.8 else "green"
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    text.append(f" {used / GIB:.1f}/{total / GIB:.1f} GiB {share:.0%}")
    return text


def reading_line(gpu: Gpu) -> str:
    parts = [f"util {gpu.util:.0f}%" if gpu.util is not None else "util -",
             f"{gpu.temp:.0f}°C" if gpu.temp is not None else "temp -",
             f"{gpu.power:.0f} W" if gpu.power is not None else "power -"]
    return "  ".join(parts)


class GpuPanel(Vertical):
    """The latest reading of one GPU, with its memory over the last minutes as a sparkline."""

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        border: round $primary-darken-2;
        padding: 0 1;
    }
    GpuPanel Sparkline {
        height: 2;
        margin: 0;
    }
    """

    def __init__(self, index: int):
        super().__init__(id=f"gpu-{index}")
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static("", classes="gpu-name")
        yield Static("", classes="gpu-memory")
        yield Sparkline([], classes="gpu-history")
        yield Static("", classes="gpu-reading")

    def show(self, readings: Sequence[Gpu]) -> None:
        if not readings:
            return
        last = readings[-1]
        self.border_title = f"GPU {last.index}"
        self.query_one(".gpu-name", Static).update(last.name)
        self.query_one(".gpu-memory", Static).update(memory_bar(last.mem_used, last.mem_total))
        self.query_one(Sparkline).data = [r.mem_used / GIB for r in readings]
        self.query_one(".gpu-reading", Static).update(reading_line(last))


class HostPanel(Static):
    """Host RAM, and why there is no GPU data when there is none."""

    DEFAULT_CSS = """
    HostPanel {
        height: auto;
        border: round $secondary-darken-2;
        padding: 0 1;
    }
    """

    def show(self, host: Host | None, no_gpu_reason: str | None) -> None:
        self.border_title = "host"
        text = Text()
        if host is not None and host.ram_total:
            text.append("RAM ")
            text.append_text(memory_bar(host.ram_used, host.ram_total))
        else:
            text.append("RAM: no reading yet", style="dim")
        if no_gpu_reason:
            text.append(f"\n{no_gpu_reason}", style="dim")
        self.update(text)
