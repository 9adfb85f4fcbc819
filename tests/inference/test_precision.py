"""--precision bf16: refused where the CPU has no bfloat16 instructions; where it has them,
the convolutions run oneDNN's bf16 kernels, the ranking layers stay float32, and the
detections agree with float32 ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.cli import main
from maskrcnn.inference.precision import (
    PrecisionError,
    check_precision,
    cpu_flags,
    has_bf16_instructions,
    keep_heads_float32,
    precision_context,
)

CPU = torch.device("cpu")
needs_bf16 = pytest.mark.skipif(not has_bf16_instructions(), reason="this CPU has no avx512_bf16 / amx_bf16")


def tiny_model(extra: list[str] | None = None):
    from maskrcnn.config import load_config
    from maskrcnn.model.build import build_model

    cfg = load_config("shapes_demo", [
        "model.transform.min_size=[96]", "model.transform.max_size=128", "model.roi_heads.detections_per_img=20",
        "model.roi_heads.score_thresh=0.0", *(extra or []),
    ])
    torch.manual_seed(0)
    return build_model(cfg.model).eval(), cfg


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_bf16_is_refused_without_bfloat16_instructions():
    check_precision("fp32", CPU, flags=set())
    check_precision("bf16", CPU, flags={"avx2", "avx512_bf16"})
    check_precision("bf16", CPU, flags={"amx_bf16"})
    with pytest.raises(PrecisionError, match="no bfloat16 instructions .* use --precision fp32"):
        check_precision("bf16", CPU, flags={"avx2", "avx512f"})
    with pytest.raises(PrecisionError, match="expected one of fp32, bf16"):
        check_precision("fp16", CPU)


def test_predict_command_refuses_bf16_in_one_line(monkeypatch, tmp_path, capsys):
    from PIL import Image

    from maskrcnn.checkpoints import save_model

    model, cfg = tiny_model()
    save_model(tmp_path / "tiny.pt", model, cfg)
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr("maskrcnn.inference.precision.cpu_flags", lambda *a: {"avx2"})
    args = ["predict", str(tmp_path / "a.png"), "--weights", str(tmp_path / "tiny.pt"), "--output", str(tmp_path / "out")]
    args += ["--device", "cpu"]  # the CPU's refusal (on a GPU machine "auto" would take the GPU)
    assert main([*args, "--precision", "bf16"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskrcnn: error: --precision bf16: this CPU has no bfloat16 instructions") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_keep_heads_float32_changes_nothing_outside_autocast():
    model, _ = tiny_model()
    image = torch.rand(3, 80, 100, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        (before,) = model([image])
        keep_heads_float32(model)
        (after,) = model([image])
        assert type(model.rpn.head.cls_logits).__name__ == "Float32Conv2d"
        assert type(model.roi_heads.box_predictor.cls_score).__name__ == "Float32Linear"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = torch.randn(1, model.rpn.head.cls_logits.in_channels, 5, 5).to(torch.bfloat16)
            assert model.rpn.head.cls_logits(hidden).dtype == torch.float32
    assert torch.equal(before.boxes, after.boxes) and torch.equal(before.scores, after.scores)
    assert set(model.state_dict()) == set(tiny_model()[0].state_dict())


@needs_bf16
def test_prepared_convs_run_bfloat16_under_autocast():
    from maskrcnn.model.inference_opt import InferenceConv2d, prepare_for_inference

    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU()).eval()
    block[1].running_mean.uniform_(-0.5, 0.5)
    block[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 32, 20, 24)
    with torch.inference_mode():
        expected = block(x)
        prepare_for_inference(block)
        assert isinstance(block[0], InferenceConv2d)
        with precision_context("bf16", CPU):
            got = block(x.contiguous(memory_format=torch.channels_last))
        assert block[0].packed_weight_bf16 is not None  # converted and packed once
        float32_again = block(x.contiguous(memory_format=torch.channels_last))
    assert got.dtype == torch.bfloat16 and float32_again.dtype == torch.float32
    assert (got.float() - expected).abs().max() <= 0.02 * expected.abs().max()
    torch.testing.assert_close(float32_again, expected, atol=1e-4, rtol=1e-4)


@needs_bf16
def test_predictor_bf16_agrees_with_float32():
    from maskrcnn.evaluation.agreement import agreement_ap
    from maskrcnn.inference.predictor import Predictor
    from maskrcnn.model.inference_opt import prepare_for_inference

    fp32 = Predictor(prepare_for_inference(tiny_model()[0]), score_threshold=0.0)
    bf16 = Predictor(prepare_for_inference(tiny_model()[0]), score_threshold=0.0, precision="bf16")
    rng = np.random.default_rng(0)
    images = []
    for _ in range(3):
        image = np.full((90, 120, 3), 30, dtype=np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, 60), rng.integers(0, 90)
            image[y : y + 30, x : x + 30] = rng.integers(80, 255, 3)
        images.append(image)
    reference, candidate = fp32.predict_batch(images), bf16.predict_batch(images)
    assert all(c["scores"].dtype == np.float32 and c["boxes"].dtype == np.float32 for c in candidate)
    metrics = agreement_ap(reference, candidate)
    assert sum(len(r["scores"]) for r in reference) >= 30
    assert metrics["bbox_AP50"] >= 0.8 and metrics["segm_AP50"] >= 0.8, metrics
