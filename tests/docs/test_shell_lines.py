"""Every shell line in README.md and docs/*.md is run by a test, so none can go stale.

Shell fences are ```bash, ```sh, ```shell and ```console. ```bash run blocks are run as
they are by tests/docs/test_guides.py; every other shell line must be a key of
tests/docs/shell_lines.py, which says how it is run (as written on small stand-in files,
by a stand-in, or by another named test). A fence without a language whose first line
looks like a command must say what it is (```bash, or ```text for a synopsis or output).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shell_lines import REGISTRY, AsWritten, CoveredBy, StandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^[ \t]*```([^\n`]*)\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
COMMAND_START = re.compile(r"^(\$ |maskrcnn |make |python3? |\.venv/|pip |curl |pytest |torchrun |source |cd )")
TRAILING_COMMENT = re.compile(r"\s+#(?:\s.*)?$")
NEEDS = re.compile(r"#\s*needs:")


def shell_commands(block: str, *, prompted: bool = False) -> list[tuple[str, str]]:
    """(command without its trailing comment, the whole text) for each command of a block:
    `\\` continuations joined, a here-document kept with its command, comment lines skipped.
    `prompted` (a ```console block): only lines after a `$ ` prompt are commands."""
    commands = []
    lines = block.splitlines()
    if prompted:
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [line]
        while parts[-1].endswith("\\") and i < len(lines):
            parts[-1] = parts[-1][:-1].rstrip()
            parts.append(lines[i].strip())
            i += 1
        text = " ".join(p.strip() for p in parts)
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", text)
        if heredoc:
            end = heredoc.group(1)
            while i < len(lines) and lines[i].strip() != end:
                text += "\n" + lines[i]
                i += 1
            text += "\n" + end
            i += 1
        first_line, *rest = text.split("\n", 1)
        command = TRAILING_COMMENT.sub("", first_line).strip()
        commands.append((command + ("\n" + rest[0] if rest else ""), text))
    return commands


def docs_shell_lines() -> list[tuple[str, str, str]]:
    """(page, command, full text) of every shell line outside ```bash run fences."""
    found = []
    for page in PAGES:
        for info, body in FENCE.findall(page.read_text()):
            words = info.split()
            if not words or words[0] not in SHELL_LANGUAGES or words[1:2] == ["run"]:
                continue
            for command, text in shell_commands(textwrap.dedent(body), prompted=words[0] == "console"):
                found.append((page.relative_to(REPO_ROOT).as_posix(), command, text))
    return found


def test_the_extractor_joins_continuations_and_strips_comments():
    block = "# a comment\nmaskrcnn a \\\n  --b c  # needs: x\n\npython - <<'EOF'\nprint(1)\nEOF\n"
    assert shell_commands(block) == [
        ("maskrcnn a --b c", "maskrcnn a --b c  # needs: x"),
        ("python - <<'EOF'\nprint(1)\nEOF", "python - <<'EOF'\nprint(1)\nEOF"),
    ]


def test_untagged_fences_that_hold_commands_say_what_they_are():
    untagged = [
        f"{page.relative_to(REPO_ROOT)}: {body.splitlines()[0][:80]}"
        for page in PAGES
        for info, body in FENCE.findall(page.read_text())
        if not info.strip() and body.strip() and COMMAND_START.match(body.lstrip())
    ]
    assert not untagged, "tag these fences ```bash (run by a test) or ```text (a synopsis or output):\n" + "\n".join(untagged)


def test_every_shell_line_is_registered():
    missing = [f"{page}: {command}" for page, command, _ in docs_shell_lines() if command not in REGISTRY]
    assert not missing, (
        "shell lines no test runs: add each to tests/docs/shell_lines.py (REGISTRY), or make its fence "
        "```bash run:\n" + "\n".join(missing)
    )


def test_lines_that_need_user_files_say_so_and_have_a_stand_in():
    for page, command, text in docs_shell_lines():
        entry = REGISTRY.get(command)
        if NEEDS.search(text):
            assert isinstance(entry, AsWritten | StandIn) and entry.needs, f"{page}: {command}: no stand-in for its needs"


def test_registry_has_no_stale_entries():
    used = {command for _, command, _ in docs_shell_lines()}
    stale = [command for command in REGISTRY if command not in used]
    assert not stale, "entries of tests/docs/shell_lines.py that no page holds any more:\n" + "\n".join(stale)


@pytest.mark.parametrize("command", [c for c, e in REGISTRY.items() if isinstance(e, CoveredBy)])
def test_covering_tests_exist(command):
    path, name = REGISTRY[command].test.split("::")
    tree = ast.parse((REPO_ROOT / path).read_text())
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert name in names, f"{command}: {path} has no {name}"


# --- running the lines -----------------------------------------------------------------------


def run_shell(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MASKRCNN_REPO"] = str(REPO_ROOT)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=False, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"failed ({result.returncode}):\n{script}\n--- stdout ---\n{result.stdout[-3000:]}\n"
        f"--- stderr ---\n{result.stderr[-3000:]}"
    )
    return result


class StandIns:
    """The files a user would bring, made once (small) in one folder shared by every line."""

    def __init__(self, root: Path):
        self.root = root
        self.made: set[str] = set()

    def need(self, name: str) -> None:
        if name not in self.made:
            getattr(self, f"make_{name}")()
            self.made.add(name)

    def make_demo(self) -> None:
        run_shell("maskrcnn demo --output runs/demo --iters 12 --train-images 8 --val-images 3 --overlays 1 "
                  "--threads 1", self.root)

    def make_photo(self) -> None:
        from maskrcnn.data.shapes import render_shapes_image

        Image.fromarray(render_shapes_image(seed=3, index=0, image_size=160, min_shapes=2, max_shapes=4)[0]).save(self.root / "photo.jpg")

    def make_demo_predictions(self) -> None:
        self.need("demo")
        run_shell("maskrcnn predict 'runs/demo/data/images/val_*.png' --weights runs/demo/model_final.pt --output runs/predict "
                  "--score-threshold 0.05 --threads 1 --quiet", self.root)

    def make_coco_file(self) -> None:
        import torch

        from maskrcnn.config import load_config
        from maskrcnn.model.build import build_model

        torch.manual_seed(0)
        model = build_model(load_config("maskrcnn_resnet50_fpn").model)
        torch.save(model.state_dict(), self.root / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")

    def make_coco_sets(self) -> None:
        from maskrcnn.data.shapes import generate_shapes

        for split, seed, count in (("train", 0, 4), ("val", 1, 2)):
            json_path = generate_shapes(self.root / f"{split}_set", num_images=count, image_size=96, seed=seed)
            shutil.move(json_path, self.root / f"{split}.json")  # file names are relative to the images folder
            shutil.move(json_path.parent / "images", self.root / f"{split}_images")

    def make_cells(self) -> None:
        from maskrcnn.data.nuclei import render_nuclei_image

        for split, seed, count in (("train", 0, 2), ("val", 1, 1)):
            for folder in ("images", "labels"):
                (self.root / "cells" / split / folder).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels, masks, _ = render_nuclei_image(seed, index, sizes=((128, 128),))
                labels = np.zeros(pixels.shape[:2], np.uint16)
                for number, mask in enumerate(masks, start=1):
                    labels[mask] = number
                Image.fromarray(pixels).save(self.root / "cells" / split / "images" / f"c{index}.png")
                Image.fromarray(labels).save(self.root / "cells" / split / "labels" / f"c{index}.png")

    def make_cells_json(self) -> None:
        self.need("cells")
        for split in ("train", "val"):
            run_shell(f"maskrcnn import-masks cells/{split} --layout labels --category nucleus --output {split}.json",
                      self.root)

    def make_cells_run(self) -> None:
        self.need("cells_json")
        run_shell("maskrcnn train --config nuclei --output runs/cells --set data.train.kind=coco "
                  "--set data.train.annotations=train.json --set data.train.images=cells/train/images "
                  "--set data.val.kind=coco --set data.val.annotations=val.json --set data.val.images=cells/val/images "
                  "--set solver.max_iter=2 --set solver.warmup_iters=1 --threads 1 --set model.transform.fixed_scale=1.0 "
                  "--set data.augment.crop_size=96 --set model.test_augment=none", self.root)

    def make_slide(self) -> None:
        from maskrcnn.data.shapes import render_shapes_image

        self.need("demo")
        tiles = [render_shapes_image(seed=4, index=i, image_size=128, min_shapes=1, max_shapes=4)[0] for i in range(16)]
        rows = [np.concatenate(tiles[r * 4:(r + 1) * 4], axis=1) for r in range(4)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(self.root / "slide.tif")
        shutil.copy(self.root / "runs" / "demo" / "model_final.pt", self.root / "model.pt")


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, StandIns]:
    """One StandIns per folder of the registry, made on first use."""
    root = tmp_path_factory.mktemp("docs_shell_lines")
    folders: dict[str, StandIns] = {}

    def at(folder: str) -> StandIns:
        if folder not in folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
            folders[folder] = StandIns(root / folder)
        return folders[folder]

    return at


RUNNABLE = [c for c, e in REGISTRY.items() if isinstance(e, AsWritten | StandIn)]


@pytest.mark.parametrize("command", RUNNABLE, ids=[c[:60] for c in RUNNABLE])
def test_shell_line_runs(command, stand_ins):  # stand_ins: folder -> StandIns
    entry = REGISTRY[command]
    folder = stand_ins(entry.folder)
    for name in entry.needs:
        folder.need(name)
    script = entry.script if isinstance(entry, StandIn) else f"{command} {entry.extra}".strip()
    run_shell(script, folder.root)
