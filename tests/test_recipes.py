"""The built-in recipes (docs/recipes.md): they load, build, state their lr for their batch,
and the nuclei recipe trains a step and sees every image at its fixed scale."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.data.build import build_dataset
from maskrcnn.engine.run_setup import (
    FrozenFromScratchError,
    check_not_frozen_from_scratch,
)
from maskrcnn.engine.schedule import build_optimizer
from maskrcnn.engine.train import train_step
from maskrcnn.model.build import build_model

RECIPES = ("shapes_demo", "nuclei", "finetune_coco")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_states_its_lr_for_its_batch(name):
    cfg = load_config(name)
    assert cfg.solver.reference_batch_size == cfg.data.batch_size
    assert cfg.solver.scale_lr == "none"


@pytest.mark.parametrize("name", ("shapes_demo", "nuclei"))
def test_from_scratch_recipes_pass_the_frozen_weights_check(name):
    check_not_frozen_from_scratch(load_config(name))


def test_finetune_recipe_needs_pretrained_weights():
    cfg = load_config("finetune_coco")
    assert cfg.model.backbone.norm == "frozen_bn" and cfg.model.backbone.freeze_at == 2
    with pytest.raises(FrozenFromScratchError, match="--init-weights"):
        check_not_frozen_from_scratch(cfg)
    check_not_frozen_from_scratch(load_config("finetune_coco", ["train.init_weights=coco.pth"]))


def test_nuclei_recipe_is_sized_for_dense_scenes():
    cfg = load_config("nuclei")
    heads, rpn = cfg.model.roi_heads, cfg.model.rpn
    assert heads.detections_per_img >= 400 and rpn.post_nms_top_n_test >= heads.detections_per_img
    smallest, largest = min(min(s) for s in cfg.model.anchors.sizes), max(max(s) for s in cfg.model.anchors.sizes)
    scale = cfg.model.transform.fixed_scale
    assert smallest <= 8 * scale and largest >= 60 * scale  # 8-60 px nuclei at the network's scale


def test_nuclei_recipe_trains_a_step_and_keeps_the_pixel_scale(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(
        "nuclei", [f"data.train.annotations={tmp_path}/train.json", "data.train.num_images=2", "data.train.image_size=256"]
    )
    dataset = build_dataset(cfg.data.train, cfg.data.augment, train=True)
    images, targets = zip(*[dataset[i][:2] for i in range(2)])
    assert all(max(image.shape[1:]) <= cfg.data.augment.crop_size for image in images)
    model = build_model(cfg.model).train()
    optimizer = build_optimizer(model, cfg.solver)
    losses = train_step(
        model, list(images), list(targets), optimizer=optimizer, scaler=torch.amp.GradScaler(enabled=False), iteration=0
    )
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert losses["loss_mask"] < 3.0  # GroupNorm in the mask head keeps the first mask loss near 1
    model.eval()
    batch, _ = model.transform([torch.rand(3, 256, 320), torch.rand(3, 520, 696)])
    assert batch.image_sizes == [(512, 640), (1040, 1392)]
    # DSB's largest images (1040 x 1388) are doubled too, as the training windows are
    batch, _ = model.transform([torch.rand(3, 1040, 1388)])
    assert batch.image_sizes == [(2080, 2776)]


def test_nuclei_recipe_fits_its_training_in_15_minutes():
    solver = load_config("nuclei").solver
    assert 0 < solver.max_time_s <= 14 * 60  # a margin for the last iteration and the final save


def test_nuclei_recipe_starts_from_its_shipped_weights():
    from maskrcnn.engine.init_weights import load_init_weights
    from maskrcnn.shipped_weights import resolve_weights

    cfg = load_config("nuclei")
    path = resolve_weights(cfg.train.init_weights)
    assert path.is_file() and path.stat().st_size < 10 * 2**20  # shipped in float16: ~8 MiB
    model = build_model(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_init_weights(model, cfg.train.init_weights)
    assert report.loaded and not report.newly_initialised and not report.not_in_file
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) == len([k for k, v in before.items() if v.is_floating_point()])  # every tensor replaced
