"""A tiny randomly initialized model saved as a native checkpoint, shared by the CLI tests."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import CLASS_NAMES, LABEL_TO_CATEGORY_ID, tiny_overrides

TINY_OVERRIDES = tiny_overrides()


def tiny_config():
    from maskrcnn.config import load_config

    return load_config("shapes_demo", TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny() -> dict:
    """The tiny model's settings: config overrides, a config factory, stored names and mapping."""
    return {
        "overrides": list(TINY_OVERRIDES),
        "config": tiny_config,
        "class_names": list(CLASS_NAMES),
        "label_to_category_id": dict(LABEL_TO_CATEGORY_ID),
    }


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from maskrcnn.checkpoints import save_model
    from maskrcnn.model.build import build_model

    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_model(path, model, cfg, class_names=CLASS_NAMES, label_to_category_id=LABEL_TO_CATEGORY_ID)
    return path


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (48, 64), "b.jpg": (64, 40), "c.png": (50, 50)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Commands run with --threads 1 (fast on a busy CPU); put the process's setting back after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
