"""Loss curves from the records of a training run's `metrics.jsonl`, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from maskrcnn.io_utils import atomic_write_bytes
from maskrcnn.visualize.figures import figure_png

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


def plot_loss_curve(records: list[dict[str, Any]], path: str | Path, *, title: str = "training") -> bool:
    """Write a PNG: total and per-loss training curves (log scale), validation loss and
    AP when present. Returns False (writes nothing) when there is no training record."""
    train = [r for r in records if r.get("type") == "train" and isinstance(r.get("loss_total"), (int, float))]
    if not train:
        return False
    evals = [r for r in records if r.get("type") == "eval"]

    fig = Figure(figsize=(10, 4.2), dpi=100)
    loss_ax = fig.add_subplot(1, 2, 1)
    iterations = [r["iteration"] for r in train]
    loss_ax.plot(iterations, [r["loss_total"] for r in train], color="black", linewidth=2, label="total")
    for name in LOSS_NAMES:
        points = [(r["iteration"], r[name]) for r in train if isinstance(r.get(name), (int, float))]
        if points:
            xs, ys = zip(*points)
            loss_ax.plot(xs, ys, linewidth=1, label=name.removeprefix("loss_"))
    val_points = [(r["iteration"], r["val_loss_total"]) for r in evals if isinstance(r.get("val_loss_total"), (int, float))]
    if val_points:
        xs, ys = zip(*val_points)
        loss_ax.plot(xs, ys, "o--", color="gray", label="validation total")
    positive = all(r["loss_total"] > 0 for r in train)
    if positive:
        loss_ax.set_yscale("log")
    loss_ax.set_xlabel("iteration")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(f"{title}: losses")
    loss_ax.grid(True, alpha=0.3)
    loss_ax.legend(fontsize=7)

    ap_ax = fig.add_subplot(1, 2, 2)
    drawn = False
    for key, style in (("bbox_AP", "s-"), ("segm_AP", "o-"), ("segm_AP50", "^--")):
        points = [(r["iteration"], r[key]) for r in evals if isinstance(r.get(key), (int, float))]
        if points:
            xs, ys = zip(*points)
            ap_ax.plot(xs, ys, style, label=key)
            drawn = True
    if drawn:
        ap_ax.set_ylim(0, 1)
        ap_ax.legend(fontsize=8)
    else:
        ap_ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ap_ax.transAxes)
    ap_ax.set_xlabel("iteration")
    ap_ax.set_title("validation AP")
    ap_ax.grid(True, alpha=0.3)
    fig.tight_layout()

    atomic_write_bytes(path, figure_png(fig))
    return True

