"""How far --precision bf16 moves a model's detections, as JSON: COCO box and mask AP of the
bf16 detections with the float32 detections of the same model as ground truth.

    python benchmarks/bf16_agreement.py --weights CKPT [--config NAME] IMAGES... [--threads 2] [--json PATH]

Both Predictors keep every detection (score threshold 0); the ground truth is every
float32 detection, and, separately, those scoring >= 0.5 (what `maskrcnn predict` keeps).
Also times both precisions on the same images (one after the other, per image).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info  # noqa: E402

from maskrcnn import Predictor  # noqa: E402
from maskrcnn.evaluation.agreement import agreement_ap  # noqa: E402
from maskrcnn.inference.precision import cpu_flags  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    report = {
        "command": "benchmarks/bf16_agreement.py " + " ".join(sys.argv[1:3]) + f" ... ({len(args.images)} images)",
        "machine": {**machine_info(), "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags},
    }
    predictors = {p: Predictor.from_checkpoint(args.weights, config=args.config, device="cpu", score_threshold=0.0, precision=p)
                  for p in ("fp32", "bf16")}
    outputs: dict[str, list] = {"fp32": [], "bf16": []}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for path in args.images:
        image = np.asarray(Image.open(path).convert("RGB"))
        for precision, predictor in predictors.items():
            start = time.perf_counter()
            outputs[precision].append(predictor(image))
            seconds[precision] += time.perf_counter() - start
    report["seconds_total"] = {k: round(v, 2) for k, v in seconds.items()}
    for threshold in (0.0, 0.5):
        metrics = agreement_ap(outputs["fp32"], outputs["bf16"], threshold)
        report[f"reference_score_at_least_{threshold}"] = {
            "reference_detections": int(sum((o["scores"] >= threshold).sum() for o in outputs["fp32"])),
            **{k: round(v, 4) for k, v in metrics.items() if k.endswith(("_AP", "_AP50", "_AP75"))},
        }
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
