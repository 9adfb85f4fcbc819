"""Regenerate the pictures in docs/images/ from the analysis tools, so they never go stale.

Run from the repository root: `python scripts/make_doc_pictures.py` (about a minute on a
2-core CPU). Each picture is drawn by the same command a user runs; this script only picks
the inputs and copies the result into docs/images/.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
MASKRCNN = [sys.executable, "-m", "maskrcnn.cli"]


def run(*args: str) -> None:
    print("$ maskrcnn", " ".join(args))
    subprocess.run([*MASKRCNN, *args], check=True)


def guide_pictures(work: Path) -> None:
    """Run the first four runnable blocks of docs/train-your-own-data.md, keep two pictures."""
    guide = (REPO / "docs" / "train-your-own-data.md").read_text()
    blocks = re.findall(r"^```bash run[^\n]*\n(.*?)^```", guide, re.MULTILINE | re.DOTALL)[:4]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for block in blocks:
        subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, check=True)
    shutil.copy(work / "analysis" / "anchor_histograms.png", IMAGES / "guide_anchor_histograms.png")
    shutil.copy(work / "analysis" / "augment_grid.png", IMAGES / "guide_augment_grid.png")


def main() -> None:
    from maskrcnn.data.shapes import generate_shapes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="runs/demo",
                        help="a finished `maskrcnn demo` output (make demo): its overlays.png is copied if present")
    args = parser.parse_args()

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run("analyze", "rpn-targets", "--shapes", "--config", "shapes_demo", "--shapes-size", "256",
            "--output", str(work / "rpn"))
        shutil.copy(work / "rpn" / "rpn_targets.png", IMAGES / "rpn_targets.png")

        annotations = generate_shapes(work / "shapes", num_images=100, image_size=128, seed=0)
        run("analyze", "anchors", "--annotations", str(annotations), "--config", "shapes_demo",
            "--output", str(work / "anchors"))
        shutil.copy(work / "anchors" / "anchor_histograms.png", IMAGES / "anchor_histograms.png")
        (work / "guide").mkdir()
        guide_pictures(work / "guide")
    overlays = Path(args.demo_dir) / "overlays.png"
    if overlays.is_file():
        shutil.copy(overlays, IMAGES / "demo_overlays.png")
    else:
        print(f"{overlays} not found: run `make demo` first for docs/images/demo_overlays.png")
    print(f"pictures in {IMAGES}")


if __name__ == "__main__":
    main()
