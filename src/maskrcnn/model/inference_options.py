"""What one inference call may ask of the model, passed to `MaskRCNN.forward` as an argument.

The model's own settings (its resize, its proposal and detection budgets, how it pastes
masks) apply unless a caller asks otherwise here; nothing is changed on the model's parts.
Tiled prediction asks for tiles at a fixed scale, budgets grown with the tile's area and
masks left unpasted (it crops them itself); the evaluation of dense images asks for
unpasted masks, which it pastes a few at a time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectionBudgets:
    """How many boxes survive each inference step, per image."""

    pre_nms_top_n: int  # RPN proposals per feature level before NMS
    post_nms_top_n: int  # RPN proposals per image after NMS
    detections_per_img: int  # final detections per image


@dataclass(frozen=True)
class InferenceOptions:
    resize_scale: float | None = None  # resize every image by exactly this factor (None: the model's resize)
    paste_masks: bool = True  # False: masks stay (N, M, M) grids in their boxes; boxes still in image pixels
    budgets: DetectionBudgets | None = None  # None: the model's own (model.rpn.*_test, roi_heads.detections_per_img)


DEFAULT_OPTIONS = InferenceOptions()
