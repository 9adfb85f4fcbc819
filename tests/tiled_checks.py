"""Invariants every tiled-output test checks: an instance's box and its mask agree.

`assert_box_is_tight_box_of_mask`: for detectors whose pieces carry the tight box of their
mask (the stub detectors of tests/inference/tiling), every merged instance's box is the
tight box of its merged mask, exactly. `assert_box_encloses_mask`: for a real model, whose
box is regressed and whose pasted mask may reach a grid cell past it, the box holds every
mask pixel's centre within that slack.
"""

from __future__ import annotations

import numpy as np


def tight_box(y0: int, x0: int, mask: np.ndarray) -> list[float]:
    """[x1, y1, x2, y2] of the mask's pixels (a (h, w) crop at (y0, x0) of the image)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert rows.size, "an empty mask"
    return [float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1)]


def assert_box_is_tight_box_of_mask(instances) -> None:
    """Every instance (`.box`, `.y0`, `.x0`, `.mask`) has box == the tight box of its mask."""
    wrong = [(k, np.asarray(i.box).tolist(), tight_box(i.y0, i.x0, i.mask)) for k, i in enumerate(instances)
             if np.asarray(i.box).tolist() != tight_box(i.y0, i.x0, i.mask)]
    assert not wrong, f"(instance, box, tight box of its mask): {wrong[:5]}"


def assert_box_encloses_mask(boxes: np.ndarray, masks: list[np.ndarray], cells: int = 28) -> None:
    """(N, 4) boxes and N full-image masks: every mask pixel's centre lies in its box grown
    by one mask-grid cell (box side / `cells`) and one pixel, the paste's reach past a box."""
    for k, (box, mask) in enumerate(zip(np.asarray(boxes, dtype=np.float64), masks)):
        if not mask.any():
            continue
        x1, y1, x2, y2 = box
        slack_x, slack_y = (x2 - x1) / cells + 1.0, (y2 - y1) / cells + 1.0
        ys, xs = np.nonzero(mask)
        inside = (xs + 0.5 >= x1 - slack_x) & (xs + 0.5 <= x2 + slack_x) & (ys + 0.5 >= y1 - slack_y) & (ys + 0.5 <= y2 + slack_y)
        assert inside.all(), f"instance {k}: box {box.tolist()} leaves out mask pixels, e.g. (x, y) = {xs[~inside][0]}, {ys[~inside][0]}"
