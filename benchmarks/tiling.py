"""Tiled prediction of large generated images: peak memory, time per megapixel, accuracy. Prints JSON.

    # memory and time: a generated N x N RGB tiled TIFF per size (streamed to disk, never
    # held whole), each predicted in a fresh process (its own peak RSS), writing what
    # `maskrcnn predict --tile --label-image` writes (COCO RLEs, label TIFF, overlay)
    python benchmarks/tiling.py memory --weights runs/demo/model_final.pt --sizes 10000 30000

    # accuracy: a mosaic of C x C shapes images (128 px, the demo model's training size);
    # AP of tiled prediction (tiles cut through the objects) against AP of the same objects
    # predicted one 128-px image at a time ("small crops"), against the whole mosaic in one
    # pass (same context, no seams), with the tile grid shifted, with class-agnostic linking
    python benchmarks/tiling.py accuracy --weights runs/demo/model_final.pt --cells 8 --tile 384 --overlap 96

The images are shapes_demo-like: 128-px cells of generated shapes (a pool of 64 cells,
repeated), the mosaic offset so that cell borders and tile borders do not coincide.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info, max_rss_bytes, mib  # noqa: E402

CELL = 128
POOL = 64
SEED = 11


def cell_pool(seed: int = SEED, count: int = POOL) -> list[tuple[np.ndarray, list[tuple[int, np.ndarray]]]]:
    from maskrcnn.data.shapes import render_shapes_image

    return [render_shapes_image(seed, i, CELL, 1, 4) for i in range(count)]


def cell_index(row: int, col: int, count: int) -> int:
    return (row * 7 + col * 13 + (row * col) % 5) % count


def mosaic_region(pool, y0: int, y1: int, x0: int, x1: int, offset: tuple[int, int]) -> np.ndarray:
    """Rows y0..y1, columns x0..x1 of the endless mosaic (cell (r, c) starts at r*CELL - offset)."""
    out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    oy, ox = offset
    for r in range((y0 + oy) // CELL, (y1 - 1 + oy) // CELL + 1):
        for c in range((x0 + ox) // CELL, (x1 - 1 + ox) // CELL + 1):
            pixels = pool[cell_index(r, c, len(pool))][0]
            cy, cx = r * CELL - oy, c * CELL - ox
            ry0, ry1, rx0, rx1 = max(y0, cy), min(y1, cy + CELL), max(x0, cx), min(x1, cx + CELL)
            out[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0] = pixels[ry0 - cy : ry1 - cy, rx0 - cx : rx1 - cx]
    return out


def write_mosaic_tiff(path: Path, size: int, offset: tuple[int, int] = (61, 37)) -> dict[str, Any]:
    """An uncompressed tiled (256 x 256) RGB TIFF of size x size, written tile by tile."""
    import tifffile

    if path.is_file():
        with tifffile.TiffFile(path) as tif:
            if tif.pages.first.shape[:2] == (size, size):
                return {"path": str(path), "generated_s": 0.0, "reused": True}
    pool = cell_pool()
    start = time.perf_counter()
    step = 256

    def tiles():
        for y in range(0, size, step):
            for x in range(0, size, step):
                region = mosaic_region(pool, y, min(y + step, size), x, min(x + step, size), offset)
                yield np.pad(region, ((0, step - region.shape[0]), (0, step - region.shape[1]), (0, 0)))

    tmp = path.with_suffix(".tmp.tif")
    tifffile.imwrite(tmp, tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(step, step),
                     photometric="rgb", bigtiff=size * size * 3 > 2**31)
    os.replace(tmp, path)
    return {"path": str(path), "generated_s": round(time.perf_counter() - start, 1), "reused": False}


# ---------------------------------------------------------------------------------------
# memory: one image per process
# ---------------------------------------------------------------------------------------


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Predict one image in tiles as `maskrcnn predict --tile --label-image` does; report time and memory."""
    import torch

    torch.set_num_threads(args.threads)
    from maskrcnn.inference.predict import predict_one_tiled
    from maskrcnn.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(args.weights, device="cpu", score_threshold=args.score_threshold)
    rss_model = max_rss_bytes()
    out = Path(args.workdir) / "out"
    start = time.perf_counter()
    if args.band_rows:  # only the top `band_rows` rows of the image (all its width), for a time budget
        rows = predict_band(predictor, args, out)
    else:
        rows = predict_one_tiled(
            predictor, Path(args.image), index=0, tile=args.tile, overlap=args.overlap, scale=1.0, intensity="auto",
            progress=True, overlay_path=out / "overlay.png", label_path=out / "labels.tif",
        )
    seconds = time.perf_counter() - start
    from maskrcnn.io_utils import atomic_write_json

    atomic_write_json(out / "predictions.json", rows, indent=None)
    import tifffile

    from maskrcnn.tiling.grid import tile_grid

    with tifffile.TiffFile(args.image) as tif:
        height, width = tif.pages.first.shape[:2]
    file_size = f"{width}x{height}"
    height = min(height, args.band_rows or height)
    megapixels = height * width / 1e6
    return {
        "image_file": file_size,
        "predicted_region": f"{width}x{height}",
        "megapixels": round(megapixels, 1),
        "tiles": len(tile_grid(height, width, args.tile, args.overlap).tiles),
        "instances": len(rows),
        "seconds": round(seconds, 1),
        "seconds_per_megapixel": round(seconds / megapixels, 3),
        "peak_rss_mib": mib(max_rss_bytes()),
        "rss_after_loading_model_mib": mib(rss_model),
        "predictions_json_mib": mib((out / "predictions.json").stat().st_size),
    }


def predict_band(predictor: Any, args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """predict_one_tiled on the top args.band_rows rows of the image, read from the full file."""
    from maskrcnn.data.image_source import ImageSource, open_image_source
    from maskrcnn.inference.predict import coco_records
    from maskrcnn.tiling.outputs import draw_overlay, save_overlay, write_label_image

    full = open_image_source(args.image)
    band = ImageSource(full.raw, full.window, f"{args.image} (top {args.band_rows} rows)")
    band.height = min(full.height, args.band_rows)
    result = predictor.predict_tiled(band, tile=args.tile, overlap=args.overlap, progress=True)
    rows = coco_records({"boxes": result.boxes, "labels": result.labels, "scores": result.scores}, image_id=1,
                        file_name=str(args.image), category_id_of=predictor.category_id, rles=result.rles())
    save_overlay(out / "overlay.png", draw_overlay(band, result, predictor.class_names, 2048))
    write_label_image(result, out / "labels.tif")
    full.close()
    return rows


def memory(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        image = workdir / f"mosaic_{size}.tif"
        made = write_mosaic_tiff(image, size)
        command = [sys.executable, __file__, "_one", "--weights", args.weights, "--image", str(image),
                   "--tile", str(args.tile), "--overlap", str(args.overlap), "--threads", str(args.threads),
                   "--workdir", str(workdir / f"run_{size}"), "--score-threshold", str(args.score_threshold),
                   "--band-rows", str(args.band_rows if size > args.band_above else 0)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["image_file_mib"] = mib(image.stat().st_size)
        result["image_generated_s"] = made["generated_s"]
        results.append(result)
        print(json.dumps(result), file=sys.stderr)
    return {"results": results}


# ---------------------------------------------------------------------------------------
# accuracy: tiled vs small crops on a mosaic with ground truth
# ---------------------------------------------------------------------------------------


def mosaic_with_truth(cells: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A (cells*128)^2 image of distinct shapes images and its instances (kind, y0, x0, mask crop)."""
    from maskrcnn.data.shapes import render_shapes_image

    side = cells * CELL
    image = np.zeros((side, side, 3), dtype=np.uint8)
    truth = []
    for r in range(cells):
        for c in range(cells):
            pixels, instances = render_shapes_image(seed, r * cells + c, CELL, 1, 4)
            image[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = pixels
            for kind, mask in instances:
                ys, xs = np.nonzero(mask)
                y0, x0 = int(ys.min()), int(xs.min())
                crop = mask[y0 : ys.max() + 1, x0 : xs.max() + 1]
                truth.append({"kind": kind, "y0": r * CELL + y0, "x0": c * CELL + x0, "mask": crop})
    return image, truth


def coco_ap(truth, predictions, side: int, category_of_kind) -> dict[str, float]:
    """Box and mask AP / AP50 of `predictions` (label, score, box, y0, x0, mask) on one image."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from maskrcnn.tiling.instances import crop_to_rle

    gt = {"images": [{"id": 1, "height": side, "width": side}], "categories": [{"id": i} for i in (1, 2, 3)],
          "annotations": []}
    for k, t in enumerate(truth):
        h, w = t["mask"].shape
        gt["annotations"].append({"id": k + 1, "image_id": 1, "category_id": category_of_kind(t["kind"]),
                                  "segmentation": crop_to_rle(t["mask"], t["y0"], t["x0"], side, side),
                                  "area": float(t["mask"].sum()), "bbox": [t["x0"], t["y0"], w, h], "iscrowd": 0})
    dets = [{"image_id": 1, "category_id": int(p["label"]), "score": float(p["score"]),
             "bbox": [float(p["box"][0]), float(p["box"][1]), float(p["box"][2] - p["box"][0]), float(p["box"][3] - p["box"][1])],
             "segmentation": crop_to_rle(p["mask"], p["y0"], p["x0"], side, side)} for p in predictions]
    out: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        results = coco.loadRes(dets) if dets else None
        for kind in ("segm", "bbox"):
            if results is None:
                out[f"{kind}_AP"] = out[f"{kind}_AP50"] = 0.0
                continue
            evaluator = COCOeval(coco, results, kind)
            evaluator.params.maxDets = [1, 10, 100000]
            evaluator.evaluate()
            evaluator.accumulate()
            # precision (IoU thresholds, recall, classes, areas, maxDets): area "all", the last maxDets
            precision = evaluator.eval["precision"][:, :, :, 0, -1]
            out[f"{kind}_AP"] = round(float(precision[precision > -1].mean()), 4)
            at_50 = precision[0]
            out[f"{kind}_AP50"] = round(float(at_50[at_50 > -1].mean()), 4)
    return out


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from maskrcnn.data.shapes import DEFAULT_SHAPES
    from maskrcnn.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(args.weights, device="cpu", score_threshold=args.score_threshold)
    names = predictor.class_names or []

    def category_of_kind(kind: int) -> int:  # model label of a shape kind (by class name)
        return names.index(DEFAULT_SHAPES[kind]) if DEFAULT_SHAPES[kind] in names else kind + 1

    image, truth = mosaic_with_truth(args.cells, args.seed)
    side = image.shape[0]
    report: dict[str, Any] = {"image": f"{side}x{side}", "objects": len(truth), "tile": args.tile, "overlap": args.overlap}
    report["objects_cut_by_a_tile_border"] = sum(1 for t in truth if _cut_by_grid(t, side, args.tile, args.overlap))

    runs = {}
    start = time.perf_counter()
    crops = []
    for r in range(args.cells):
        for c in range(args.cells):
            cell = np.ascontiguousarray(image[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL])
            out = predictor(cell)
            for box, label, score, mask in zip(out["boxes"], out["labels"], out["scores"], out["masks"]):
                ys, xs = np.nonzero(mask)
                if ys.size == 0:
                    continue
                y0, x0 = int(ys.min()), int(xs.min())
                crops.append({"label": label, "score": score, "box": box + np.array([c * CELL, r * CELL] * 2),
                              "y0": r * CELL + y0, "x0": c * CELL + x0, "mask": mask[y0 : ys.max() + 1, x0 : xs.max() + 1]})
    runs["small_crops"] = {"seconds": time.perf_counter() - start, "instances": len(crops),
                           **coco_ap(truth, crops, side, category_of_kind)}
    shifted = (args.shift, args.shift + 50)
    setups = {  # name: (tile, overlap, grid origin, class-agnostic linking)
        "one_pass_no_seams": (side, 0, (0, 0), False),  # the whole mosaic as one tile: same context, no seams
        "tiled": (args.tile, args.overlap, (0, 0), False),
        "tiled_grid_shifted": (args.tile, args.overlap, shifted, False),
        "tiled_class_agnostic": (args.tile, args.overlap, (0, 0), True),
        "tiled_class_agnostic_shifted": (args.tile, args.overlap, shifted, True),
    }
    for name, (tile, overlap, origin, agnostic) in setups.items():
        from maskrcnn.data.image_source import open_image_source
        from maskrcnn.tiling.predict import ModelTileDetector, predict_tiled

        detector = ModelTileDetector(predictor.model, predictor.device, score_threshold=predictor.score_threshold,
                                     mask_threshold=predictor.mask_threshold)
        start = time.perf_counter()
        result = predict_tiled(detector, open_image_source(image), tile_size=tile, overlap=overlap, origin=origin,
                               class_agnostic=agnostic)
        seconds = time.perf_counter() - start
        preds = [{"label": i.label, "score": i.score, "box": i.box, "y0": i.y0, "x0": i.x0, "mask": i.mask}
                 for i in result.instances]
        runs[name] = {"seconds": seconds, "instances": len(preds), "tiles": result.tiles,
                      **coco_ap(truth, preds, side, category_of_kind)}
    megapixels = side * side / 1e6
    for run in runs.values():
        run["seconds_per_megapixel"] = round(run["seconds"] / megapixels, 3)
        run["seconds"] = round(run["seconds"], 2)
    report["runs"] = runs
    return report


def _cut_by_grid(t: dict[str, Any], side: int, tile: int, overlap: int) -> bool:
    """Whether some tile sees only part of the object (a tile border crosses it)."""
    from maskrcnn.tiling.grid import tile_grid

    h, w = t["mask"].shape
    y0, x0, y1, x1 = t["y0"], t["x0"], t["y0"] + h, t["x0"] + w
    for window in tile_grid(side, side, tile, overlap).tiles:
        meets = window.y0 < y1 and y0 < window.y1 and window.x0 < x1 and x0 < window.x1
        whole = window.y0 <= y0 and y1 <= window.y1 and window.x0 <= x0 and x1 <= window.x1
        if meets and not whole:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("memory", "accuracy", "_one"))
    parser.add_argument("--weights", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000])
    parser.add_argument("--tile", type=int, default=None, help="default: 1024 (memory), 512 (accuracy)")
    parser.add_argument("--overlap", type=int, default=None, help="default: 128 (memory), 96 (accuracy)")
    parser.add_argument("--cells", type=int, default=8, help="accuracy: the mosaic is cells x cells 128-px images")
    parser.add_argument("--seed", type=int, default=5, help="accuracy: shapes seed (the demo trains on seed 0)")
    parser.add_argument("--shift", type=int, default=150, help="accuracy: origin of the shifted tile grid")
    parser.add_argument("--score-threshold", type=float, default=None, help="default: 0.5 (memory), 0.05 (accuracy)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/maskrcnn_tiling_bench")
    parser.add_argument("--image", default=None, help="_one: the image")
    parser.add_argument("--band-rows", type=int, default=0,
                        help="memory: predict only the top N rows (full width) of images wider than --band-above")
    parser.add_argument("--band-above", type=int, default=20000)
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()
    if args.tile is None:
        args.tile = 512 if args.mode == "accuracy" else 1024
    if args.overlap is None:
        args.overlap = 96 if args.mode == "accuracy" else 128
    if args.score_threshold is None:
        args.score_threshold = 0.05 if args.mode == "accuracy" else 0.5
    if args.mode == "_one":
        print(json.dumps(run_one(args)))
        return
    report: dict[str, Any] = {"benchmark": f"tiling {args.mode}", "machine": machine_info(),
                              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    report.update(memory(args) if args.mode == "memory" else accuracy(args))
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
