"""A tiny randomly initialised model, served on a loopback port for the serve tests.

The classifier weights are scaled up (x200) so that the 20 detections per image score
about 0.7-0.85 and differ from each other in the second decimal: the slider tests need
scores that a 0.01 step can tell apart. Everything else is the plain random model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from serve_helpers import CHROMIUM_ARGS, browser_missing, chromium_path
from tiny_model import CLASS_NAMES, LABEL_TO_CATEGORY_ID, tiny_overrides

TINY_OVERRIDES = tiny_overrides(detections_per_img=20)
CLASSIFIER_SCALE = 200.0


def build_tiny_model():
    from maskrcnn.config import load_config
    from maskrcnn.model.build import build_model

    cfg = load_config("shapes_demo", TINY_OVERRIDES)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(CLASSIFIER_SCALE)
    return model, cfg


@pytest.fixture(scope="session")
def tiny_serve_checkpoint(tmp_path_factory) -> Path:
    from maskrcnn.checkpoints import save_model

    model, cfg = build_tiny_model()
    path = tmp_path_factory.mktemp("serve_model") / "tiny.pt"
    save_model(path, model, cfg, class_names=CLASS_NAMES, label_to_category_id=LABEL_TO_CATEGORY_ID)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Fast and steady on a busy CPU; tests/conftest.py puts the count back after each test
    (a session fixture setting it would leak into every test that follows)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_serve_checkpoint):
    from maskrcnn.inference.predictor import Predictor

    return Predictor.from_checkpoint(tiny_serve_checkpoint, device="cpu", score_threshold=0.0)


@pytest.fixture(scope="module")
def served(tiny_predictor):
    """The app on 127.0.0.1:<free port> in a background thread: (url, app)."""
    from maskrcnn.serve.app import ServeInfo, create_app
    from maskrcnn.serve.server import BackgroundServer

    app = create_app(tiny_predictor, ServeInfo(model="tiny.pt", device="cpu"))
    with BackgroundServer(app) as server:
        yield server.url, app


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        browser_missing("chromium is not installed (apt-get install chromium; `make test` does it as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
