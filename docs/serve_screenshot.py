"""Write docs/images/serve.png: the `maskrcnn serve` page in headless chromium after uploading images.

    python docs/serve_screenshot.py --weights runs/demo/model_final.pt \
        --images runs/demo/data/images/val_000000.png runs/demo/data/images/val_000003.png

Needs the dev extra (Playwright) and Debian's chromium (`make browser`); nothing is downloaded.
The model runs in this process on a free loopback port, as `maskrcnn serve` would run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))
from serve_helpers import CHROMIUM_ARGS, chromium_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--threshold", type=float, default=0.5, help="where to leave the slider")
    parser.add_argument("--hide-labels", action="store_true")
    parser.add_argument("--width", type=int, default=1280, help="browser window width")
    parser.add_argument("--output", default="docs/images/serve.png")
    args = parser.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    from maskrcnn.inference.predictor import Predictor
    from maskrcnn.serve.app import ServeInfo, create_app
    from maskrcnn.serve.server import BackgroundServer

    torch.set_num_threads(1)
    predictor = Predictor.from_checkpoint(args.weights, config=args.config, device="cpu", score_threshold=0.0)
    app = create_app(predictor, ServeInfo(model=Path(args.weights).name, device="cpu"))
    executable = chromium_path() or "/usr/bin/chromium"
    with BackgroundServer(app) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 800})
        page.goto(server.url + "/")
        page.wait_for_selector(f"#model-info:has-text('{Path(args.weights).name}')")
        page.set_input_files("#file-input", args.images)
        page.wait_for_selector(f"#summary >> text={len(args.images)} of {len(args.images)} images done", timeout=120000)
        steps = round(args.threshold * 100)
        page.focus("#threshold")
        page.keyboard.press("Home")
        for _ in range(steps // 10):
            page.keyboard.press("PageUp")  # +0.1 in chromium
        for _ in range(steps % 10):
            page.keyboard.press("ArrowRight")  # +0.01
        if args.hide_labels:
            page.set_checked("#show-labels", False)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.output, full_page=True)
        print(page.text_content("#summary"))
        browser.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
