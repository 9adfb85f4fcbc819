"""Regenerate the pictures in docs/images/ from the analysis tools, so they never go stale.

Run from the repository root: `python scripts/make_doc_pictures.py` (about a minute on a
2-core CPU). Each picture is drawn by the same command a user runs; this script only picks
the inputs and copies the result into docs/images/.
"""

from __future__ import annotations

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


def main() -> None:
    from maskrcnn.data.shapes import generate_shapes

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
    print(f"pictures in {IMAGES}")


if __name__ == "__main__":
    main()
