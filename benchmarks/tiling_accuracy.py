"""Does tiled prediction lose accuracy? AP on a large generated canvas, tiled vs small crops. Prints JSON.

    python benchmarks/tiling_accuracy.py --weights MODEL.pt --size 2048 --settings 256:64 512:128

The canvas (`maskrcnn.data.shapes_canvas`) is drawn like the shapes_demo training images:
same shape sizes, shapes per area, backgrounds and noise, on one continuous canvas (one per
`--backgrounds` kind), with ground truth. The model is the shapes_demo recipe (`--weights`;
without it `maskrcnn demo --threads T --iters N` trains one into --workdir first: 1800
iterations took 41 minutes of wall time on one thread of this 2-core machine at load 4-6,
including several minutes in which another job had stopped the process).

Runs on each canvas (all at the model's own scale, one torch thread, score threshold 0.05):
- small_crops: the canvas cut into non-overlapping crops the size of the training images
  (`--crop`, default the model's input size), each crop predicted alone;
- tiled_T_O: `predict_tiled` with tile T, overlap O for each of `--settings`, plus the first
  setting with the grid origin shifted (the result should not depend on where seams fall);
- one_pass: the whole canvas as one tile (no seam), budgets raised so that the detection
  cap is not what limits it.

AP (pycocotools, box and mask, AP and AP50, no detection limit) on two ground-truth sets:
- same_objects: the objects wholly inside one crop; objects cut by a crop border are
  marked iscrowd (ignored: a detection on them counts neither way) for every run, so every
  run is scored on the same objects;
- all_objects (not for small_crops): every object of the canvas.

Counts per run (score >= --count-score, label-agnostic): each object is found once (one
detection lies on it, mask IoU >= 0.5), found poorly (one, IoU < 0.5), split or duplicated
(two or more detections lie on it: at least half of each detection's mask is on it) or
missed; for tiled runs also for only the objects a tile border crosses ("near seams").
"spurious": detections (score >= --count-score) of which no object holds half (for
small_crops these include pieces of the objects that crop borders cut).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info  # noqa: E402

ONE_PASS_CAPS = (20000, 6000, 2000)  # RPN pre-NMS per level, post-NMS, detections: above a canvas's objects


class Setting(NamedTuple):
    tile: int
    overlap: int
    origin: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        shifted = f"_shifted_{self.origin[0]}_{self.origin[1]}" if self.origin != (0, 0) else ""
        return f"tiled_{self.tile}_{self.overlap}{shifted}"


def train_own_model(workdir: Path, iters: int, threads: int) -> Path:
    """`maskrcnn demo` into workdir/demo (reused when its model_final.pt exists)."""
    out = workdir / "demo"
    weights = out / "model_final.pt"
    if not weights.is_file():
        command = [sys.executable, "-c", "import sys; from maskrcnn.cli import main; sys.exit(main())", "demo",
                   "--output", str(out), "--iters", str(iters), "--threads", str(threads)]
        print(f"training: {' '.join(command[3:])}", file=sys.stderr)
        subprocess.run(command, check=True)
    return weights


# ---------------------------------------------------------------------------------------
# ground truth and scoring
# ---------------------------------------------------------------------------------------


def inside_one_crop(shape: Any, crop: int) -> bool:
    return shape.y0 // crop == (shape.y1 - 1) // crop and shape.x0 // crop == (shape.x1 - 1) // crop


def crossed_by_tile_border(shape: Any, windows: list[Any]) -> bool:
    """Whether some tile sees only part of the object."""
    for w in windows:
        meets = w.y0 < shape.y1 and shape.y0 < w.y1 and w.x0 < shape.x1 and shape.x0 < w.x1
        whole = w.y0 <= shape.y0 and shape.y1 <= w.y1 and w.x0 <= shape.x0 and shape.x1 <= w.x1
        if meets and not whole:
            return True
    return False


def coco_ap(shapes: list[Any], ignored: list[bool], instances: list[Any], height: int, width: int) -> dict[str, float]:
    """Box and mask AP / AP50 of `instances` (CroppedInstance) against `shapes` (CanvasShape); category = kind + 1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from maskrcnn.inference.tiling.instances import crop_to_rle

    gt: dict[str, Any] = {"images": [{"id": 1, "height": height, "width": width}],
                          "categories": [{"id": k} for k in (1, 2, 3)], "annotations": []}
    for k, (s, crowd) in enumerate(zip(shapes, ignored)):
        h, w = s.mask.shape
        gt["annotations"].append({"id": k + 1, "image_id": 1, "category_id": s.kind + 1, "iscrowd": int(crowd),
                                  "segmentation": crop_to_rle(s.mask, s.y0, s.x0, height, width),
                                  "area": float(s.mask.sum()), "bbox": [s.x0, s.y0, w, h]})
    dets = [{"image_id": 1, "category_id": int(i.label), "score": float(i.score),
             "bbox": [float(i.box[0]), float(i.box[1]), float(i.box[2] - i.box[0]), float(i.box[3] - i.box[1])],
             "segmentation": crop_to_rle(i.mask, i.y0, i.x0, height, width)} for i in instances]
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
            precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall, classes): area "all"
            out[f"{kind}_AP"] = round(float(precision[precision > -1].mean()), 4)
            at_50 = precision[0]
            out[f"{kind}_AP50"] = round(float(at_50[at_50 > -1].mean()), 4)
    return out


class Outcomes(NamedTuple):
    per_object: list[str]  # 'once', 'poorly', 'split' or 'missed'
    spurious: int  # detections (score >= min_score) of which no object holds half


def object_outcomes(shapes: list[Any], instances: list[Any], min_score: float) -> Outcomes:
    """What became of each object (see the module docstring); label-agnostic."""
    kept = [i for i in instances if i.score >= min_score and i.mask.any()]
    boxes = np.array([[i.y0, i.x0, i.y1, i.x1] for i in kept], dtype=np.int64).reshape(-1, 4)
    areas = np.array([int(i.mask.sum()) for i in kept], dtype=np.int64)
    outcomes = []
    on_some_object = np.zeros(len(kept), dtype=bool)
    for s in shapes:
        near = np.flatnonzero((boxes[:, 0] < s.y1) & (boxes[:, 2] > s.y0) & (boxes[:, 1] < s.x1) & (boxes[:, 3] > s.x0))
        on_it, best_iou = 0, 0.0
        for k in near:
            p = kept[k]
            y0, x0, y1, x1 = max(s.y0, p.y0), max(s.x0, p.x0), min(s.y1, p.y1), min(s.x1, p.x1)
            inter = int(np.count_nonzero(s.mask[y0 - s.y0 : y1 - s.y0, x0 - s.x0 : x1 - s.x0]
                                         & p.mask[y0 - p.y0 : y1 - p.y0, x0 - p.x0 : x1 - p.x0]))
            if inter * 2 >= areas[k]:
                on_some_object[k] = True
                on_it += 1
                best_iou = max(best_iou, inter / (areas[k] + int(s.mask.sum()) - inter))
        outcomes.append("missed" if on_it == 0 else "split" if on_it > 1 else "once" if best_iou >= 0.5 else "poorly")
    return Outcomes(outcomes, int(np.count_nonzero(~on_some_object)))


def count(outcomes: list[str]) -> dict[str, int]:
    return {name: outcomes.count(name) for name in ("once", "poorly", "split", "missed")}


# ---------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------


def predict_crops(detector: Any, pixels: np.ndarray, crop: int) -> list[Any]:
    """Each non-overlapping crop x crop window predicted alone; instances in canvas coordinates."""
    from maskrcnn.inference.tiling.grid import TileWindow

    found = []
    for y in range(0, pixels.shape[0], crop):
        for x in range(0, pixels.shape[1], crop):
            window = TileWindow(0, y, x, y + crop, x + crop)
            found.extend(p.shifted(y, x) for p in detector(np.ascontiguousarray(pixels[y : y + crop, x : x + crop]), window))
    return found


@contextlib.contextmanager
def raised_caps(caps: tuple[int, int, int]):
    """The per-tile budget caps of maskrcnn.inference.tiling.tiled_prediction raised (for the one-pass run)."""
    import maskrcnn.inference.tiling.tiled_prediction as tiling_predict

    saved = tiling_predict.BUDGET_CAPS
    tiling_predict.BUDGET_CAPS = tiling_predict.BudgetCaps(*caps)
    try:
        yield
    finally:
        tiling_predict.BUDGET_CAPS = saved


def evaluate_canvas(args: argparse.Namespace, predictor: Any, background: str, settings: list[Setting]) -> dict[str, Any]:
    from maskrcnn.data.image_source import open_image_source
    from maskrcnn.data.shapes_canvas import render_shapes_canvas
    from maskrcnn.inference.tiling.grid import tile_grid
    from maskrcnn.inference.tiling.outputs import draw_overlay
    from maskrcnn.inference.tiling.tiled_prediction import (
        ModelTileDetector,
        predict_tiled,
    )
    from maskrcnn.visualize.panels import save_image

    canvas = render_shapes_canvas(args.seed, args.size, args.size, object_scale=args.crop, background=background)
    shapes, side = canvas.instances, args.size
    cut_by_crops = [not inside_one_crop(s, args.crop) for s in shapes]
    report: dict[str, Any] = {"background": background, "image": f"{side}x{side}", "objects": len(shapes),
                              "objects_cut_by_crop_borders_ignored": sum(cut_by_crops)}
    if args.save_canvas:
        from PIL import Image

        Image.fromarray(canvas.pixels).save(Path(args.workdir) / f"canvas_{background}_{side}.png")
    # the model holds its mask threshold and paste
    detector = ModelTileDetector(predictor.model, predictor.device, score_threshold=args.score_threshold)
    megapixels = side * side / 1e6
    runs: dict[str, dict[str, Any]] = {}

    def score(name: str, instances: list[Any], seconds: float, windows: list[Any] | None) -> None:
        outcomes, spurious = object_outcomes(shapes, instances, args.count_score)
        same = [o for o, cut in zip(outcomes, cut_by_crops) if not cut]
        run: dict[str, Any] = {"seconds": round(seconds, 2), "seconds_per_megapixel": round(seconds / megapixels, 3),
                               "instances": len(instances), "spurious": spurious,
                               "same_objects": {**coco_ap(shapes, cut_by_crops, instances, side, side), **count(same)}}
        if windows is not None:
            run["tiles"] = len(windows)
            run["all_objects"] = {**coco_ap(shapes, [False] * len(shapes), instances, side, side), **count(outcomes)}
            seams = [crossed_by_tile_border(s, windows) for s in shapes]
            run["near_seams"] = {"objects": sum(seams), **count([o for o, near in zip(outcomes, seams) if near])}
        runs[name] = run
        print(f"{background} {name}: {run}", file=sys.stderr)

    start = time.perf_counter()
    crops = predict_crops(detector, canvas.pixels, args.crop)
    score("small_crops", crops, time.perf_counter() - start, None)
    for setting in settings:
        source = open_image_source(canvas.pixels)
        start = time.perf_counter()
        result = predict_tiled(detector, source, tile_size=setting.tile, overlap=setting.overlap, origin=setting.origin)
        seconds = time.perf_counter() - start
        score(setting.name, result.instances, seconds, tile_grid(side, side, setting.tile, setting.overlap, setting.origin).tiles)
        if args.overlays and setting.origin == (0, 0):
            picture = draw_overlay(source, result, predictor.class_names, side)
            save_image(Path(args.workdir) / f"overlay_{background}_{setting.name}.png", picture)
    if args.one_pass:
        with raised_caps(ONE_PASS_CAPS):
            start = time.perf_counter()
            result = predict_tiled(detector, open_image_source(canvas.pixels), tile_size=side, overlap=0)
            score("one_pass", result.instances, time.perf_counter() - start, [])
    report["runs"] = runs
    return report


def parse_setting(text: str) -> Setting:
    tile, _, overlap = text.partition(":")
    return Setting(int(tile), int(overlap or 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="a shapes_demo checkpoint; none: train one into --workdir")
    parser.add_argument("--train-iters", type=int, default=1800, help="without --weights: demo iterations")
    parser.add_argument("--size", type=int, default=2048, help="canvas side in pixels (a multiple of --crop)")
    parser.add_argument("--seed", type=int, default=5, help="canvas seed (training used the shapes sets 0 and 1)")
    parser.add_argument("--backgrounds", nargs="+", default=["plain", "gradient", "noise"])
    parser.add_argument("--settings", type=parse_setting, nargs="+", default=[Setting(256, 64), Setting(512, 128)],
                        help="TILE:OVERLAP pairs")
    parser.add_argument("--shift", type=int, default=100, help="origin (shift, shift + 37) of a shifted copy of the first setting; 0: none")
    parser.add_argument("--crop", type=int, default=None, help="small-crop side (default: the model's input size)")
    parser.add_argument("--one-pass", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--score-threshold", type=float, default=0.05)
    parser.add_argument("--count-score", type=float, default=0.5, help="score threshold of the found/split/missed counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/maskrcnn_tiling_accuracy")
    parser.add_argument("--overlays", action="store_true", help="write each tiled result's overlay into --workdir")
    parser.add_argument("--save-canvas", action="store_true", help="write each canvas as PNG into --workdir")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from maskrcnn.inference.predictor import Predictor

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    weights = Path(args.weights) if args.weights else train_own_model(Path(args.workdir), args.train_iters, args.threads)
    train_seconds = time.perf_counter() - start
    predictor = Predictor.from_checkpoint(weights, device="cpu", score_threshold=args.score_threshold)
    if predictor.class_names and predictor.class_names[1:4] != ["circle", "square", "triangle"]:
        sys.exit(f"tiling_accuracy: {weights} is not a shapes model (classes {predictor.class_names})")
    if args.crop is None:
        args.crop = int(predictor.model.transform.max_size)
    if args.size % args.crop:
        sys.exit(f"tiling_accuracy: --size {args.size} must be a multiple of the crop side {args.crop}")
    settings = list(args.settings)
    if args.shift:
        settings.insert(1, Setting(settings[0].tile, settings[0].overlap, (args.shift, args.shift + 37)))
    report: dict[str, Any] = {"benchmark": "tiling accuracy on a shapes canvas", "machine": machine_info(),
                              "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "weights": str(weights), "crop": args.crop, "score_threshold": args.score_threshold,
                              "count_score": args.count_score}
    if not args.weights:
        report["training_seconds"] = round(train_seconds, 1)
    report["canvases"] = [evaluate_canvas(args, predictor, background, settings) for background in args.backgrounds]
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
