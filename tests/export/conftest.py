"""Shared helpers for the export tests: run a small module through ONNX Runtime."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

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
