"""The exported ONNX file against `maskrcnn evaluate` of the same weights: COCO AP of both, as JSON.

    python benchmarks/onnx_accuracy.py --weights runs/demo/best.pt --annotations runs/demo/data/val.json \
        --images runs/demo/data/images [--variants exact:none torchvision:none exact:flips] \
        [--keep DIR] [--threads 2] [--json PATH]

For each variant (mask paste : test-time augmentation):
- `maskrcnn export --mask-paste P --test-augment T` of the weights;
- the file run by ONNX Runtime over the data set (export/onnx_results.py) and scored as
  `maskrcnn evaluate --predictions` scores a results file;
- `maskrcnn evaluate --weights --mask-paste P --test-augment T` of the same weights;
- image by image, the file's detections against the Predictor's (the criterion of
  export/compare.py: same label, box IoU >= 0.99, |score difference| <= 1e-3; mask IoU).
With --keep, the ONNX files and results files stay in DIR (named P_T.onnx, P_T_results.json),
so the CLI commands can be rerun on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info

from maskrcnn.commands.evaluate import evaluate_checkpoint, evaluate_predictions_file
from maskrcnn.export.compare import DetectionSet, compare_detections
from maskrcnn.export.onnx_export import export_checkpoint
from maskrcnn.export.onnx_results import onnx_coco_results
from maskrcnn.io_utils import atomic_write_json
from maskrcnn.ops.masks import rle_to_mask

METRICS = ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75", "dsb_score")


def detection_sets(rows: list[dict[str, Any]], image_ids: list[int], size_of: dict[int, tuple[int, int]]) -> dict[int, DetectionSet]:
    """COCO results rows -> one DetectionSet per image (labels are category ids)."""
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_image[int(row["image_id"])].append(row)
    sets = {}
    for image_id in image_ids:
        image_rows = by_image.get(image_id, [])
        height, width = size_of[image_id]
        xywh = np.array([r["bbox"] for r in image_rows], dtype=np.float64).reshape(-1, 4)
        masks = np.stack([rle_to_mask(r["segmentation"]) > 0 for r in image_rows]) if image_rows else np.zeros((0, height, width), bool)
        sets[image_id] = DetectionSet(
            np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            np.array([r["category_id"] for r in image_rows], dtype=np.int64),
            np.array([r["score"] for r in image_rows], dtype=np.float64),
            masks,
        )
    return sets


def parity(reference_rows: list[dict[str, Any]], candidate_rows: list[dict[str, Any]], annotations: Path) -> dict[str, Any]:
    import json

    images = json.loads(annotations.read_text())["images"]
    size_of = {int(img["id"]): (int(img["height"]), int(img["width"])) for img in images}
    ids = sorted(size_of)
    reference, candidate = detection_sets(reference_rows, ids, size_of), detection_sets(candidate_rows, ids, size_of)
    reports = [compare_detections(reference[i], candidate[i]) for i in ids]
    with_detections = [r for r in reports if r.reference > 0]
    return {
        "images": len(reports),
        "predictor_detections": sum(r.reference for r in reports),
        "onnx_detections": sum(r.candidate for r in reports),
        "matched": sum(r.matched for r in reports),
        "images_passing_parity_criterion": sum(r.passes for r in reports),
        "median_of_per_image_median_mask_iou": round(statistics.median(r.median_mask_iou for r in with_detections), 4)
        if with_detections else None,
        "lowest_per_image_median_mask_iou": round(min(r.median_mask_iou for r in with_detections), 4) if with_detections else None,
        "max_score_difference": max((r.max_score_difference for r in reports), default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--variants", nargs="+", default=["exact:none", "torchvision:none", "exact:flips"],
                        help="mask_paste:test_augment pairs")
    parser.add_argument("--keep", default=None, help="folder for the ONNX and results files (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="maskrcnn_onnx_accuracy_"))
    folder.mkdir(parents=True, exist_ok=True)
    annotations = Path(args.annotations)
    report: dict[str, Any] = {
        "command": "benchmarks/onnx_accuracy.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "threads": args.threads,
        "variants": {},
    }
    import onnxruntime

    report["versions"] = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    for variant in args.variants:
        paste, augment = variant.split(":")
        stem = f"{paste}_{augment}"
        start = time.perf_counter()
        exported = export_checkpoint(args.weights, folder / f"{stem}.onnx", mask_paste=paste, test_augment=augment)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        rows = onnx_coco_results(exported.path, annotations, args.images, threads=args.threads)
        onnx_s = time.perf_counter() - start
        results_path = folder / f"{stem}_results.json"
        atomic_write_json(results_path, rows)
        onnx_metrics = evaluate_predictions_file(annotations=annotations, predictions=results_path)
        predictor_metrics, predictor_rows = evaluate_checkpoint(
            annotations=annotations, images=args.images, weights=args.weights, device="cpu", progress=False,
            test_augment=augment, mask_paste=paste,
        )
        report["variants"][variant] = {
            "onnx_file": {"metadata_mask_paste": exported.mask_paste, "metadata_test_augment": exported.test_augment,
                          "mib": round(exported.path.stat().st_size / 2**20, 1)},
            "onnx": {k: round(float(onnx_metrics[k]), 4) for k in METRICS if k in onnx_metrics},
            "maskrcnn_evaluate": {k: round(float(predictor_metrics[k]), 4) for k in METRICS if k in predictor_metrics},
            "difference_onnx_minus_evaluate": {
                k: round(float(onnx_metrics[k]) - float(predictor_metrics[k]), 4)
                for k in METRICS if k in onnx_metrics and k in predictor_metrics
            },
            "parity_per_image": parity(predictor_rows, rows, annotations),
            "seconds": {"export": round(export_s, 1), "onnxruntime_all_images": round(onnx_s, 1),
                        "maskrcnn_evaluate": predictor_metrics.get("eval_time_s")},
        }
        print(f"{variant}: onnx segm AP {onnx_metrics['segm_AP']:.4f}, maskrcnn evaluate {predictor_metrics['segm_AP']:.4f}",
              file=sys.stderr, flush=True)
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
