"""Screenshots of an evaluation report for the docs, with headless Chromium.

    # make a report (here from `maskrcnn demo --output runs/demo`), then photograph it:
    python scripts/report_screenshots.py --weights runs/demo/model_final.pt \
        --images runs/demo/data/images --annotations runs/demo/data/val.json
    # or photograph a report that exists:
    python scripts/report_screenshots.py --report runs/report

Writes docs/images/report_index.png (the top of index.html) and
docs/images/report_image_page.png (the page of the image with the most errors).
Needs Debian's `chromium` (apt-get install chromium); nothing is fetched from the internet.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("report_screenshots: chromium not found (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={out}",
         f"--window-size={width},{height}", page.resolve().as_uri()],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )
    print(f"{out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=None, help="an existing report folder")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--images", default=None)
    parser.add_argument("--annotations", default=None)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "images")
    parser.add_argument("--height", type=int, default=2300, help="height of the index screenshot in pixels")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="maskrcnn-report-shots-") as scratch:
        report = args.report
        if report is None:
            if not (args.weights and args.images and args.annotations):
                sys.exit("report_screenshots: give --report DIR, or --weights, --images and --annotations")
            report = Path(scratch) / "report"
            subprocess.run(
                [sys.executable, "-m", "maskrcnn.cli", "evaluate", "--weights", args.weights, "--images", args.images,
                 "--annotations", args.annotations, "--report", str(report), "--quiet", "--threads", "1"],
                check=True,
            )
        screenshot(report / "index.html", args.output / "report_index.png", 1280, args.height)
        first_page = sorted((report / "images").glob("*.html"))[0]
        screenshot(first_page, args.output / "report_image_page.png", 1280, 1000)


if __name__ == "__main__":
    main()
