"""Write docs/images/tensorboard_scalars.png: TensorBoard's scalars of a run made with `train.tensorboard: true`.

    python scripts/tensorboard_screenshot.py LOGDIR

Starts `tensorboard --logdir LOGDIR` on a free local port, opens it in headless chromium
(Playwright with Debian's chromium, as docs/serve_screenshot.py), filters a few tags and
takes the picture. Needs the dev extra (tensorboard, playwright); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
PICTURE = REPO / "docs" / "images" / "tensorboard_scalars.png"
TAGS = "train/loss_total|train/loss_mask|train/lr|eval/val_loss_total"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url}: TensorBoard did not answer within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    args = parser.parse_args()
    port = free_port()
    tensorboard = Path(sys.executable).parent / "tensorboard"
    server = subprocess.Popen([str(tensorboard), "--logdir", args.logdir, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1010})
            page.goto(url + "?darkMode=false#timeseries", wait_until="networkidle")
            page.wait_for_timeout(3000)  # the page builds its inputs after the first requests
            page.locator("input[placeholder='Filter tags (regex)']").fill(TAGS)
            page.keyboard.press("Enter")
            page.locator("button[aria-label='Toggle settings side pane']").click()  # open by default: close it
            page.wait_for_timeout(5000)
            page.screenshot(path=str(PICTURE))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {PICTURE}")


if __name__ == "__main__":
    main()
