"""Starting a run from weights: native checkpoints, torchvision Mask R-CNN state dicts
(current and old key names, another class count), ImageNet ResNet state dicts; the
report; one clear error for weights that do not fit."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from maskrcnn.checkpoints import CheckpointError, save_model
from maskrcnn.config import load_config
from maskrcnn.engine.init_weights import (
    KIND_IMAGENET,
    KIND_NATIVE,
    KIND_TORCHVISION,
    InitWeightsError,
    format_init_report,
    load_init_weights,
)
from maskrcnn.model.build import build_model
from maskrcnn.model.resnet import ResNet

PARITY = Path(__file__).resolve().parents[2] / ".." / "shared" / "parity"
CLASS_KEYS = {
    "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias",
    "roi_heads.mask_predictor.mask_fcn_logits.weight", "roi_heads.mask_predictor.mask_fcn_logits.bias",
}
# A ResNet-18-FPN Mask R-CNN with small heads: the layout of torchvision's, a tenth the size.
R18 = ["model.backbone.name=resnet18", "model.backbone.fpn_channels=32", "model.roi_heads.box_head_dim=64",
       "model.roi_heads.mask_head_channels=16"]


def r18(num_classes: int, *extra: str, seed: int = 0):
    cfg = load_config("maskrcnn_resnet50_fpn", [*R18, f"model.num_classes={num_classes}", *extra])
    torch.manual_seed(seed)
    return build_model(cfg.model), cfg


def to_old_torchvision_names(state_dict: dict) -> dict:
    """Our (= current torchvision) names -> the names of torchvision releases before 0.13."""
    old = {}
    for key, value in state_dict.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        for i in range(4):
            key = key.replace(f"backbone.fpn.inner_blocks.{i}.0.", f"backbone.fpn.inner_blocks.{i}.")
            key = key.replace(f"backbone.fpn.layer_blocks.{i}.0.", f"backbone.fpn.layer_blocks.{i}.")
            key = key.replace(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}.")
        old[key] = value
    return old


def test_torchvision_state_dict_with_old_names_and_other_class_count(tmp_path):
    source, _ = r18(91, seed=1)
    file_weights = to_old_torchvision_names(source.state_dict())
    assert "rpn.head.conv.weight" in file_weights and "roi_heads.mask_head.mask_fcn1.weight" in file_weights
    torch.save(file_weights, tmp_path / "coco.pth")

    model, cfg = r18(4, seed=2)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_init_weights(model, tmp_path / "coco.pth")
    assert report.kind == KIND_TORCHVISION and report.file_num_classes == 91
    assert set(report.newly_initialised) == CLASS_KEYS
    assert report.not_in_file == [] and report.dropped == []
    after = model.state_dict()
    for key in CLASS_KEYS:  # keep the new model's own random values
        assert torch.equal(after[key], own[key]), key
    loaded = [k for k in after if k not in CLASS_KEYS and not k.endswith("num_batches_tracked")]
    assert sorted(report.loaded) == sorted(loaded)
    for key in loaded:
        assert torch.equal(after[key], source.state_dict()[key]), key
    text = format_init_report(report, cfg.model.num_classes)
    assert "loaded" in text and "newly initialised" in text and "not in the file" in text
    assert "roi_heads.box_predictor.cls_score (2)" in text and "91 classes" in text


def test_same_class_count_loads_everything_and_native_checkpoints_work(tmp_path):
    source, cfg = r18(4, seed=3)
    save_model(tmp_path / "model_final.pt", source, cfg)
    model, _ = r18(4, seed=4)
    report = load_init_weights(model, tmp_path / "model_final.pt")
    assert report.kind == KIND_NATIVE and report.newly_initialised == [] and report.not_in_file == []
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def imagenet_state_dict(name: str, seed: int = 5) -> dict:
    """What torchvision's `resnet18(weights=...)`.state_dict() holds: trunk with BatchNorm + fc."""
    torch.manual_seed(seed)
    trunk = ResNet(name=name, norm="bn")
    with torch.no_grad():  # non-trivial statistics, so a copy can be told from the defaults
        for module in trunk.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    state = trunk.state_dict()
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_imagenet_resnet_fills_the_backbone_only(tmp_path):
    file_weights = imagenet_state_dict("resnet18")
    torch.save(file_weights, tmp_path / "resnet18_imagenet.pth")
    model, _ = r18(4)  # frozen BatchNorm, as the torchvision configs
    report = load_init_weights(model, tmp_path / "resnet18_imagenet.pth")
    assert report.kind == KIND_IMAGENET
    assert report.dropped == ["fc.weight", "fc.bias"]
    assert all(k.startswith("backbone.body.") for k in report.loaded)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in report.not_in_file} == {
        "backbone.fpn", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.mask_head",
        "roi_heads.mask_predictor"}
    state = model.state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer4.1.bn2.weight", "layer3.0.downsample.1.running_mean"):
        assert torch.equal(state[f"backbone.body.{key}"], file_weights[key]), key
    assert "fc" in format_init_report(report)


def test_imagenet_res5_goes_to_the_c4_head(tmp_path):
    torch.save(imagenet_state_dict("resnet18"), tmp_path / "r18.pth")
    model, _ = r18(3, "model.backbone.layout=c4", "model.roi_heads.box_head=res5",
                   "model.anchors.sizes=[[32,64,128]]", "model.anchors.aspect_ratios=[[0.5,1.0,2.0]]")
    report = load_init_weights(model, tmp_path / "r18.pth")
    assert any(k.startswith("roi_heads.shared_head.layer4.") for k in report.loaded)
    assert not any(k.startswith("roi_heads.shared_head.") for k in report.not_in_file)


def test_weights_that_do_not_fit_stop_naming_the_first_keys(tmp_path):
    other, _ = r18(4, "model.backbone.fpn_channels=64")
    torch.save(other.state_dict(), tmp_path / "wider_fpn.pth")
    model, _ = r18(4)
    with pytest.raises(InitWeightsError, match=r"shape mismatch: backbone\.fpn\.inner_blocks\.0\.0\.weight: file \(64,"):
        load_init_weights(model, tmp_path / "wider_fpn.pth")

    torch.save(imagenet_state_dict("resnet34"), tmp_path / "r34.pth")  # more blocks than resnet18
    with pytest.raises(InitWeightsError, match=r"not in the model: backbone\.body\.layer1\.2\."):
        load_init_weights(model, tmp_path / "r34.pth")

    partial = {k: v for k, v in other.state_dict().items() if not k.startswith("rpn.")}
    model_b, _ = r18(4, "model.backbone.fpn_channels=64")
    torch.save(partial, tmp_path / "no_rpn.pth")
    with pytest.raises(InitWeightsError, match=r"missing from the file: rpn\.head"):
        load_init_weights(model_b, tmp_path / "no_rpn.pth")

    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match=r"train.init_weights: .*junk.pth: not a PyTorch checkpoint"):
        load_init_weights(model, tmp_path / "junk.pth")


def test_a_real_torchvision_key_list_from_the_parity_weights(tmp_path):
    """torchvision's own R50-FPN keys (spec.json) and the generator the parity fixtures used."""
    spec_path = PARITY / "maskrcnn_resnet50_fpn" / "spec.json"
    if not spec_path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{spec_path} is missing")
        pytest.skip("../shared/parity is not here")
    module_spec = importlib.util.spec_from_file_location("parity_make_weights", PARITY / "make_weights.py")
    make_weights = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(make_weights)
    weights = make_weights.make_weights(make_weights.load_spec(spec_path), seed=json.loads(spec_path.read_text())["seed"])
    torch.save(weights, tmp_path / "maskrcnn_resnet50_fpn_coco.pth")
    cfg = load_config("maskrcnn_resnet50_fpn", ["model.num_classes=3"])
    model = build_model(cfg.model)
    report = load_init_weights(model, tmp_path / "maskrcnn_resnet50_fpn_coco.pth")
    assert set(report.newly_initialised) == CLASS_KEYS and report.file_num_classes == 91
    assert len(report.loaded) == len([k for k in weights if not k.endswith("num_batches_tracked")]) - len(CLASS_KEYS)
    key = "backbone.body.layer2.0.conv1.weight"
    assert torch.equal(model.state_dict()[key], weights[key])
