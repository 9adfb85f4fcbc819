"""POST /predict and GET /health on a real loopback server: answers, concurrency, refusals."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from serve_helpers import multipart, png_bytes, post_file, request, shapes_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools on NumPy 2


def decode(rle: dict) -> np.ndarray:
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def check_answer_matches(answer: dict, expected: dict, file_name: str, height: int, width: int) -> None:
    """The JSON answer holds exactly the Predictor's detections for the image."""
    assert answer["file_name"] == file_name
    assert (answer["height"], answer["width"]) == (height, width)
    rows = answer["results"]
    assert len(rows) == len(expected["scores"]) > 0
    for row, box, label, score, mask in zip(rows, expected["boxes"], expected["labels"], expected["scores"], expected["masks"]):
        assert row["file_name"] == file_name
        assert row["score"] == pytest.approx(float(score), abs=1e-5)
        x1, y1, x2, y2 = (float(v) for v in box)
        assert row["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
        assert row["category_id"] == {1: 10, 2: 20, 3: 30}[int(label)]
        assert row["category_name"] == ["background", "circle", "square", "triangle"][int(label)]
        assert row["segmentation"]["size"] == [height, width]
        assert np.array_equal(decode(row["segmentation"]), mask)


def test_health(served):
    url, _ = served
    answer = request(url + "/health")
    assert answer.status == 200
    assert answer.body["status"] == "ok"
    assert answer.body["model"] == "tiny.pt"
    assert answer.body["class_names"] == ["background", "circle", "square", "triangle"]
    assert answer.body["max_upload_bytes"] > 0
    assert "default-src 'self'" in answer.headers["content-security-policy"]


def test_multipart_and_raw_body_give_the_predictors_detections(served, tiny_predictor):
    url, _ = served
    image = shapes_image(72, 100, seed=1)
    expected = tiny_predictor(image)
    answer = post_file(url + "/predict", "cells one.png", png_bytes(image))
    assert answer.status == 200, answer.body
    check_answer_matches(answer.body, expected, "cells one.png", 72, 100)

    raw = request(url + "/predict?file_name=raw.png", png_bytes(image), {"Content-Type": "image/png"})
    assert raw.status == 200, raw.body
    check_answer_matches(raw.body, expected, "raw.png", 72, 100)


def test_score_threshold_keeps_the_higher_scores(served, tiny_predictor):
    url, _ = served
    image = shapes_image(64, 64, seed=2)
    scores = tiny_predictor(image)["scores"]
    threshold = float(np.median(scores))
    answer = request(url + f"/predict?score_threshold={threshold}", png_bytes(image), {"Content-Type": "image/png"})
    assert answer.status == 200
    kept = [row["score"] for row in answer.body["results"]]
    assert len(kept) == int((scores >= threshold).sum()) < len(scores)
    assert min(kept) >= round(threshold, 5) - 1e-5


class CountingPredictor:
    """Wraps the Predictor and records how many model calls ran at the same time."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.class_names = predictor.class_names
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def __call__(self, image):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            return self.predictor(image)
        finally:
            with self.lock:
                self.active -= 1

    def category_id(self, label: int) -> int:
        return self.predictor.category_id(label)

    def class_name(self, label: int) -> str:
        return self.predictor.class_name(label)


def test_twenty_concurrent_requests_all_answered_one_model_call_at_a_time(tiny_predictor):
    from maskrcnn.serve.app import ServeInfo, create_app
    from maskrcnn.serve.limits import UploadLimits
    from maskrcnn.serve.server import BackgroundServer

    counting = CountingPredictor(tiny_predictor)
    app = create_app(counting, ServeInfo(model="tiny.pt", device="cpu"), UploadLimits(max_queue=20))  # all held
    # Five images of different sizes, each sent four times under its own file name: an answer
    # given to the wrong request shows in its size or its name.
    sizes = [(48 + 8 * k, 96 - 6 * k) for k in range(5)]
    images = [shapes_image(h, w, seed=10 + k) for k, (h, w) in enumerate(sizes)]
    expected = [tiny_predictor(image) for image in images]
    start = threading.Barrier(20)

    def send(i: int):
        body = png_bytes(images[i % 5])
        start.wait()  # all 20 requests leave together
        if i % 2:
            return post_file(server.url + "/predict", f"image_{i}.png", body)
        return request(server.url + f"/predict?file_name=image_{i}.png", body, {"Content-Type": "image/png"})

    with BackgroundServer(app) as server, ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    for i, answer in enumerate(answers):
        assert answer.status == 200, (i, answer.body)
        check_answer_matches(answer.body, expected[i % 5], f"image_{i}.png", *sizes[i % 5])
    assert app.state.runner.calls == 20
    assert counting.most_active == 1


TEXT = b"this is not an image\n"


@pytest.mark.parametrize(
    "case, body, headers, status, words",
    [
        ("no content type", png_bytes(shapes_image(48, 48, 0)), {}, 415, "content type"),
        ("text/plain", TEXT, {"Content-Type": "text/plain"}, 415, "text/plain"),
        ("json", b"{}", {"Content-Type": "application/json"}, 415, "application/json"),
        ("empty image body", b"", {"Content-Type": "image/png"}, 400, "empty body"),
        ("text as image/png", TEXT, {"Content-Type": "image/png"}, 400, "not an image"),
        ("truncated png", png_bytes(shapes_image(48, 48, 0))[:60], {"Content-Type": "image/png"}, 400, "not a readable image"),
        ("multipart without boundary", b"--x\r\n", {"Content-Type": "multipart/form-data"}, 400, "multipart"),
    ],
)
def test_bad_raw_requests_get_a_json_4xx(served, case, body, headers, status, words):
    url, _ = served
    answer = request(url + "/predict", body, headers, method="POST")
    assert answer.status == status, (case, answer.body)
    assert words in answer.body["error"]


def test_bad_multipart_requests_get_a_json_4xx(served):
    url, _ = served
    body, content_type = multipart({"note": "hello"})
    answer = request(url + "/predict", body, {"Content-Type": content_type})
    assert answer.status == 400 and "no file field" in answer.body["error"]
    answer = post_file(url + "/predict", "notes.txt", TEXT, "text/plain")
    assert answer.status == 400 and "notes.txt: not an image" in answer.body["error"]
    answer = post_file(url + "/predict", "empty.png", b"")
    assert answer.status == 400 and "empty.png: empty file" in answer.body["error"]


def test_other_bad_requests_get_a_json_4xx(served):
    url, _ = served
    image = png_bytes(shapes_image(48, 48, 0))
    for query in ("score_threshold=2", "score_threshold=abc", "score_threshold=nan"):
        answer = request(url + "/predict?" + query, image, {"Content-Type": "image/png"})
        assert answer.status == 400 and "score_threshold" in answer.body["error"], query
    answer = request(url + "/predict")  # GET
    assert answer.status == 405 and "error" in answer.body
    answer = request(url + "/no-such-page")
    assert answer.status == 404 and "error" in answer.body


def test_upload_and_pixel_limits(tiny_predictor):
    from maskrcnn.serve.app import ServeInfo, create_app
    from maskrcnn.serve.limits import UploadLimits
    from maskrcnn.serve.server import BackgroundServer

    small = png_bytes(shapes_image(48, 48, 0))
    limits = UploadLimits(max_bytes=len(small) + 1000, max_pixels=64 * 64)
    app = create_app(tiny_predictor, ServeInfo(model="tiny.pt", device="cpu"), limits)
    noise = np.random.default_rng(0).integers(0, 255, (60, 60, 3), dtype=np.uint8)  # compresses badly
    with BackgroundServer(app) as server:
        big = png_bytes(noise)
        assert len(big) > limits.max_bytes
        answer = request(server.url + "/predict", big, {"Content-Type": "image/png"})
        assert answer.status == 413 and "over the limit" in answer.body["error"]
        answer = post_file(server.url + "/predict", "big.png", big)
        assert answer.status == 413

        # A chunked body declares no length: it is counted as it arrives.
        host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        chunks = (big[i : i + 4096] for i in range(0, len(big), 4096))
        connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/png"}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and b"over the limit" in response.read()
        connection.close()

        wide = png_bytes(np.zeros((10, 500, 3), np.uint8))  # few bytes, 5000 pixels
        answer = request(server.url + "/predict", wide, {"Content-Type": "image/png"})
        assert answer.status == 413 and "500x10 pixels" in answer.body["error"]

        answer = post_file(server.url + "/predict", "small.png", small)  # still serving
        assert answer.status == 200 and answer.body["width"] == 48
    assert app.state.runner.calls == 1  # refused uploads never reached the model


def test_server_keeps_serving_after_refusals(served):
    url, app = served
    calls = app.state.runner.calls
    for _ in range(3):
        assert request(url + "/predict", TEXT, {"Content-Type": "image/png"}).status == 400
    answer = post_file(url + "/predict", "ok.png", png_bytes(shapes_image(50, 60, 3)))
    assert answer.status == 200 and (answer.body["height"], answer.body["width"]) == (50, 60)
    assert app.state.runner.calls == calls + 1
    assert request(url + "/health").body["model_calls"] == calls + 1


def test_exif_rotated_jpeg_is_read_upright(served):
    import io

    from PIL import Image

    url, _ = served
    stored = Image.fromarray(shapes_image(40, 64, seed=8))  # 64 wide, 40 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated by 90 degrees, as phones write it
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    answer = request(url + "/predict", buffer.getvalue(), {"Content-Type": "image/jpeg"})
    assert answer.status == 200
    assert (answer.body["width"], answer.body["height"]) == (40, 64)
    assert all(row["segmentation"]["size"] == [64, 40] for row in answer.body["results"])


class FailingOnce(CountingPredictor):
    """Raises on its first call, as a model running out of memory would."""

    def __call__(self, image):
        if not getattr(self, "failed", False):
            self.failed = True
            raise RuntimeError("out of memory (simulated)")
        return super().__call__(image)


def test_a_failing_model_call_is_a_json_500_and_the_next_request_works(tiny_predictor):
    from maskrcnn.serve.app import ServeInfo, create_app
    from maskrcnn.serve.server import BackgroundServer

    app = create_app(FailingOnce(tiny_predictor), ServeInfo(model="tiny.pt", device="cpu"))
    body = png_bytes(shapes_image(48, 56, seed=9))
    with BackgroundServer(app) as server:
        answer = post_file(server.url + "/predict", "a.png", body)
        assert answer.status == 500 and "out of memory (simulated)" in answer.body["error"]
        answer = post_file(server.url + "/predict", "b.png", body)
        assert answer.status == 200 and answer.body["file_name"] == "b.png"
