"""Checkpoints: native round trip, torchvision state dicts (old and new keys), clear errors."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.checkpoints import (
    CheckpointError,
    convert_checkpoint,
    convert_torchvision_keys,
    load_model,
    load_state_dict_into,
    save_model,
)
from maskrcnn.config import load_config
from maskrcnn.model.build import build_model

TINY = [
    "model.num_classes=3",
    "model.backbone.name=plain",
    "model.backbone.norm=bn",
    "model.backbone.freeze_at=0",
    "model.backbone.plain_channels=[8,8,8,8,8]",
    "model.backbone.fpn_channels=8",
    "model.anchors.sizes=[[8],[16],[32],[64],[128]]",
    "model.rpn.pre_nms_top_n_test=50",
    "model.rpn.post_nms_top_n_test=20",
    "model.roi_heads.box_head_dim=16",
    "model.roi_heads.mask_head_channels=8",
    "model.transform.min_size=[48]",
    "model.transform.max_size=48",
    "model.roi_heads.score_thresh=0.0",
]


def tiny(seed: int = 0):
    cfg = load_config(None, TINY)
    torch.manual_seed(seed)
    return build_model(cfg.model).eval(), cfg


def run(model, image):
    with torch.no_grad():
        (det,) = model([image])
    return det


def test_native_round_trip_rebuilds_the_model_from_the_file(tmp_path):
    model, cfg = tiny()
    path = tmp_path / "model.pt"
    save_model(path, model, cfg, iteration=7)
    loaded, loaded_cfg = load_model(path)
    assert loaded_cfg == cfg and not loaded.training
    assert torch.load(path, weights_only=False)["iteration"] == 7
    image = torch.rand(3, 40, 48)
    a, b = run(model, image), run(loaded, image)
    assert len(a) > 0
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.masks, b.masks)


def test_plain_state_dict_needs_a_config(tmp_path):
    model, cfg = tiny()
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="holds no config; pass the built-in config"):
        load_model(path)
    loaded, _ = load_model(path, config=cfg)
    image = torch.rand(3, 48, 48)
    assert torch.equal(run(model, image).scores, run(loaded, image).scores)
    with pytest.raises(CheckpointError, match="no such file and not a built-in name"):
        load_model(path, config="no_such_config")
    # converted once, the file rebuilds its model alone
    native = tmp_path / "native.pt"
    convert_checkpoint(path, native, cfg)
    rebuilt, rebuilt_cfg = load_model(native)
    assert rebuilt_cfg == cfg and torch.equal(run(model, image).scores, run(rebuilt, image).scores)


def test_old_torchvision_key_names_are_mapped():
    old = {
        "backbone.fpn.inner_blocks.0.weight": 1,
        "backbone.fpn.layer_blocks.3.bias": 2,
        "rpn.head.conv.weight": 3,
        "roi_heads.mask_head.mask_fcn1.weight": 4,
        "roi_heads.mask_head.mask_fcn4.bias": 5,
        "backbone.body.layer1.0.conv1.weight": 6,
        "roi_heads.box_head.fc6.weight": 7,
    }
    assert convert_torchvision_keys(old) == {
        "backbone.fpn.inner_blocks.0.0.weight": 1,
        "backbone.fpn.layer_blocks.3.0.bias": 2,
        "rpn.head.conv.0.0.weight": 3,
        "roi_heads.mask_head.0.0.weight": 4,
        "roi_heads.mask_head.3.0.bias": 5,
        "backbone.body.layer1.0.conv1.weight": 6,
        "roi_heads.box_head.fc6.weight": 7,
    }
    assert convert_torchvision_keys({"module.rpn.head.conv.bias": 1}) == {"rpn.head.conv.0.0.bias": 1}


def test_a_state_dict_with_old_names_loads_into_the_model(tmp_path):
    source, cfg = tiny(seed=0)
    target, _ = tiny(seed=1)
    renames = {
        "rpn.head.conv.0.0.weight": "rpn.head.conv.weight",
        "rpn.head.conv.0.0.bias": "rpn.head.conv.bias",
        "backbone.fpn.inner_blocks.2.0.weight": "backbone.fpn.inner_blocks.2.weight",
        "roi_heads.mask_head.1.0.weight": "roi_heads.mask_head.mask_fcn2.weight",
    }
    old_style = {renames.get(k, k): v for k, v in source.state_dict().items()}
    old_style = {k: v for k, v in old_style.items() if not k.endswith("num_batches_tracked")}  # as old files
    load_state_dict_into(target, old_style)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    model, cfg = tiny()
    state = model.state_dict()
    missing = {k: v for k, v in state.items() if k != "roi_heads.box_predictor.cls_score.bias"}
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): roi_heads.box_predictor.cls_score.bias"):
        load_state_dict_into(model, missing)
    extra = {**state, "roi_heads.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): roi_heads.extra.weight"):
        load_state_dict_into(model, extra)
    other, other_cfg = tiny()
    path = tmp_path / "five_classes.pt"
    five = load_config(None, TINY + ["model.num_classes=5"])
    save_model(path, build_model(five.model), five)
    with pytest.raises(CheckpointError, match=r"shape mismatch key\(s\): roi_heads.box_predictor.cls_score.weight: "
                       r"checkpoint \(5, 16\) vs model \(3, 16\)"):
        load_model(path, config=other_cfg)


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.txt: not a PyTorch checkpoint"):
        load_model(text)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "missing.pt")
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(listing)
    odd = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "lr": 0.1}, odd)
    with pytest.raises(CheckpointError, match="neither a maskrcnn checkpoint"):
        load_model(odd)


def test_a_checkpoint_with_4_kib_flipped_is_refused_and_old_ones_still_load(tmp_path):
    model, cfg = tiny()
    save_model(tmp_path / "model.pt", model, cfg)
    stored = torch.load(tmp_path / "model.pt", weights_only=True)
    assert len(stored["weights_sha256"]) == 64

    data = bytearray((tmp_path / "model.pt").read_bytes())
    # flip 4 KiB inside the largest tensor's bytes (the zip holds them uncompressed)
    largest = max(stored["model"].values(), key=lambda t: t.numel())
    raw = largest.numpy().tobytes()
    start = data.find(raw[:64]) + len(raw) // 2 - 2048
    assert start > 64 and len(raw) > 8192
    data[start:start + 4096] = bytes(255 - b for b in data[start:start + 4096])
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"damaged.pt: the weights do not match the checksum stored in the file"):
        load_model(tmp_path / "damaged.pt")

    del stored["weights_sha256"]  # a checkpoint from before checksums existed
    torch.save(stored, tmp_path / "old.pt")
    loaded, _ = load_model(tmp_path / "old.pt")
    assert torch.equal(loaded.state_dict()[next(iter(stored["model"]))], next(iter(stored["model"].values())))


def test_training_checkpoints_are_verified_too(tmp_path):
    from maskrcnn.engine.resume_state import (
        load_training_checkpoint,
        model_checkpoint,
        save_checkpoint,
    )

    model, cfg = tiny()
    ckpt = model_checkpoint(model, cfg, iteration=1, optimizer={}, scheduler={}, rng=[])
    ckpt["model"]["backbone.fpn.inner_blocks.0.0.weight"][0, 0, 0, 0] += 1.0  # changed after the checksum
    save_checkpoint(tmp_path / "last.pt", ckpt)
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_training_checkpoint(tmp_path / "last.pt")
