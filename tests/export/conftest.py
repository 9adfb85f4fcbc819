"""Shared helpers for the export tests: run a small module through ONNX Runtime."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from tiny_model import CLASS_NAMES, LABEL_TO_CATEGORY_ID, tiny_overrides

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture()
def run_in_onnxruntime():
    """run(module, example, inputs, names) -> ONNX Runtime outputs for each of `inputs`."""
    return _run_in_onnxruntime


def _run_in_onnxruntime(module: torch.nn.Module, example: tuple, inputs: list[tuple], names: list[str], opset: int = 17):
    """Export `module` traced on `example` (every input dimension dynamic) and run it on each of `inputs`."""
    from maskrcnn.export.onnx_ops import register_onnx_symbolics

    register_onnx_symbolics(opset)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, example, buffer, dynamo=False, opset_version=opset, input_names=names,
            dynamic_axes={n: {i: f"{n}_{i}" for i in range(t.dim())} for n, t in zip(names, example)},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return [session.run(None, {n: t.numpy() for n, t in zip(names, args)}) for args in inputs]


TINY_OVERRIDES = tiny_overrides(max_size=96)


@pytest.fixture(scope="session")
def tiny_checkpoint_factory(tmp_path_factory):
    """make(extra_overrides) -> a native checkpoint of a tiny seeded random model (plain CNN + FPN)."""
    from maskrcnn.checkpoints import save_model
    from maskrcnn.config import load_config
    from maskrcnn.model.build import build_model

    def make(extra: list[str] | None = None):
        cfg = load_config("shapes_demo", TINY_OVERRIDES + list(extra or []))
        torch.manual_seed(0)
        model = build_model(cfg.model).eval()
        path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
        save_model(path, model, cfg, class_names=CLASS_NAMES, label_to_category_id=LABEL_TO_CATEGORY_ID)
        return path, model

    return make
