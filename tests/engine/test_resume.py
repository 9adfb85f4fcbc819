"""Kill a real (tiny) training run with SIGKILL after a checkpoint, resume it, and get
bit-for-bit the weights of a run that was never interrupted.

Each run is a subprocess with a generous time limit (`SUBPROCESS_TIMEOUT_S`): the limit
stops a hang; it must not fail a slow machine. The per-run limit of 240 s was the one
thing here that depends on the machine's load: at a load average of 14-16 on the two
cores the three runs took 152 s (about 50 s each, 10 s on a quiet machine), so a few
times more load reached it.
"""

import os
import signal
import subprocess
import sys

import pytest
import torch
from tiny_model import TINY_TRAINING_MODEL

from maskrcnn.engine.metrics import read_metrics
from maskrcnn.engine.train import KILL_AFTER_ITER_ENV

pytestmark = pytest.mark.slow
SUBPROCESS_TIMEOUT_S = 1200

# A plain-CNN Mask R-CNN on eight 64 px shapes images: a few tenths of a second per step.
TINY = [
    *TINY_TRAINING_MODEL,
    "data.train.kind=shapes", "data.train.num_images=8", "data.train.image_size=64", "data.train.seed=0",
    "data.batch_size=2",
    "solver.lr=0.01", "solver.max_iter=12", "solver.warmup_iters=4", "solver.schedule=cosine",
    "train.device=cpu", "train.checkpoint_period=4", "train.log_period=2",
]


def run_training(out, data_dir, *extra, kill_after: int | None = None, val: bool = False) -> subprocess.CompletedProcess:
    sets = TINY + [f"data.train.annotations={data_dir}/train.json", f"train.output_dir={out}"]
    if val:
        sets += ["data.val.kind=shapes", "data.val.num_images=3", "data.val.image_size=64", "data.val.seed=5",
                 f"data.val.annotations={data_dir}/val.json", "train.eval_period=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(KILL_AFTER_ITER_ENV, None)
    if kill_after is not None:
        env[KILL_AFTER_ITER_ENV] = str(kill_after)
    cmd = [sys.executable, "-m", "maskrcnn.engine.train"]  # no --config: the defaults + overrides
    for item in sets:
        cmd += ["--set", item]
    return subprocess.run(cmd + list(extra), env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    data = tmp_path / "data"
    straight = run_training(tmp_path / "straight", data, val=True)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = run_training(tmp_path / "killed", data, val=True, kill_after=6)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert last["iteration"] == 4  # iterations 5-6 were done but never saved
    assert not (tmp_path / "killed" / "model_final.pt").exists()

    resumed = run_training(tmp_path / "killed", data, "--resume", val=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr

    a = torch.load(tmp_path / "straight" / "model_final.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "model_final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ after resume: {differing[:5]}"
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["iteration"] == 12

    # metrics.jsonl of the resumed run reads like the uninterrupted one (no duplicates)
    def losses(path):
        return [(r["iteration"], r.get("loss_total"), r.get("segm_AP")) for r in read_metrics(path / "metrics.jsonl")]

    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")
    assert (tmp_path / "killed" / "best.pt").is_file()
    assert (tmp_path / "killed" / "loss_curve.png").is_file()
