"""Fixtures for the ops tests: torchvision's recorded answers in <repo root>/../shared/parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_OPS = REPO_ROOT.parent / "shared" / "parity" / "ops.pt"


@pytest.fixture(scope="session")
def parity_ops() -> dict:
    if not PARITY_OPS.is_file():
        pytest.skip(f"parity fixture not found at {PARITY_OPS}")
    return torch.load(PARITY_OPS, weights_only=False)
