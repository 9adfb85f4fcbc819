"""The base install runs without the optional extras tensorboard and geo: nothing imports them
until the feature is asked for, and then a missing package is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

BLOCKED = """
import sys
for name in ("shapely", "tensorboard", "torch.utils.tensorboard"):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
"""


def test_extras_are_not_base_requirements():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert "tensorboard" not in base and "shapely" not in base
    assert any(r.startswith("tensorboard") for r in project["optional-dependencies"]["tensorboard"])
    assert any(r.startswith("shapely") for r in project["optional-dependencies"]["geo"])


def test_modules_import_without_the_extras_and_geojson_says_what_to_install():
    code = BLOCKED + """
import maskrcnn.engine.train, maskrcnn.commands.predict, maskrcnn.data.labelme, maskrcnn.data.yolo_seg
from maskrcnn.commands.predict import PredictOptions, check_options
check_options(PredictOptions(weights="w.pt"))
try:
    check_options(PredictOptions(weights="w.pt", geojson=True))
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MissingGeoExtraError --geojson needs shapely: pip install 'maskrcnn[geo]'"
