"""Tiled prediction of large generated images: peak memory and time per megapixel. Prints JSON.

    # memory and time: a generated N x N RGB tiled TIFF per size (streamed to disk, never
    # held whole), each predicted in a fresh process (its own peak RSS), writing what
    # `maskrcnn predict --tile --label-image` writes (COCO RLEs, label TIFF, overlay)
    python benchmarks/tiling.py memory --weights runs/demo/model_final.pt --sizes 10000 30000

Accuracy (tiled against small crops of the same objects) is benchmarks/tiling_accuracy.py.

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
    from maskrcnn.commands.predict import predict_one_tiled
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

    from maskrcnn.inference.tiling.grid import tile_grid

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
    from maskrcnn.evaluation.results import predictor_result_rows
    from maskrcnn.inference.tiling.outputs import draw_overlay, write_label_image
    from maskrcnn.visualize.panels import save_image

    full = open_image_source(args.image)
    band = ImageSource(full.raw, full.window, f"{args.image} (top {args.band_rows} rows)")
    band.height = min(full.height, args.band_rows)
    result = predictor.predict_tiled(band, tile=args.tile, overlap=args.overlap, progress=True)
    rows = predictor_result_rows({"boxes": result.boxes, "labels": result.labels, "scores": result.scores}, image_id=1,
                        file_name=str(args.image), category_id_of=predictor.category_id, rles=result.rles())
    save_image(out / "overlay.png", draw_overlay(band, result, predictor.class_names, 2048))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("memory", "_one"))
    parser.add_argument("--weights", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/maskrcnn_tiling_bench")
    parser.add_argument("--image", default=None, help="_one: the image")
    parser.add_argument("--band-rows", type=int, default=0,
                        help="memory: predict only the top N rows (full width) of images wider than --band-above")
    parser.add_argument("--band-above", type=int, default=20000)
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()
    if args.mode == "_one":
        print(json.dumps(run_one(args)))
        return
    report: dict[str, Any] = {"benchmark": f"tiling {args.mode}", "machine": machine_info(),
                              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    report.update(memory(args))
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
