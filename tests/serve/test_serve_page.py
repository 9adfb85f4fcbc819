"""The page in a real headless browser (Debian's chromium via Playwright).

Uploads generated images, waits for the drawing, moves the slider with the keyboard,
toggles masks/boxes/labels, downloads COCO JSON and PNG, and checks what the canvas shows
against the server's answer. A screenshot is left in the test's tmp dir (serve_page.png).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from serve_helpers import png_bytes, shapes_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools on NumPy 2


def canvas_pixels(page, selector: str) -> np.ndarray:
    """(H, W, 3) uint8 of a canvas, read back through a PNG data URL."""
    url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    return np.array(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def set_toggles(page, masks: bool, boxes: bool, labels: bool) -> None:
    for name, on in (("masks", masks), ("boxes", boxes), ("labels", labels)):
        page.set_checked(f"#show-{name}", on)


def move_slider(page, value: float) -> None:
    """As a user would with the keyboard: Home (0), PageUp (+0.1 in chromium), ArrowRight (+0.01)."""
    steps = round(value * 100)
    page.focus("#threshold")
    page.keyboard.press("Home")
    for _ in range(steps // 10):
        page.keyboard.press("PageUp")
    for _ in range(steps % 10):
        page.keyboard.press("ArrowRight")


def decode(rle: dict) -> np.ndarray:
    from pycocotools import mask as coco_mask

    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


@pytest.fixture()
def page(browser, served):
    url, _ = served
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith(("blob:", "data:"))
            else problems.append(f"request outside the server: {r.url}"))
    page.problems = problems  # a test that expects one removes it
    page.goto(url + "/")
    # wait_for_selector, not wait_for_function: the page's Content-Security-Policy forbids eval.
    page.wait_for_selector("#model-info:has-text('tiny.pt')")
    yield page
    context.close()
    assert problems == []


def test_page_draws_filters_toggles_and_downloads(page, tmp_path):
    images = {"shapes_a.png": shapes_image(96, 128, seed=5), "shapes_b.png": shapes_image(80, 80, seed=6)}
    for name, image in images.items():
        (tmp_path / name).write_bytes(png_bytes(image))
    page.set_input_files("#file-input", [str(tmp_path / name) for name in images])
    page.wait_for_selector("#summary[data-pending='0'] >> text=2 of 2 images done", timeout=30000)
    assert page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.state)") == ["done", "done"]
    answers = page.evaluate("maskrcnnPage.state.entries.map(e => e.payload)")
    assert [a["file_name"] for a in answers] == list(images)
    scores = [np.array([row["score"] for row in a["results"]]) for a in answers]
    assert all(len(s) > 0 for s in scores)

    def shown_counts() -> list[int]:
        return [int(v) for v in page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.shown)")]

    # The default threshold (0.50) shows every detection scoring at least 0.50.
    assert page.text_content("#threshold-value") == "0.50"
    assert shown_counts() == [int((s >= 0.5).sum()) for s in scores]

    # A threshold between the scores: fewer instances, without asking the server again.
    calls_before = page.evaluate("fetch('health').then(r => r.json()).then(h => h.model_calls)")
    everything = np.concatenate(scores)
    middle = np.floor(np.median(everything) * 100) / 100
    assert 0 < (everything >= middle).sum() < len(everything), "the test model's scores must differ"
    move_slider(page, middle)
    assert page.text_content("#threshold-value") == f"{middle:.2f}"
    expected = [int((s >= middle - 1e-9).sum()) for s in scores]
    assert shown_counts() == expected
    assert page.get_attribute("#summary", "data-shown") == str(sum(expected))
    assert f"{sum(expected)} of {len(everything)} instances shown" in page.text_content("#summary")
    move_slider(page, 1.0)
    assert shown_counts() == [0, 0]
    move_slider(page, middle)
    assert page.evaluate("fetch('health').then(r => r.json()).then(h => h.model_calls)") == calls_before

    # The canvas: nothing drawn -> the image itself (enlarged by a whole factor, nearest pixel).
    first = images["shapes_a.png"]
    set_toggles(page, masks=False, boxes=False, labels=False)
    plain = canvas_pixels(page, ".card:first-child canvas")
    scale = plain.shape[0] // first.shape[0]
    assert scale >= 2 and plain.shape[:2] == (first.shape[0] * scale, first.shape[1] * scale)
    assert np.array_equal(plain, first.repeat(scale, 0).repeat(scale, 1))

    # Masks only: exactly the pixels of the shown instances' masks change.
    set_toggles(page, masks=True, boxes=False, labels=False)
    with_masks = canvas_pixels(page, ".card:first-child canvas")
    shown_rows = [row for row in answers[0]["results"] if row["score"] >= middle - 1e-9]
    union = np.zeros(first.shape[:2], bool)
    for row in shown_rows:
        union |= decode(row["segmentation"])
    assert union.any()
    union = union.repeat(scale, 0).repeat(scale, 1)
    changed = (with_masks != plain).any(axis=2)
    assert not changed[~union].any()
    assert changed[union].mean() > 0.99

    # Boxes and labels each add to the drawing.
    set_toggles(page, masks=True, boxes=True, labels=False)
    with_boxes = canvas_pixels(page, ".card:first-child canvas")
    set_toggles(page, masks=True, boxes=True, labels=True)
    with_labels = canvas_pixels(page, ".card:first-child canvas")
    assert (with_boxes != with_masks).any() and (with_labels != with_boxes).any()

    page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)

    # Downloads: the COCO results shown now, and the first canvas as a PNG.
    with page.expect_download() as download:
        page.click("#download-json")
    assert download.value.suggested_filename == "predictions.json"
    rows = json.loads(open(download.value.path()).read())
    assert len(rows) == sum(expected)
    assert all(row["score"] >= middle - 1e-9 for row in rows)
    assert {(row["image_id"], row["file_name"]) for row in rows} <= {(1, "shapes_a.png"), (2, "shapes_b.png")}
    assert {"bbox", "category_id", "category_name", "segmentation"} <= set(rows[0])
    with page.expect_download() as download:
        page.click(".card:first-child .download-png")
    assert download.value.suggested_filename == "shapes_a_pred.png"
    saved = np.array(Image.open(download.value.path()).convert("RGB"))
    assert np.array_equal(saved, with_labels)


def test_drop_and_a_refused_file(page):
    good = base64.b64encode(png_bytes(shapes_image(64, 72, seed=7))).decode()
    page.evaluate(
        """([good]) => {
            const bytes = Uint8Array.from(atob(good), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            transfer.items.add(new File(["not an image"], "notes.png", {type: "image/png"}));
            document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        [good],
    )
    page.wait_for_selector("#summary >> text=of 2 images done", timeout=30000)
    page.wait_for_selector("#summary[data-pending='0']")
    states = page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.state)")
    assert states == ["done", "error"]
    assert "notes.png: not an image" in page.text_content(".card:nth-child(2) .card-status")
    assert page.text_content(".card:first-child .file-name") == "dropped.png"
    page.problems.remove("console error: Failed to load resource: the server responded with a status of 400 (Bad Request)")


def test_rle_decoder_matches_pycocotools(page):
    from maskrcnn.ops.masks import masks_to_rles

    rng = np.random.default_rng(0)
    masks = [np.zeros((17, 23), bool), np.ones((17, 23), bool), rng.random((17, 23)) < 0.4]
    corner = np.zeros((17, 23), bool)
    corner[0, 0] = corner[16, 22] = True
    masks.append(corner)
    tall = np.zeros((17, 23), bool)
    tall[3:, 5:9] = True  # runs that wrap from one column into the next
    masks.append(tall)
    big = np.ones((300, 250), bool)  # long runs: several characters per count, negative differences
    big[40:260, 20:230] = False
    big[140:150, 100:104] = True
    rles = [masks_to_rles(m[None])[0] for m in masks[:5]] + [masks_to_rles(big[None])[0]]
    crops = page.evaluate(
        "rles => rles.map(r => { const c = maskrcnnPage.rleToCrop(r);"
        " return c && {x0: c.x0, y0: c.y0, width: c.width, height: c.height, data: c.data.join('')}; })",
        rles,
    )
    for mask, crop in zip(masks[:5] + [big], crops):
        rebuilt = np.zeros(mask.shape, bool)
        if crop is not None:
            patch = (np.frombuffer(crop["data"].encode(), np.uint8) == ord("1")).reshape(crop["height"], crop["width"])
            rebuilt[crop["y0"] : crop["y0"] + crop["height"], crop["x0"] : crop["x0"] + crop["width"]] = patch
            ys, xs = np.nonzero(mask)
            assert (crop["x0"], crop["y0"]) == (xs.min(), ys.min())  # the crop is the mask's tight box
            assert (crop["width"], crop["height"]) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert np.array_equal(rebuilt, mask)
    assert crops[0] is None


def test_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch):
    from serve_helpers import browser_missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        browser_missing("chromium is not installed")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        browser_missing("chromium is not installed")
