"""Time and size of `maskrcnn evaluate --report` at 1,000 images, no model needed.

A seeded synthetic data set (rectangles and ellipses of 3 classes on gradient backgrounds,
written as PNG) and predictions made by perturbing its ground truth: most objects found
with a small shift, some shifted a lot (localisation errors), some with a wrong class,
some found twice, some missed, plus detections on empty background; scores random, higher
for the good ones. Then `write_report` runs on it and the script prints JSON: seconds per
stage, files, total bytes, the index page's bytes, error counts.

    .venv/bin/python benchmarks/report.py --images 1000 [--image-size 128] [--image-pages 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import machine_info  # noqa: E402

CLASSES = ["rectangle", "ellipse", "blob"]


def _mask(kind: int, x: int, y: int, w: int, h: int, size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    if kind == 0:
        mask[y : y + h, x : x + w] = True
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        cx, cy = x + w / 2, y + h / 2
        mask = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1.0
        if kind == 2:
            mask &= (xx + yy) % 17 > 2  # a ragged shape
    return mask


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0.0, 0.0, 1.0, 1.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def make_data(folder: Path, num_images: int, size: int, seed: int) -> tuple[Path, Path, Path]:
    """(annotations JSON, predictions JSON, images folder)."""
    rng = np.random.default_rng(seed)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        # A smooth two-colour gradient with mild noise, as photographs and the demo's shapes are
        # (pure per-pixel noise would make every picture several times larger than usual).
        corner_a, corner_b = rng.integers(20, 120, 3), rng.integers(20, 120, 3)
        ramp = np.linspace(0.0, 1.0, size)[:, None, None] * np.ones((1, size, 1))
        pixels = (corner_a * (1 - ramp) + corner_b * ramp + rng.normal(0, 4, (size, size, 3))).clip(0, 255)
        pixels = pixels.astype(np.uint8)
        for _ in range(int(rng.integers(3, 11))):
            kind = int(rng.integers(0, 3))
            w, h = (int(v) for v in rng.integers(size // 10, size // 3, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            mask = _mask(kind, x, y, w, h, size)
            if not mask.any():
                continue
            pixels[mask] = rng.integers(100, 255, 3, dtype=np.uint8)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": kind + 1,
                                "bbox": _bbox(mask), "area": float(mask.sum()), "iscrowd": 0,
                                "segmentation": _rle(mask)})
            outcome = rng.random()
            if outcome < 0.12:
                continue  # missed
            dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
            label, score = kind, float(rng.uniform(0.5, 1.0))
            if outcome < 0.22:  # poorly localised
                dx, dy = int(w * 0.6), int(h * 0.5)
                score = float(rng.uniform(0.2, 0.8))
            elif outcome < 0.30:  # wrong class
                label, score = (kind + 1) % 3, float(rng.uniform(0.2, 0.8))
            pred = np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
            results.append({"image_id": image_id, "category_id": label + 1, "bbox": _bbox(pred), "score": score,
                            "segmentation": _rle(pred)})
            if rng.random() < 0.08:  # a duplicate, lower score
                results.append({**results[-1], "score": score * 0.7})
        for _ in range(int(rng.poisson(1.0))):  # detections on background
            w, h = (int(v) for v in rng.integers(size // 12, size // 5, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            pred = _mask(0, x, y, w, h, size)
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)), "bbox": _bbox(pred),
                            "score": float(rng.uniform(0.05, 0.7)), "segmentation": _rle(pred)})
        name = f"synthetic_{image_id:05d}.png"
        Image.fromarray(pixels).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "height": size, "width": size})
    gt_path, pred_path = folder / "gt.json", folder / "predictions.json"
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    pred_path.write_text(json.dumps(results))
    return gt_path, pred_path, images_dir


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--image-pages", type=int, default=None, help="pictures and pages (None: ReportConfig's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=None, help="write the data and report here instead of a temporary folder")
    args = parser.parse_args()

    from maskrcnn.config import ReportConfig
    from maskrcnn.data.coco import load_coco_gt
    from maskrcnn.evaluation.prediction_files import load_prediction_file
    from maskrcnn.report import ReportInputs, write_report

    settings = ReportConfig() if args.image_pages is None else ReportConfig(image_pages=args.image_pages)
    with tempfile.TemporaryDirectory(prefix="maskrcnn-report-bench-") as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        started = time.perf_counter()
        gt_path, pred_path, images_dir = make_data(folder / "data", args.images, args.image_size, args.seed)
        data_seconds = time.perf_counter() - started
        started = time.perf_counter()
        coco_gt, _ = load_coco_gt(gt_path)
        results = load_prediction_file(pred_path, gt_path, coco_gt)
        load_seconds = time.perf_counter() - started
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = write_report(ReportInputs(coco_gt, results, images_dir), folder / "report", settings=settings)
        report_seconds = time.perf_counter() - started
        report_cpu_seconds = time.process_time() - cpu_started
        num_files, num_bytes = folder_size(folder / "report")
        numbers = summary.numbers
        print(json.dumps({
            "benchmark": "report",
            "machine": machine_info(),
            "images": args.images,
            "image_size": args.image_size,
            "objects": numbers["num_objects"],
            "detections": numbers["num_detections"],
            "image_pages": min(settings.image_pages, args.images),
            "write_report_cpu_seconds": round(report_cpu_seconds, 2),
            "cpu_seconds_per_stage": summary.cpu_seconds,
            "seconds": {"make_data": round(data_seconds, 2), "load_results": round(load_seconds, 2),
                        "write_report": round(report_seconds, 2), **summary.seconds},
            "report_files": num_files,
            "report_megabytes": round(num_bytes / 2**20, 2),
            "index_html_kilobytes": round((folder / "report" / "index.html").stat().st_size / 1024, 1),
            "largest_gallery_page_kilobytes": round(max(p.stat().st_size for p in (folder / "report").glob(
                "gallery-*.html")) / 1024, 1),
            "segm_error_counts": numbers["errors"]["segm"]["counts"],
            "segm_delta_ap": {k: round(v, 4) for k, v in numbers["errors"]["segm"]["delta_ap"].items()},
            "metrics": {k: round(v, 4) for k, v in numbers["metrics"].items()},
        }, indent=2))


if __name__ == "__main__":
    main()
