"""Per-layer output shapes and parameter counts of any nn.Module (`maskrcnn analyze params`).

One row per layer: every leaf module and every module that holds parameters of its own.
Output shapes come from forward hooks during one forward pass on an example input.
"Frozen" counts parameters with requires_grad=False plus the affine weight and bias of
FrozenBatchNorm2d (stored as buffers, but parameters of the trained network); running
statistics are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from maskrcnn.model.norm import FrozenBatchNorm2d

StageFn = Callable[[str], str]
ForwardFn = Callable[[nn.Module, Any], Any]


@dataclass
class ParamRow:
    name: str  # dotted module name, e.g. "backbone.body.layer1.0.conv1"
    kind: str  # module class, e.g. "Conv2d"
    output_shape: str  # e.g. "1x64x200x304"; "-" when the layer did not run
    calls: int  # how often the layer ran in the forward pass
    trainable: int
    frozen: int
    stage: str

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


@dataclass
class StageTotal:
    stage: str
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


def top_level_stage(name: str) -> str:
    """Default grouping: the first component of the module name."""
    return name.split(".")[0] if name else "(root)"


def own_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameters held directly by `module` (not its children)."""
    trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
    if isinstance(module, FrozenBatchNorm2d):
        frozen += module.weight.numel() + module.bias.numel()
    return trainable, frozen


def describe_output(value: Any, limit: int = 4) -> str:
    """Shapes of a forward output: tensors as 1x64x56x56, containers summarized."""
    if isinstance(value, Tensor):
        return "x".join(str(d) for d in value.shape) if value.dim() else "scalar"
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        parts = [describe_output(v, limit) for v in value[:limit]]
        more = f", +{len(value) - limit}" if len(value) > limit else ""
        return "[" + ", ".join(parts) + more + "]"
    return type(value).__name__


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def call_module(module: nn.Module, example_input: Any) -> Any:
    """module(*example_input) for a tuple, module(example_input) otherwise."""
    if isinstance(example_input, tuple):
        return module(*example_input)
    return module(example_input)


def param_table(
    module: nn.Module,
    example_input: Any,
    *,
    forward: ForwardFn | None = None,
    stage_of: StageFn = top_level_stage,
) -> list[ParamRow]:
    """Run `module` once on `example_input` (no grad, eval mode) and list its layers.

    `example_input`: a tensor (or any single argument, e.g. a list of images), or a tuple of
    positional arguments. `forward(module, example_input)` replaces the plain call when given.
    """
    layers = [
        (name, m)
        for name, m in module.named_modules()
        if len(list(m.children())) == 0 or sum(own_counts(m)) > 0
    ]
    seen: dict[str, tuple[int, str, bool]] = {}  # name -> (calls, first shape, shapes differ)

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            shape = describe_output(output)
            calls, first, differs = seen.get(name, (0, shape, False))
            seen[name] = (calls + 1, first, differs or shape != first)

        return hook

    handles = [m.register_forward_hook(make_hook(name)) for name, m in layers]
    try:
        with torch.no_grad(), eval_mode(module):
            (forward or call_module)(module, example_input)
    finally:
        for handle in handles:
            handle.remove()

    rows = []
    for name, m in layers:
        trainable, frozen = own_counts(m)
        calls, shape, differs = seen.get(name, (0, "-", False))
        if calls == 0 and trainable + frozen == 0:
            continue  # a weightless module that did not run (e.g. a pooler the pass skipped)
        if differs:
            shape += " (first of several)"
        rows.append(ParamRow(name or "(root)", type(m).__name__, shape, calls, trainable, frozen, stage_of(name)))
    return rows


def stage_totals(rows: list[ParamRow]) -> list[StageTotal]:
    """Sum of the rows per stage, in order of first appearance."""
    totals: dict[str, StageTotal] = {}
    for row in rows:
        total = totals.setdefault(row.stage, StageTotal(row.stage, 0, 0))
        total.trainable += row.trainable
        total.frozen += row.frozen
    return list(totals.values())


def overall_total(rows: list[ParamRow]) -> StageTotal:
    return StageTotal("total", sum(r.trainable for r in rows), sum(r.frozen for r in rows))


def mask_rcnn_stage(name: str) -> str:
    """Stages of a Mask R-CNN: backbone.body.{stem,layer1..4}, backbone.fpn, rpn, roi_heads.<part>."""
    parts = name.split(".")
    if parts[0] == "backbone" and len(parts) > 2 and parts[1] == "body":
        return "backbone.body.stem" if parts[2] in ("conv1", "bn1", "relu", "maxpool", "stage1") else ".".join(parts[:3])
    if parts[0] in ("backbone", "roi_heads") and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0] or "(root)"


def table_to_json(rows: list[ParamRow]) -> dict[str, Any]:
    return {
        "layers": [{**asdict(r), "total": r.total} for r in rows],
        "stages": [{**asdict(s), "total": s.total} for s in stage_totals(rows)],
        "total": {**asdict(overall_total(rows)), "total": overall_total(rows).total},
    }
