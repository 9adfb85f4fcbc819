"""What the checkpoint checksum costs: SHA-256 over a model's weights vs reading the file.

    python benchmarks/checksum.py [--config maskrcnn_resnet50_fpn] [--repeats 3]

Saves the config's randomly initialized model as a native checkpoint in a temporary
folder, then times (best and median of --repeats): `torch.load` of the file, the
checksum (`maskrcnn.checkpoints.state_dict_sha256`), and `load_model` (read, verify,
build, load). Prints JSON with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import machine_info, summarize_times, time_runs  # noqa: E402

from maskrcnn.checkpoints import load_model, save_model, state_dict_sha256  # noqa: E402
from maskrcnn.config import load_config  # noqa: E402
from maskrcnn.model.build import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="maskrcnn_resnet50_fpn")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    model = build_model(cfg.model)
    weights = model.state_dict()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        save_model(path, model, cfg)
        report = {
            "config": args.config,
            "weights_mb": round(sum(v.numel() * v.element_size() for v in weights.values()) / 1e6, 1),
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "torch_load_s": summarize_times(time_runs(lambda: torch.load(path, weights_only=True), args.repeats)),
            "sha256_s": summarize_times(time_runs(lambda: state_dict_sha256(weights), args.repeats)),
            "load_model_s": summarize_times(time_runs(lambda: load_model(path), args.repeats)),
            "machine": machine_info(),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
