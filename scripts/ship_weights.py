"""Turn a training run's checkpoint into weights shipped with the package (half precision).

    python scripts/ship_weights.py runs/pretrain/nuclei/model_final.pt nuclei_synthetic [--replace]

Writes src/maskrcnn/weights/NAME.pt: a native checkpoint (config, weights, checksum) whose
floating-point tensors are stored as float16, half the size; loading casts them back to
float32 (`train.init_weights: NAME`, or `--weights` for predict / evaluate). The optimizer
and the rest of the training state are left out. An existing NAME.pt is only replaced
with --replace; the file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from maskrcnn.checkpoints import FORMAT, native_checkpoint, read_checkpoint_file, verify_checksum
from maskrcnn.config import config_from_dict
from maskrcnn.io_utils import atomic_torch_save
from maskrcnn.shipped_weights import SUFFIX, WEIGHTS_DIR


def half_precision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a native checkpoint (model_final.pt of a run)")
    parser.add_argument("name", help="the shipped name, e.g. nuclei_synthetic")
    parser.add_argument("--replace", action="store_true", help="replace an existing shipped file of that name")
    args = parser.parse_args(argv)
    source = Path(args.checkpoint)
    data = read_checkpoint_file(source)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        sys.exit(f"ship_weights: error: {source}: not a maskrcnn checkpoint (expected a run's model_final.pt)")
    verify_checksum(data, source)
    target = WEIGHTS_DIR / f"{args.name}{SUFFIX}"
    if target.exists() and not args.replace:
        sys.exit(f"ship_weights: error: {target} exists; pass --replace to write over it")
    cfg = config_from_dict(data["config"])
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(native_checkpoint(half_precision(data["model"]), cfg, source=str(source)), target)
    print(f"{target}: {target.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
