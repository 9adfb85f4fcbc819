"""Every shell block in docs/*.md marked runnable (```bash run) runs, so the guides cannot drift.

A guide's runnable blocks run in order, in one fresh folder per guide (later blocks see what
earlier ones wrote), with the project's `maskrcnn` on PATH. Blocks are written at small
sizes so the whole set stays within the test budget.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
RUNNABLE_BLOCK = re.compile(r"^```bash run[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_blocks(markdown: str) -> list[str]:
    return [block for block in RUNNABLE_BLOCK.findall(markdown)]


def guides_with_runnable_blocks() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if runnable_blocks(p.read_text()))


def test_the_block_finder_takes_only_marked_blocks():
    text = "```bash\nnot this\n```\n\n```bash run\necho one\n```\n```bash run small\necho two\n```\n"
    assert runnable_blocks(text) == ["echo one\n", "echo two\n"]


@pytest.mark.parametrize("guide", guides_with_runnable_blocks(), ids=lambda p: p.name)
def test_guide_commands_run(guide: Path, tmp_path: Path):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MASKRCNN_REPO"] = str(REPO_ROOT)  # guides may refer to files shipped in the repo
    for number, block in enumerate(runnable_blocks(guide.read_text()), start=1):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"{guide.name} block {number} failed ({result.returncode}):\n{block}\n"
            f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
        )
