"""The CUDA inference path on a GPU machine, as JSON: parity and speed.

    python benchmarks/cuda_check.py [--repeats 10] [--json PATH] [--device cuda]

(`--device cpu --repeats 1` runs the same code on the CPU as a smoke run.)

No GPU takes part in CI; this is run by hand where one is lent (benchmarks/cuda_check.sh
runs it with the CUDA tests, a training run and a DDP run). For the R50-FPN parity
weights (../shared/parity) and the three parity images, on the GPU:

- parity of our Predictor (score threshold 0, all 100 detections) against torchvision's
  recorded CPU answers, with the criterion of ../shared/parity/README.md, once with
  cuDNN's TF32 convolutions off (exact float32) and once with PyTorch's default (on);
- latency per image (median of --repeats after two warm-ups, synchronised, outputs
  brought back to numpy) for: our Predictor in float32 (TF32 off and on) and in bf16
  autocast; torchvision's maskrcnn_resnet50_fpn with the same weights, where torchvision
  is installed (it is on the lent GPU machine, not here);
- agreement of bf16 with float32 as box / mask AP (evaluation.agreement).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import PARITY, finish_report, machine_info  # noqa: E402
from runtimes import parity_weights  # noqa: E402

from maskrcnn.evaluation.agreement import agreement_ap  # noqa: E402
from maskrcnn.export.compare import DetectionSet, compare_detections  # noqa: E402
from maskrcnn.inference.predictor import Predictor  # noqa: E402

IMAGES = ("astronaut", "chelsea", "coffee")
MODEL = "maskrcnn_resnet50_fpn"
Prediction = dict[str, np.ndarray]


def read_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    return np.asarray(Image.open(PARITY / "images" / f"{name}.png").convert("RGB"))


def recorded_answer(expected: dict[str, Any]) -> DetectionSet:
    """torchvision's recorded detections of one image (masks unpacked to (N, H, W) bool)."""
    n, _, width = expected["masks_shape"]
    masks = np.unpackbits(expected["masks_packed"].numpy(), axis=-1, count=width).astype(bool)
    return DetectionSet(expected["boxes"].numpy(), expected["labels"].numpy(), expected["scores"].numpy(), masks[:n])


def as_set(prediction: Prediction) -> DetectionSet:
    return DetectionSet(prediction["boxes"], prediction["labels"], prediction["scores"], prediction["masks"])


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_latency(run: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and fastest seconds of `repeats` synchronised calls after two warm-ups."""
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 4), "fastest_s": round(min(times), 4)}


def torchvision_runner(weights: Path) -> Callable[[np.ndarray], Prediction] | None:
    """torchvision's model with the same weights on the GPU, returning what our Predictor returns."""
    try:
        from torchvision.models.detection import maskrcnn_resnet50_fpn
    except Exception as error:  # noqa: BLE001 - not installed, or its compiled ops do not load
        print(f"torchvision not usable here ({type(error).__name__}: {error}); its timing is left out")
        return None
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.0)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model = model.cuda().eval()

    @torch.inference_mode()
    def run(image: np.ndarray) -> Prediction:
        tensor = torch.from_numpy(image).cuda().permute(2, 0, 1).float().div(255)
        (out,) = model([tensor])
        return {
            "boxes": out["boxes"].cpu().numpy(), "labels": out["labels"].cpu().numpy(),
            "scores": out["scores"].cpu().numpy(), "masks": (out["masks"][:, 0] > 0.5).cpu().numpy(),
        }

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of this script")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("cuda_check: this PyTorch build sees no CUDA device")
    report: dict[str, Any] = {"machine": machine_info(), "model": MODEL, "repeats": args.repeats}
    expected_all = torch.load(PARITY / MODEL / "expected.pt", weights_only=False)
    images = {name: read_image(name) for name in IMAGES}
    with tempfile.TemporaryDirectory() as folder:
        weights = parity_weights(Path(folder))
        ours = Predictor.from_checkpoint(weights, config=MODEL, device=args.device, score_threshold=0.0)
        ours_bf16 = Predictor.from_checkpoint(weights, config=MODEL, device=args.device, score_threshold=0.0, precision="bf16")
        runners: dict[str, Callable[[np.ndarray], Prediction]] = {"predictor_fp32": ours, "predictor_bf16": ours_bf16}
        torchvision_run = torchvision_runner(weights) if args.device.startswith("cuda") else None
    if torchvision_run is not None:
        runners["torchvision_fp32"] = torchvision_run

    per_image: dict[str, Any] = {}
    fp32_predictions, bf16_predictions = [], []
    for name, image in images.items():
        expected = recorded_answer(expected_all[f"{name}.png"])
        entry: dict[str, Any] = {"image_hw": list(image.shape[:2])}
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            suffix = "_tf32" if tf32 else ""
            for runner_name, run in runners.items():
                if tf32 and runner_name == "predictor_bf16":
                    continue  # TF32 does not touch bfloat16 kernels
                prediction = run(image)
                parity = compare_detections(expected, as_set(prediction))
                entry[f"{runner_name}{suffix}"] = {
                    "parity_with_recorded_cpu": parity.summary(), "passes": parity.passes,
                    **median_latency(lambda: run(image), args.repeats),
                }
                if not tf32 and runner_name == "predictor_fp32":
                    fp32_predictions.append(prediction)
                if runner_name == "predictor_bf16":
                    bf16_predictions.append(prediction)
                print(name, f"{runner_name}{suffix}", entry[f"{runner_name}{suffix}"], flush=True)
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's default
        per_image[name] = entry
    report["per_image"] = per_image
    report["bf16_agreement_with_fp32"] = {
        key: round(value, 4) for key, value in agreement_ap(fp32_predictions, bf16_predictions, 0.5).items()
        if key in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")
    }
    if torch.cuda.is_available():
        report["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
