"""maskrcnn.runtime: glibc malloc keeps freed blocks for reuse; the CPU Predictor asks for it."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from maskrcnn import runtime
from maskrcnn.inference import predictor as predictor_module


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_applies_on_glibc_and_is_idempotent():
    assert runtime.reuse_freed_memory() is True
    assert runtime.reuse_freed_memory() is True
    torch.ones(20_000_000).sum()  # allocation and free still work after it


def test_cpu_predictor_asks_for_it(monkeypatch):
    calls = []
    monkeypatch.setattr(predictor_module, "reuse_freed_memory", lambda: calls.append(1) or True)
    predictor_module.Predictor(torch.nn.Identity(), device="cpu")
    assert calls == [1]
