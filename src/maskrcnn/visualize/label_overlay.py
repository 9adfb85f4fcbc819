"""A label map painted over its image: the overlay of a large image predicted in tiles.

The picture and the label map are already reduced to display size (one integer per
instance, 0 background); each instance gets a translucent colour and an outline, and with
captions (at most MAX_CAPTIONS, none over a crowd) its box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskrcnn.visualize.canvas import instance_colors
from maskrcnn.visualize.overlays import draw_boxes_and_captions

ALPHA = 0.45  # opacity of an instance's colour over the image
MAX_CAPTIONS = 300  # more instances than this: colours and outlines only


def draw_label_overlay(
    picture: np.ndarray, labels: np.ndarray, boxes: np.ndarray, captions: Sequence[str]
) -> np.ndarray:
    """picture (h, w, 3) uint8, labels (h, w) int (k = instance k-1), boxes (N, 4) in picture
    pixels, one caption per instance -> (h, w, 3) uint8."""
    count = len(captions)
    colors = np.concatenate([np.zeros((1, 3), np.uint8), instance_colors(count)])  # (N + 1, 3), 0: background
    painted = labels > 0
    blended = picture.astype(np.float32)
    blended[painted] = blended[painted] * (1 - ALPHA) + colors[labels[painted]] * ALPHA
    edge = np.zeros_like(painted)  # pixels whose neighbour belongs to another instance
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge &= painted
    blended[edge] = colors[labels[edge]]
    overlay = np.rint(blended).astype(np.uint8)
    if 0 < count <= MAX_CAPTIONS:
        overlay = draw_boxes_and_captions(overlay, boxes, list(captions), colors[1:])
    return overlay
