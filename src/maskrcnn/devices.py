"""The one way a device name becomes a torch.device: `auto`, `cpu`, `cuda` or `cuda:N`."""

from __future__ import annotations

import torch

from maskrcnn.errors import UserError

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


class DeviceError(UserError):
    """A requested device that this machine does not have, or a malformed device name."""


def resolve_device(
    requested: str | torch.device | None, *, where: str = "device", local_rank: int | None = None
) -> torch.device:
    """`auto` or None: CUDA when available, else the CPU; `cuda` without CUDA: DeviceError.

    `where` names the setting in messages (e.g. train.device). Under DDP (`local_rank`
    given) a plain `cuda` means this process's own GPU, cuda:LOCAL_RANK.
    """
    if isinstance(requested, torch.device):
        requested = str(requested)
    if requested is None or requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return torch.device("cpu")
    if not requested.startswith("cuda"):
        raise DeviceError(f"{where}: expected {DEVICE_NAMES}, got {requested!r}")
    index_text = requested[len("cuda:"):] if requested.startswith("cuda:") else None
    if requested != "cuda" and not (index_text or "").isdigit():
        raise DeviceError(f"{where}: expected {DEVICE_NAMES}, got {requested!r}")
    if not torch.cuda.is_available():
        raise DeviceError(f"{where}: {requested!r} requested but this PyTorch build sees no CUDA device; use cpu or auto")
    if index_text is None:
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    if int(index_text) >= torch.cuda.device_count():
        raise DeviceError(f"{where}: {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(requested)
