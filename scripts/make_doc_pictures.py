"""Redraw every picture in docs/images/ from the current recipes and models (`make pictures`).

Run from the repository root. The demo model comes from `--demo-dir` (default runs/demo,
what `make demo` writes); when it is missing, `maskrcnn demo` trains it there first (about
8 minutes on a 2-core CPU). Each picture is drawn by the commands a user runs, and each PNG
records the recipe it came from, that recipe's hash and the command
(scripts/picture_provenance.py; checked by tests/docs/test_doc_pictures.py).
`--only NAME ...` redraws some of them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from picture_provenance import stamp

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
MASKRCNN = [sys.executable, "-m", "maskrcnn.cli"]


def run(args: list[str], cwd: Path | None = None) -> str:
    """Run `maskrcnn ARGS` and return the command as a user would type it."""
    print("$ maskrcnn", " ".join(args), flush=True)
    subprocess.run([*MASKRCNN, *args], check=True, cwd=cwd)
    return "maskrcnn " + " ".join(args)


def keep(source: Path, name: str, recipe: str, command: str) -> None:
    target = IMAGES / name
    shutil.copy(source, target)
    stamp(target, recipe, command)
    print(f"  -> docs/images/{name}", flush=True)


class Pictures:
    def __init__(self, demo: Path, work: Path):
        self.demo = demo
        self.work = work

    # --- from the demo model ---------------------------------------------------------------
    def demo_overlays(self) -> None:
        keep(self.demo / "overlays.png", "demo_overlays.png", "shapes_demo", "make demo (runs/demo/overlays.png)")

    def demo_loss_curve(self) -> None:
        keep(self.demo / "loss_curve.png", "demo_loss_curve.png", "shapes_demo", "make demo (runs/demo/loss_curve.png)")

    def report(self) -> None:
        # paths relative to the working folder: the report prints the weights' path
        demo = Path(os.path.relpath(self.demo))
        args = ["--weights", str(demo / "model_final.pt"), "--images", str(demo / "data" / "images"),
                "--annotations", str(demo / "data" / "val.json")]
        out = self.work / "report_shots"
        subprocess.run([sys.executable, str(REPO / "scripts" / "report_screenshots.py"), *args,
                        "--output", str(out), "--height", "1700"], check=True)
        command = "python scripts/report_screenshots.py " + " ".join(args) + " --height 1700"
        keep(out / "report_index.png", "report_index.png", "shapes_demo", command)
        keep(out / "report_image_page.png", "report_image_page.png", "shapes_demo", command)

    def serve(self) -> None:
        images = [str(self.demo / "data" / "images" / name) for name in ("val_000000.png", "val_000003.png")]
        out = self.work / "serve.png"
        subprocess.run([sys.executable, str(REPO / "docs" / "serve_screenshot.py"), "--weights",
                        str(self.demo / "model_final.pt"), "--images", *images, "--threshold", "0.7",
                        "--width", "1100", "--output", str(out)], check=True)
        command = ("python docs/serve_screenshot.py --weights runs/demo/model_final.pt --images "
                   "runs/demo/data/images/val_000000.png runs/demo/data/images/val_000003.png --threshold 0.7 --width 1100")
        keep(out, "serve.png", "shapes_demo", command)

    def tiled(self) -> None:
        """A 640 px canvas of shapes predicted in 256 px tiles with 64 px overlap; each tile's edges drawn."""
        from maskrcnn.data.shapes_canvas import render_shapes_canvas
        from maskrcnn.inference.tiling.grid import tile_grid

        canvas = render_shapes_canvas(5, 640, 640, background="gradient").pixels
        Image.fromarray(canvas).save(self.work / "canvas.png")
        tile, overlap = 256, 64
        command = run(["predict", "canvas.png", "--weights", str(self.demo / "model_final.pt"), "--tile", str(tile),
                       "--tile-overlap", str(overlap), "--output", "tiled", "--threads", "2", "--quiet"], cwd=self.work)
        overlay_path = next((self.work / "tiled" / "overlays").glob("canvas*.png"))
        overlay = Image.open(overlay_path).convert("RGB")
        factor = overlay.width / canvas.shape[1]
        draw = ImageDraw.Draw(overlay)
        grid = tile_grid(canvas.shape[0], canvas.shape[1], tile, overlap)
        edge_colors = ((255, 230, 0), (0, 230, 255))  # neighbouring tiles in two colours, so overlaps show
        for r, row in enumerate(grid.rows):
            for c, window in enumerate(row):
                box = [window.x0 * factor, window.y0 * factor, window.x1 * factor - 1, window.y1 * factor - 1]
                draw.rectangle(box, outline=edge_colors[(r + c) % 2], width=2)
        overlay.save(self.work / "tiled.png")
        keep(self.work / "tiled.png", "tiled_prediction.png", "shapes_demo",
             command.replace(str(self.demo), "runs/demo")
             + " (canvas.png: maskrcnn.data.shapes_canvas.render_shapes_canvas(5, 640, 640, background='gradient'); "
             "tile edges drawn)")

    # --- the tools of the field ------------------------------------------------------------------
    def napari(self) -> None:
        """The napari widget after a run of the shipped nuclei model (trained by the nuclei recipe)."""
        out = self.work / "napari_widget.png"
        display = [] if os.environ.get("DISPLAY") else ["xvfb-run", "-a"]  # napari's canvas needs OpenGL on an X display
        subprocess.run([*display, sys.executable, str(REPO / "docs" / "napari_screenshot.py"), "--output", str(out)],
                       check=True)
        keep(out, "napari_widget.png", "nuclei", "python docs/napari_screenshot.py")

    def geojson(self) -> None:
        """docs/examples/*.geojson and their picture, from the shipped nuclei model."""
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_geojson_example.py")], check=True)
        stamp(IMAGES / "geojson_example.png", "nuclei", "python scripts/make_geojson_example.py")

    def tensorboard(self) -> None:
        """TensorBoard's scalars and one validation picture of 300 more iterations of the demo model."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        shutil.copy(self.demo / "model_final.pt", self.work / "demo_model.pt")
        command = run(["train", "--config", "shapes_demo", "--init-weights", "demo_model.pt", "--output", "runs/shapes",
                       "--set", "train.tensorboard=true", "--set", "train.eval_period=100", "--set", "solver.max_iter=300",
                       "--set", "solver.lr=0.005", "--threads", "2"], cwd=self.work)
        command = command.replace("demo_model.pt", "runs/demo/model_final.pt")
        subprocess.run([sys.executable, str(REPO / "scripts" / "tensorboard_screenshot.py"), "runs/"], check=True,
                       cwd=self.work)
        stamp(IMAGES / "tensorboard_scalars.png", "shapes_demo",
              command + "; python scripts/tensorboard_screenshot.py runs/")
        events = EventAccumulator(str(self.work / "runs" / "shapes"), size_guidance={"images": 0})
        events.Reload()
        tag = sorted(events.Tags()["images"])[0]
        (self.work / "val.png").write_bytes(events.Images(tag)[-1].encoded_image_string)
        keep(self.work / "val.png", "tensorboard_val_picture.png", "shapes_demo",
             command + f" (TensorBoard's Images tab, {tag}, last evaluation)")

    # --- analysis tools ----------------------------------------------------------------------
    def analysis(self) -> None:
        from maskrcnn.data.shapes import generate_shapes

        command = run(["analyze", "rpn-targets", "--shapes", "--config", "shapes_demo", "--shapes-size", "128",
                       "--output", str(self.work / "rpn")])
        keep(self.work / "rpn" / "rpn_targets.png", "rpn_targets.png", "shapes_demo",
             command.replace(str(self.work), "OUT"))
        annotations = generate_shapes(self.work / "shapes", num_images=100, image_size=128, seed=0)
        command = run(["analyze", "anchors", "--annotations", str(annotations), "--config", "shapes_demo",
                       "--output", str(self.work / "anchors")])
        keep(self.work / "anchors" / "anchor_histograms.png", "anchor_histograms.png", "shapes_demo",
             command.replace(str(self.work), "OUT") + " (100 generated 128 px shapes images, seed 0)")
        augment = ["analyze", "augment", "--config", "shapes_demo", "--set", "data.augment.vertical_flip=0.5",
                   "--set", "data.augment.transpose=0.5", "--set", "data.augment.scale_jitter=0.8", "--set",
                   "data.augment.scale_range=[0.5,1.5]", "--set", "data.augment.pad_value=0.3", "--set",
                   "data.augment.min_area=4", "--set", "data.augment.brightness=0.2", "--set", "data.augment.contrast=0.2",
                   "--set", "data.augment.gamma=0.3", "--set", "data.augment.blur=0.3", "--set", "data.augment.noise=0.3",
                   "--samples", "12", "--cell", "200", "--output", "docs/images"]
        (self.work / "augment").mkdir(exist_ok=True)
        command = run(augment, cwd=self.work / "augment")
        keep(self.work / "augment" / "docs" / "images" / "augment_grid.png", "augment_grid.png", "shapes_demo", command)

    def guide(self) -> None:
        """The pictures of docs/train-your-own-data.md: its first two blocks make the data."""
        guide = (REPO / "docs" / "train-your-own-data.md").read_text()
        blocks = re.findall(r"^```bash run[^\n]*\n(.*?)^```", guide, re.MULTILINE | re.DOTALL)[:2]
        folder = self.work / "guide"
        folder.mkdir()
        env_path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        for block in blocks:
            subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=folder, check=True,
                           env={**os.environ, "PATH": env_path})
        command = run(["analyze", "anchors", "--annotations", "train/annotations.json", "--config", "nuclei",
                       "--output", "analysis"], cwd=folder)
        keep(folder / "analysis" / "anchor_histograms.png", "guide_anchor_histograms.png", "nuclei", command)
        command = run(["analyze", "augment", "--config", "nuclei", "--samples", "4", "--cell", "320", "--no-boxes",
                       "--output", "analysis", "--set", "data.train.kind=coco", "--set",
                       "data.train.annotations=train/annotations.json", "--set", "data.train.images=train/images"],
                      cwd=folder)
        keep(folder / "analysis" / "augment_grid.png", "guide_augment_grid.png", "nuclei", command)

    # --- nuclei ----------------------------------------------------------------------------
    def nuclei(self) -> None:
        """Generated nuclei: ground truth (left) and the shipped weights' predictions (right), labelled."""
        from maskrcnn.data.nuclei import render_nuclei_image
        from maskrcnn.inference.predictor import Predictor
        from maskrcnn.visualize.canvas import instance_colors
        from maskrcnn.visualize.overlays import draw_instances
        from maskrcnn.visualize.panels import side_by_side, with_title

        predictor = Predictor.from_checkpoint(str(REPO / "src" / "maskrcnn" / "weights" / "nuclei_synthetic.pt"),
                                              device="cpu", score_threshold=0.5)
        gt_rows, pair_rows = [], []
        for index in (3, 5, 6):  # fluorescence, histology, brightfield
            pixels, masks, style = render_nuclei_image(1, index, sizes=((256, 256),))
            gt = np.stack(masks) if masks else np.zeros((0, *pixels.shape[:2]), bool)
            boxes = np.array([[m.nonzero()[1].min(), m.nonzero()[0].min(), m.nonzero()[1].max() + 1,
                               m.nonzero()[0].max() + 1] for m in gt], np.float32).reshape(-1, 4)
            gt_picture = draw_instances(pixels, boxes, np.ones(len(gt), np.int64), masks=gt, show_boxes=False,
                                        show_captions=False, colors=instance_colors(len(gt)), scale=2.0)
            out = predictor(pixels)
            pred_picture = draw_instances(pixels, out["boxes"], out["labels"], masks=out["masks"], show_boxes=False,
                                          show_captions=False, colors=instance_colors(len(out["boxes"])), scale=2.0)
            image_picture = np.asarray(Image.fromarray(pixels).resize((512, 512), Image.NEAREST))
            gt_rows.append(side_by_side(with_title(image_picture, f"image ({style})", 18),
                                        with_title(gt_picture, f"ground truth: {len(gt)} nuclei", 18)))
            pair_rows.append(side_by_side(with_title(gt_picture, f"ground truth: {len(gt)} nuclei", 18),
                                          with_title(pred_picture, f"prediction: {len(out['boxes'])} (score >= 0.5)", 18)))
        command = ("scripts/make_doc_pictures.py --only nuclei (generated nuclei, seed 1; "
                   "Predictor.from_checkpoint('nuclei_synthetic'), score >= 0.5)")
        for rows, name in ((gt_rows, "nuclei_synthetic.png"), (pair_rows, "nuclei_predictions.png")):
            gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
            picture = np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)
            Image.fromarray(picture).save(self.work / name)
            keep(self.work / name, name, "nuclei", command)


def ensure_demo(demo: Path) -> None:
    if not (demo / "model_final.pt").is_file():
        run(["demo", "--output", str(demo)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("runs/demo"),
                        help="a finished `maskrcnn demo` output; trained there when missing")
    parser.add_argument("--only", nargs="+", default=None,
                        choices=["demo_overlays", "demo_loss_curve", "report", "serve", "tiled", "analysis", "guide",
                                 "nuclei", "napari", "geojson", "tensorboard"])
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    demo = args.demo_dir.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        pictures = Pictures(demo, Path(tmp))
        steps: dict[str, Callable[[], None]] = {
            "analysis": pictures.analysis, "guide": pictures.guide, "nuclei": pictures.nuclei,
            "demo_overlays": pictures.demo_overlays, "demo_loss_curve": pictures.demo_loss_curve,
            "tiled": pictures.tiled, "report": pictures.report, "serve": pictures.serve,
            "napari": pictures.napari, "geojson": pictures.geojson, "tensorboard": pictures.tensorboard,
        }
        chosen = args.only or list(steps)
        if any(name not in ("analysis", "guide", "nuclei", "napari", "geojson") for name in chosen):
            ensure_demo(demo)
        for name in chosen:
            steps[name]()
    print(f"pictures in {IMAGES}")


if __name__ == "__main__":
    main()
