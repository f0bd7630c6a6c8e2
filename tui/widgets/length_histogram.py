"""A histogram of per-sample token lengths, with the cutoff drawn as a vertical line."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot


class LengthHistogram(PlotextPlot):
    """Token lengths as the run will see them; samples right of the red line are cut."""

    def show(self, lengths: Sequence[int], cutoff: int) -> None:
        plt = self.plt
        plt.clear_figure()
        over = sum(1 for length in lengths if length > cutoff)
        plt.title(f"token lengths · {len(lengths)} samples · cutoff {cutoff} · {over} over")
        plt.xlabel("tokens")
        if lengths:
            right = max(max(lengths), cutoff) * 1.05
            plt.hist(list(lengths), bins=min(60, max(10, len(set(lengths)))), color="cyan")
            plt.xlim(0, right)
        plt.vline(cutoff, color="red")
        self.refresh()
