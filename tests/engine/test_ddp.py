"""Distributed data parallel on the CPU (gloo).

- Two processes started by `torch.multiprocessing` (rendezvous through a file: no port
  to collide on) train a small regression with the real trainer: each process sees its
  own half of every pass, and 2 processes x batch B end with the weights of 1 process x
  batch 2B.
- Two processes under `torchrun` train a tiny Mask R-CNN from the command line and end
  with identical weights, although each saw its own half of the images.

Subprocesses get a generous time limit (`SUBPROCESS_TIMEOUT_S`): it is there to stop a
hang, not to measure speed, and a machine shared by many jobs can run these several times
slower than a quiet one.
"""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from maskrcnn.config import Config, apply_override
from maskrcnn.engine.distributed import cleanup_distributed
from maskrcnn.structures import Targets

pytestmark = pytest.mark.slow
SUBPROCESS_TIMEOUT_S = 1200
NUM_IMAGES = 12  # a multiple of 2 x 2 x B: no padding by the distributed sampler
ITERATIONS = 6  # two passes


class RecordingSet(torch.utils.data.Dataset):
    """Image i is a constant image of brightness i/12; the indices read are recorded."""

    num_classes = 2

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __len__(self) -> int:
        return NUM_IMAGES

    def __getitem__(self, i: int):
        self.seen.append(i)
        image = torch.full((3, 4, 4), i / NUM_IMAGES)
        image[1] *= 0.5
        targets = Targets(boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]), labels=torch.ones(1, dtype=torch.int64))
        return image, targets, {"image_id": i}


class Regression(nn.Module):
    """pred = w . (channel means) + b fit to 3 x brightness + 1.5; the loss is a mean over
    the batch, so the DDP average of two half-batch gradients is the full batch's."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, images, targets):
        features = torch.stack([im.mean(dim=(1, 2)) for im in images])  # (B, 3)
        pred = self.linear(features).squeeze(1)  # (B,)
        return {"loss_fit": F.mse_loss(pred, 3.0 * features[:, 0] + 1.5)}


def regression_cfg(out, batch_size: int) -> Config:
    cfg = Config()
    for item in (f"train.output_dir={out}", "train.device=cpu", f"data.batch_size={batch_size}",
                 f"solver.max_iter={ITERATIONS}", "solver.warmup_iters=0", "solver.lr=0.2", "solver.steps=[100]",
                 "train.checkpoint_period=0", "train.log_period=1", "data.group_by_aspect_ratio=false"):
        cfg = apply_override(cfg, item)
    return cfg


def _train_regression(out, batch_size: int) -> tuple[dict[str, torch.Tensor], list[int]]:
    from maskrcnn.engine.train import train

    torch.manual_seed(0)  # the same initial weights in every process
    model, dataset = Regression(), RecordingSet()
    train(regression_cfg(out, batch_size), model=model, train_set=dataset)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, dataset.seen


def _ddp_worker(rank: int, world_size: int, store: str, out: str, batch_size: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    finished = False
    try:
        weights, seen = _train_regression(out, batch_size)
        finished = True
    finally:
        cleanup_distributed(finished)  # plain destroy_process_group aborted rank 1 in ~1 run of 20
    torch.save({"weights": weights, "seen": seen}, f"{out}/rank{rank}.pt")


def test_each_rank_sees_its_own_half_and_two_by_b_matches_one_by_two_b(tmp_path):
    batch = 2
    context = mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path), batch), nprocs=2,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while not context.join(timeout=2):  # raises if a process failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the 2 processes were still running after {SUBPROCESS_TIMEOUT_S} s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single_weights, single_seen = _train_regression(tmp_path / "single", 2 * batch)

    per_pass = NUM_IMAGES // 2  # images one rank reads per pass
    for p in range(2):
        halves = [set(r["seen"][p * per_pass:(p + 1) * per_pass]) for r in ranks]
        assert not halves[0] & halves[1], f"pass {p}: both processes read {sorted(halves[0] & halves[1])}"
        assert halves[0] | halves[1] == set(range(NUM_IMAGES))
    for k in range(ITERATIONS):  # each update's global batch is the single process's batch
        together = sorted(ranks[0]["seen"][k * batch:(k + 1) * batch] + ranks[1]["seen"][k * batch:(k + 1) * batch])
        assert together == sorted(single_seen[k * 2 * batch:(k + 1) * 2 * batch]), f"update {k}"
    torch.manual_seed(0)
    initial = Regression().state_dict()
    for name, value in single_weights.items():
        assert not torch.allclose(value, initial[name], atol=1e-3), f"{name} did not train"
        torch.testing.assert_close(ranks[0]["weights"][name], value, rtol=1e-5, atol=1e-6)
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name])


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
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
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
