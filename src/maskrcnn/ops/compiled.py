"""torchvision's compiled RoIAlign and NMS kernels on CUDA, where they work.

GPU machines usually ship torchvision with CUDA kernels for `roi_align`, `nms` and
`batched_nms`; they are several times faster there than this project's ops, which stay
the reference and the CPU path (torchvision is never a requirement). The first CUDA call
probes once whether torchvision imports and its kernels run; if not, this project's ops
serve. MASKRCNN_OWN_OPS=1 forces this project's ops (for comparisons and the CUDA tests).
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import torch

OWN_OPS_ENV = "MASKRCNN_OWN_OPS"


@functools.cache
def _probe() -> ModuleType | None:
    """torchvision.ops if it imports and its CUDA roi_align and nms run, else None (once)."""
    try:
        import torchvision.ops as tv_ops

        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.5, 0.5, 4.0, 4.0]], device="cuda")
        tv_ops.nms(boxes, torch.tensor([0.9, 0.8], device="cuda"), 0.5)
        rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]], device="cuda")
        tv_ops.roi_align(torch.ones((1, 1, 8, 8), device="cuda"), rois, 2, 1.0, 2, True)
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001 - any failure (missing, CPU-only build, ABI mismatch): our ops
        return None
    return tv_ops


def torchvision_ops(device: torch.device) -> ModuleType | None:
    """torchvision.ops when `device` is CUDA, its kernels work and MASKRCNN_OWN_OPS is unset."""
    if device.type != "cuda" or os.environ.get(OWN_OPS_ENV, "") not in ("", "0"):
        return None
    return _probe()
