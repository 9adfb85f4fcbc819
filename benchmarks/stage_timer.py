"""Wall time per stage of one Mask R-CNN forward pass (inference), from hooks.

Stages: preprocess (normalize, resize, pad), backbone (trunk), fpn, rpn_head (convs),
rpn_proposals (decode, top-k, NMS), box_pool (RoIAlign 7x7), box_head (fc/conv head and
predictor), box_postprocess (softmax, decode, per-class NMS), mask_pool (RoIAlign 14x14),
mask_head (convs, deconv, 1x1 logits), mask_select (probabilities of the predicted class),
paste (masks into the image, boxes to original pixels), other (the rest: Python glue).

Forward hooks time modules; `detect`, `predict_masks` and `postprocess` are methods, timed
by wrapping them on the instance for the duration of a `StageTimer` block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from torch import nn

STAGES = (
    "preprocess",
    "backbone",
    "fpn",
    "rpn_head",
    "rpn_proposals",
    "box_pool",
    "box_head",
    "box_postprocess",
    "mask_pool",
    "mask_head",
    "mask_select",
    "paste",
    "other",
)


class StageTimer:
    """with StageTimer(model) as timer: model(images)  ->  timer.seconds[stage]."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seconds: dict[str, float] = {}
        self._handles: list[Any] = []
        self._wrapped: list[tuple[Any, str]] = []

    def _add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def _hook_module(self, module: nn.Module | None, stage: str) -> None:
        if module is None:
            return
        starts: list[float] = []

        def before(*_: Any) -> None:
            starts.append(time.perf_counter())

        def after(*_: Any) -> None:
            self._add(stage, time.perf_counter() - starts.pop())

        self._handles.append(module.register_forward_pre_hook(before))
        self._handles.append(module.register_forward_hook(after))

    def _wrap_method(self, owner: Any, name: str, stage: str) -> None:
        method: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._add(stage, time.perf_counter() - start)

        setattr(owner, name, timed)  # an instance attribute shadowing the class's method
        self._wrapped.append((owner, name))

    def __enter__(self) -> "StageTimer":
        model = self.model
        heads = model.roi_heads
        self._hook_module(model.transform, "preprocess")
        self._hook_module(model.backbone.body, "backbone")
        self._hook_module(getattr(model.backbone, "fpn", None), "fpn")
        self._hook_module(model.rpn.head, "rpn_head")
        self._hook_module(model.rpn, "rpn_total")
        self._hook_module(heads.box_pooler, "box_pool")
        self._hook_module(heads.box_head, "box_head")
        self._hook_module(heads.box_predictor, "box_head")
        self._hook_module(heads.mask_pooler, "mask_pool")
        self._hook_module(heads.mask_head, "mask_head")
        self._hook_module(heads.mask_predictor, "mask_head")
        self._hook_module(model, "total")
        self._wrap_method(heads, "detect", "box_postprocess")
        if heads.mask_on:
            self._wrap_method(heads, "predict_masks", "mask_total")
        self._wrap_method(model.transform, "postprocess", "paste")
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        for owner, name in self._wrapped:
            delattr(owner, name)
        self._handles, self._wrapped = [], []

    def stages(self) -> dict[str, float]:
        """Seconds per stage (STAGES order); 'other' is the total minus the named stages."""
        s = dict(self.seconds)
        out = {stage: s.get(stage, 0.0) for stage in STAGES}
        out["rpn_proposals"] = s.get("rpn_total", 0.0) - s.get("rpn_head", 0.0)
        out["mask_select"] = s.get("mask_total", 0.0) - s.get("mask_pool", 0.0) - s.get("mask_head", 0.0)
        out["other"] = s.get("total", 0.0) - sum(v for k, v in out.items() if k != "other")
        out["total"] = s.get("total", 0.0)
        return out
