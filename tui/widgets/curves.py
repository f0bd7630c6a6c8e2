"""Loss and learning-rate curves of a run, drawn with plotext from a RunHistory (downsampled to the width)."""

from __future__ import annotations

from typing import Literal

from textual_plotext import PlotextPlot

from tunedeck.core.stream.history import RunHistory, bucket_means, downsample, smooth

XAxis = Literal["step", "epoch"]
CurveMode = Literal["both", "smoothed", "raw"]
CURVE_MODES: tuple[CurveMode, ...] = ("both", "smoothed", "raw")


def _buckets(widget: PlotextPlot) -> int:
    """Points worth drawing across the plot: braille gives two per cell."""
    return max(20, widget.size.width or 100)


class LossPlot(PlotextPlot):
    """Train loss (raw band and smoothed line) and eval loss points, against steps or epochs."""

    def show(self, history: RunHistory, x_axis: XAxis = "step", mode: CurveMode = "both") -> None:
        plt = self.plt
        plt.clear_figure()
        steps = history.steps
        count = len(steps)
        if count:
            first, last = int(steps["step"][0]), int(steps["step"][-1])
            plt.title(f"loss · {count} steps ({first}-{last}) · x: {x_axis}s · {mode}")
        else:
            plt.title("loss · waiting for the first step")
        plt.xlabel(x_axis)
        xs = steps[x_axis]
        buckets = _buckets(self)
        if count and mode in ("both", "raw"):
            raw_x, raw_y = downsample(xs, steps["loss"], buckets)
            plt.plot(raw_x, raw_y, marker="braille", color="gray" if mode == "both" else "cyan", label="train")
        if count and mode in ("both", "smoothed"):
            if count > 2 * buckets:
                mean_x, mean_y = bucket_means(xs, steps["loss"], buckets)
            else:
                mean_x, mean_y = list(xs), list(steps["loss"])
            plt.plot(mean_x, smooth(mean_y), marker="braille", color="cyan", label="train (smoothed)")
        if history.evals:
            eval_x = [getattr(e, x_axis) for e in history.evals]
            plt.scatter(eval_x, [e.eval_loss for e in history.evals], marker="●", color="orange", label="eval")
        self.refresh()


class LearningRatePlot(PlotextPlot):
    """The learning-rate schedule as it was applied."""

    def show(self, history: RunHistory, x_axis: XAxis = "step") -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title("learning rate")
        steps = history.steps
        if len(steps):
            lr_x, lr_y = downsample(steps[x_axis], steps["lr"], _buckets(self))
            plt.plot(lr_x, lr_y, marker="braille", color="green")
        self.refresh()
