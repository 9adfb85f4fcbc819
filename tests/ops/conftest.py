"""Fixtures for the ops tests: torchvision's recorded answers in <repo root>/../shared/parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_OPS = REPO_ROOT.parent / "shared" / "parity" / "ops.pt"


@pytest.fixture(scope="session")
def parity_ops(require_shared) -> dict:
    require_shared(PARITY_OPS, "parity fixture ops.pt")  # skipped locally, a failure when CI is set
    return torch.load(PARITY_OPS, weights_only=False)
