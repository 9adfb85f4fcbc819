"""What made a picture in docs/images: its recipe, a hash of the recipe's settings, the command.

The record sits in the PNG's text chunks (`maskrcnn.recipe`, `maskrcnn.recipe_hash`,
`maskrcnn.command`), so it travels with the file; tests/docs/test_doc_pictures.py compares
it with the recipes as they are now.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from PIL import Image
from PIL.PngImagePlugin import PngInfo

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "src" / "maskrcnn" / "configs"
KEYS = ("maskrcnn.recipe", "maskrcnn.recipe_hash", "maskrcnn.command")


def recipe_hash(name: str) -> str:
    """16 hex digits of the recipe's settings (its YAML parsed: comments and layout do not count)."""
    settings = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def stamp(path: Path, recipe: str, command: str) -> None:
    """Rewrite the PNG at `path` with its provenance in text chunks (pixels unchanged)."""
    info = PngInfo()
    info.add_text("maskrcnn.recipe", recipe)
    info.add_text("maskrcnn.recipe_hash", recipe_hash(recipe))
    info.add_text("maskrcnn.command", command)
    with Image.open(path) as image:
        image.load()
        pixels = image.convert("RGB") if image.mode not in ("RGB", "RGBA") else image.copy()
    pixels.save(path, pnginfo=info, optimize=True)


def read(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        return {key: value for key, value in getattr(image, "text", {}).items() if key in KEYS}
