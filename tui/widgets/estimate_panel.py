"""The memory estimate on the hyperparameter form: per-GPU terms, total, verdict and the cheapest fix."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tunedeck.core.estimate.memory import GIB, Estimate
from tunedeck.core.estimate.verdict import Suggestion

VERDICT_STYLE = {"fits": "bold green", "tight": "bold yellow", "will not fit": "bold red"}
SHORT_TERMS = (("weights", "weights"), ("lora", "LoRA"), ("gradients", "grads"), ("optimizer", "optimizer"),
               ("activations", "activations"), ("logits", "logits"), ("overhead", "overhead"))


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def estimate_text(estimate: Estimate, verdict: str, fixes: list[Suggestion], seq_source: str) -> Text:
    """Three lines: what the estimate is for, its terms in GiB, and the total with verdict and fix."""
    device = estimate.device
    zero = f"ZeRO-{estimate.zero_stage}" if estimate.zero_stage else "no ZeRO"
    where = "Memory on the host" if device.kind == "cpu" else "Memory per GPU"
    text = Text(f"{where} · {estimate.world_size} x {device.name} ({device.memory / GIB:.1f} GiB) · {zero} · "
                f"{estimate.precision} · batch {estimate.batch_size} x {estimate.seq_len} tokens ({seq_source})\n",
                style="dim")
    for key, label in SHORT_TERMS:
        text.append(f"{label} ", style="dim")
        text.append(_gib(estimate.breakdown[key]))
        if key == "activations":
            other = estimate.activations_without_checkpointing if estimate.gradient_checkpointing \
                else estimate.activations_with_checkpointing
            text.append(f" ({'no ckpt' if estimate.gradient_checkpointing else 'ckpt'} {_gib(other)})", style="dim")
        text.append("  ")
    text.append("GiB\n", style="dim")
    text.append(f"total {estimate.total / GIB:.1f} GiB ({estimate.fraction:.0%}) · ")
    text.append(verdict, style=VERDICT_STYLE.get(verdict, ""))
    if fixes:
        text.append(f" · cheapest fix: {fixes[0].set_args()} -> {fixes[0].estimate / GIB:.1f} GiB ({fixes[0].why})")
    elif verdict != "fits":
        text.append(" · no single change makes it fit", style="red")
    return text


class EstimatePanel(Static):
    """Shows an estimate, or why there is none yet (an invalid form, an unknown model)."""

    DEFAULT_CSS = """
    EstimatePanel {
        height: auto;
        padding: 0 1;
        border: round $primary-darken-2;
        margin: 0 1;
    }
    """

    def show(self, estimate: Estimate, verdict: str, fixes: list[Suggestion], seq_source: str) -> None:
        self.update(estimate_text(estimate, verdict, fixes, seq_source))

    def show_problem(self, message: str) -> None:
        self.update(Text(f"Memory estimate unavailable: {message}", style="yellow"))
