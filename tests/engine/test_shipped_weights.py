"""Weights shipped in the package: named in train.init_weights, made by scripts/ship_weights.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import maskrcnn.shipped_weights as shipped
from maskrcnn.checkpoints import save_model
from maskrcnn.config import load_config
from maskrcnn.engine.init_weights import (
    KIND_NATIVE,
    InitWeightsError,
    load_init_weights,
)
from maskrcnn.model.build import build_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ship_weights.py"
SMALL = ["model.backbone.plain_channels=[32,32,32,32,32]", "model.backbone.fpn_channels=32",
         "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=32"]


def ship_weights_main():
    spec = importlib.util.spec_from_file_location("ship_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def small_nuclei(seed: int):
    cfg = load_config("nuclei", SMALL)
    torch.manual_seed(seed)
    return build_model(cfg.model), cfg


def test_ship_then_start_from_the_shipped_name(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    trained, cfg = small_nuclei(seed=1)
    save_model(tmp_path / "model_final.pt", trained, cfg)
    main = ship_weights_main()
    assert main([str(tmp_path / "model_final.pt"), "tiny_nuclei"]) == 0
    assert shipped.shipped_weight_names() == ["tiny_nuclei"]
    stored = torch.load(tmp_path / "weights" / "tiny_nuclei.pt", weights_only=True)["model"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())

    fresh, _ = small_nuclei(seed=2)
    report = load_init_weights(fresh, "tiny_nuclei")
    assert report.kind == KIND_NATIVE and not report.newly_initialised and not report.not_in_file
    for key, value in trained.state_dict().items():  # float32 again, equal up to float16 rounding
        got = fresh.state_dict()[key]
        assert got.dtype == value.dtype
        torch.testing.assert_close(got, value.half().to(value.dtype), rtol=0, atol=0)

    with pytest.raises(SystemExit, match="exists; pass --replace"):  # never over an existing file unasked
        main([str(tmp_path / "model_final.pt"), "tiny_nuclei"])
    assert main([str(tmp_path / "model_final.pt"), "tiny_nuclei", "--replace"]) == 0


def test_a_file_that_exists_wins_over_a_shipped_name(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "nuclei_synthetic.pt").write_bytes(b"")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.chdir(tmp_path)
    assert shipped.resolve_weights("nuclei_synthetic") == tmp_path / "weights" / "nuclei_synthetic.pt"
    Path("nuclei_synthetic").write_bytes(b"mine")
    assert shipped.resolve_weights("nuclei_synthetic") == Path("nuclei_synthetic")


def test_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "nuclei_synthetic.pt").write_bytes(b"")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    model, _ = small_nuclei(seed=0)
    with pytest.raises(InitWeightsError, match=r"nuclei_synth: no such checkpoint file \(or the name of shipped weights: nuclei_synthetic\)"):
        load_init_weights(model, "nuclei_synth")
