"""Inference precision: float32 (the default) or bfloat16 on CPUs that have bfloat16 instructions.

    check_precision("bf16", torch.device("cpu"))   # PrecisionError on a CPU without them
    keep_heads_float32(model)                      # the layers whose outputs rank and decode boxes
    with precision_context("bf16", device): model([image])

bf16 runs the model under `torch.autocast(dtype=torch.bfloat16)`: the convolutions of a
model prepared for inference run oneDNN's bfloat16 kernels (AMX / AVX512_BF16 on the CPU)
with weights converted and reordered once (model.inference_opt.InferenceConv2d), the
box-head and mask-head matmuls run in bfloat16. What decides which boxes survive stays
float32: the RPN objectness and box-delta 1x1 convs, the class scores and box deltas of
the box predictor (`keep_heads_float32`), box decoding, NMS, score thresholds, RoIAlign
and mask pasting. On a CPU without those instructions PyTorch emulates bfloat16 and it is
several times slower than float32 (27 s against 2 s on an AVX2 CPU), so it is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from maskrcnn.errors import UserError

PRECISIONS = ("fp32", "bf16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # either gives native bfloat16 matmuls / convs


class PrecisionError(UserError):
    """A precision that is unknown or that this machine cannot run fast."""


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def has_bf16_instructions(flags: set[str] | None = None) -> bool:
    return any(flag in (cpu_flags() if flags is None else flags) for flag in BF16_CPU_FLAGS)


def check_precision(precision: str, device: torch.device, flags: set[str] | None = None) -> None:
    """Raise PrecisionError for an unknown precision, or bf16 where it would not be fast."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "bf16":
        return
    if device.type == "cpu" and not has_bf16_instructions(flags):
        raise PrecisionError(
            "--precision bf16: this CPU has no bfloat16 instructions (no avx512_bf16 or amx_bf16 in "
            "/proc/cpuinfo), so bfloat16 would be several times slower than fp32; use --precision fp32"
        )
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("--precision bf16: this GPU does not support bfloat16; use --precision fp32")


class _Float32Forward(nn.Module):
    """Runs the layer in float32 even inside a bfloat16 autocast region."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())  # type: ignore[misc]


class Float32Conv2d(_Float32Forward, nn.Conv2d):
    pass


class Float32Linear(_Float32Forward, nn.Linear):
    pass


def keep_heads_float32(model: nn.Module) -> nn.Module:
    """Make the layers whose outputs rank and place boxes compute in float32, in place.

    RPN objectness / deltas and the box predictor's class scores / deltas: cheap layers
    (1x1 convs, 1024-wide linears) whose bfloat16 rounding would create ties among
    objectness scores and move boxes. Names, parameters and outputs outside autocast
    are unchanged (only the class of those modules changes).
    """
    swaps = {nn.Conv2d: Float32Conv2d, nn.Linear: Float32Linear}
    rpn_head = getattr(getattr(model, "rpn", None), "head", None)
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    for parent, names in ((rpn_head, ("cls_logits", "bbox_pred")), (predictor, ("cls_score", "bbox_pred"))):
        for name in names:
            layer = getattr(parent, name, None) if parent is not None else None
            if layer is not None and type(layer) in swaps:
                layer.__class__ = swaps[type(layer)]
    return model


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """The region a forward pass runs in: nothing for fp32, bfloat16 autocast for bf16."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
