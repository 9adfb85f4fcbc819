"""Two CPU processes under torchrun (gloo) train the same tiny model as DDP and end
with identical weights, although each saw its own half of the images."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow

TINY = [
    "model.num_classes=4",
    "model.backbone.name=plain", "model.backbone.norm=bn", "model.backbone.freeze_at=0",
    "model.backbone.plain_channels=[8,16,16,16,16]", "model.backbone.fpn_channels=16",
    "model.anchors.sizes=[[8],[16],[24],[32],[48]]",
    "model.rpn.pre_nms_top_n_train=100", "model.rpn.post_nms_top_n_train=50", "model.rpn.batch_size_per_image=32",
    "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=8", "model.roi_heads.batch_size_per_image=32",
    "model.transform.min_size=[64]", "model.transform.max_size=64",
    "data.train.kind=shapes", "data.train.num_images=8", "data.train.image_size=64", "data.train.seed=0",
    "data.batch_size=2",
    "solver.lr=0.01", "solver.max_iter=4", "solver.warmup_iters=0",
    "train.device=cpu", "train.checkpoint_period=2", "train.log_period=1",
]


def test_two_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "run"
    sets = TINY + [f"data.train.annotations={tmp_path}/data/train.json", f"train.output_dir={out}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "maskrcnn.engine.train"]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    fingerprints = summary["rank_weight_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]

    last = torch.load(out / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and len(last["rng"]) == 2  # each rank's generators kept
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])
    # only rank 0 wrote files, and it logged every iteration once
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["type"] == "train"] == [1, 2, 3, 4]
    final = torch.load(out / "model_final.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], v) for k, v in last["model"].items())
