"""Every picture in docs/images says what made it, and was made from the recipes as they are.

`make pictures` (scripts/make_doc_pictures.py) redraws them; each PNG carries its recipe,
the hash of that recipe's settings and the command in its text metadata. When a recipe
changes, its pictures fail here until they are redrawn.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = REPO_ROOT / "docs" / "images"
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from picture_provenance import KEYS, read, recipe_hash, stamp

PICTURES = sorted(IMAGES.glob("*.png"))


@pytest.mark.parametrize("picture", PICTURES, ids=lambda p: p.name)
def test_every_picture_was_drawn_from_the_current_recipe(picture):
    record = read(picture)
    missing = [key for key in KEYS if not record.get(key)]
    assert not missing, f"{picture.name} does not say what made it ({missing}): redraw it with `make pictures`"
    assert not re.search(r"(?<![\w.])/(?:work|home|root|tmp|Users)/", record["maskrcnn.command"]), (
        f"{picture.name}: its command names a path of the machine it was drawn on"
    )
    assert record["maskrcnn.recipe_hash"] == recipe_hash(record["maskrcnn.recipe"]), (
        f"{picture.name} was drawn from another version of the {record['maskrcnn.recipe']} recipe: "
        "redraw it with `make pictures`"
    )


def test_every_picture_is_shown_and_every_shown_picture_exists():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    shown_by = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)|<img src=\"([^\"]+\.png)\"")  # markdown and HTML pictures
    shown = {Path(a or b).name for page in pages for a, b in shown_by.findall(page.read_text())}
    present = {p.name for p in PICTURES}
    assert shown <= present, f"pages show pictures that are not there: {sorted(shown - present)}"
    assert present <= shown, f"pictures no page shows: {sorted(present - shown)}"


def test_a_changed_recipe_is_noticed(tmp_path):
    from PIL import Image

    path = tmp_path / "p.png"
    Image.new("RGB", (4, 4)).save(path)
    assert read(path) == {}
    stamp(path, "shapes_demo", "make demo")
    assert read(path) == {"maskrcnn.recipe": "shapes_demo", "maskrcnn.recipe_hash": recipe_hash("shapes_demo"),
                          "maskrcnn.command": "make demo"}
    assert recipe_hash("shapes_demo") != recipe_hash("nuclei")
