"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend (no display).

  * precision-recall curves, one per IoU threshold 0.50:0.05:0.95, legend with the area
    under each (the COCO analyze() figure, without its error-type curves: those are the
    error breakdown's bars);
  * the error breakdown: count and dAP per error kind, side by side.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from maskrcnn.report.coco_curves import CocoCurves
from maskrcnn.report.error_kinds import ERROR_KINDS, ErrorBreakdown
from maskrcnn.visualize.figures import figure_png

ERROR_COLORS = {
    "cls": "#e6550d", "loc": "#3182bd", "both": "#756bb1", "dupe": "#31a354", "bkg": "#de2d26", "miss": "#636363",
}


def pr_curve_png(curves: CocoCurves, title: str) -> bytes:
    from matplotlib import colormaps

    fig = Figure(figsize=(6.0, 3.7), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    palette = colormaps["viridis"](np.linspace(0.0, 0.92, len(curves.iou_thresholds)))
    for t, (iou, curve, area) in enumerate(zip(curves.iou_thresholds, curves.precision, curves.area_under)):
        ax.plot(curves.recall, curve, color=palette[t], linewidth=2.2 if t in (0, 5) else 1.2,
                label=f"IoU {iou:.2f}: {area:.3f}")
        if t == 0:
            ax.fill_between(curves.recall, curve, color=palette[t], alpha=0.08)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="area under curve",
              title_fontsize=8, frameon=False)
    return figure_png(fig)


def error_breakdown_png(breakdown: ErrorBreakdown, title: str) -> bytes:

    fig = Figure(figsize=(8.0, 3.0), dpi=100, layout="constrained")
    count_ax, delta_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    kinds = list(ERROR_KINDS)
    positions = np.arange(len(kinds))
    colors = [ERROR_COLORS[k] for k in kinds]
    counts = [breakdown.counts[k] for k in kinds]
    deltas = [100.0 * breakdown.delta_ap[k] for k in kinds]
    count_ax.barh(positions, counts, color=colors)
    delta_ax.barh(positions, deltas, color=colors)
    for ax, values, fmt in ((count_ax, counts, "{:d}"), (delta_ax, deltas, "{:.2f}")):
        ax.set_yticks(positions, kinds)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
        top = max(values) if values and max(values) > 0 else 1
        ax.set_xlim(0, top * 1.25)
        for y, v in zip(positions, values):
            ax.text(v + top * 0.02, y, fmt.format(v), va="center", fontsize=8)
    count_ax.set_title("errors (count)", fontsize=10)
    delta_ax.set_title("AP gained if fixed (dAP x 100)", fontsize=10)
    fig.suptitle(title, fontsize=10)
    return figure_png(fig)
