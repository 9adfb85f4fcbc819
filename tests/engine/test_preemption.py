"""A run survives its machine going away: SIGTERM at a random iteration saves the run, says
how to resume and exits with PREEMPTED_EXIT_STATUS; resuming gives bit-for-bit the weights
of a run that was never interrupted. A full disk while saving keeps the previous last.pt.

The subprocess runs have a generous time limit: it stops a hang, it must not fail a slow
machine (tests/engine/test_resume.py says why).
"""

from __future__ import annotations

import errno
import io
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_model import TINY_TRAINING_MODEL

from maskrcnn import cli, io_utils
from maskrcnn.config import dump_config, load_config
from maskrcnn.data.build import ensure_shapes
from maskrcnn.engine.preemption import (
    PREEMPTED_EXIT_STATUS,
    StopOnSignal,
    resume_command,
)
from maskrcnn.engine.resume_state import (
    LAST_NAME,
    load_training_checkpoint,
    save_checkpoint,
)
from maskrcnn.io_utils import DiskFullError

SUBPROCESS_TIMEOUT_S = 1200
MAX_ITER = 8

# the plain-CNN Mask R-CNN of tests/tiny_model.py on eight 64 px shapes images, logging every iteration
TINY = [
    *TINY_TRAINING_MODEL,
    "data.train.kind=shapes", "data.train.num_images=8", "data.train.image_size=64", "data.train.seed=0",
    "data.batch_size=2",
    "solver.lr=0.01", f"solver.max_iter={MAX_ITER}", "solver.warmup_iters=3", "solver.schedule=cosine",
    "train.device=cpu", "train.checkpoint_period=100", "train.log_period=1",
]


def maskrcnn_program() -> str:
    """The `maskrcnn` console script of this environment."""
    script = Path(sys.executable).parent / "maskrcnn"
    if not script.is_file():
        pytest.skip("the maskrcnn console script is not installed beside this Python")
    return str(script)


def tiny_config(data: Path, *extra: str) -> Path:
    """TINY (over the built-in defaults, not `maskrcnn train`'s default shapes_demo) as a
    YAML file beside the data, for `maskrcnn train --config FILE`."""
    path = data.parent / f"tiny{len(extra)}.yaml"  # not in the generated data's folder
    if not path.is_file():  # written once: a run started earlier may be reading it
        path.write_text(dump_config(load_config(None, [*TINY, f"data.train.annotations={data}/train.json", *extra])))
    return path


def train_args(out: Path, data: Path) -> list[str]:
    return ["train", "--config", str(tiny_config(data)), "--output", str(out)]


def quiet_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def completed_iterations(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    return sum('"type": "train"' in line for line in path.read_text().splitlines())


def test_sigterm_at_a_random_iteration_then_resume_gives_the_uninterrupted_weights(tmp_path):
    program, data = maskrcnn_program(), tmp_path / "data"
    cfg = load_config(None, TINY + [f"data.train.annotations={data}/train.json"])
    ensure_shapes(cfg.data.train, "data.train")  # generated once, before two runs read it
    # the uninterrupted run, beside the one to stop (one thread each)
    straight = subprocess.Popen([program, *train_args(tmp_path / "straight", data)], env=quiet_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    signal_after = random.Random().randint(1, MAX_ITER - 3)  # any iteration must do; it is logged on failure
    out = tmp_path / "stopped"
    proc = subprocess.Popen([program, *train_args(out, data)], env=quiet_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while completed_iterations(out) < signal_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    context = f"signalled after {signal_after} iterations; stderr: {stderr[-2000:]}"
    assert proc.returncode == PREEMPTED_EXIT_STATUS, context
    last = load_training_checkpoint(out / LAST_NAME)
    stopped_at = last["iteration"]
    assert signal_after <= stopped_at < MAX_ITER, context
    assert completed_iterations(out) == stopped_at, context  # the iteration under way was finished, no more
    assert not (out / "model_final.pt").exists()
    lines = [line for line in stderr.splitlines() if line.startswith("maskrcnn: error:")]
    assert len(lines) == 1 and f"after iteration {stopped_at};" in lines[0] and str(out / LAST_NAME) in lines[0], context

    # the printed command, run as printed (with this environment's console script), resumes the run
    command = shlex.split(lines[0].split("Resume it with: ", 1)[1])
    assert command[:2] == ["maskrcnn", "train"] and command[-1] == "--resume"
    assert command[2:-1] == train_args(out, data)[1:]
    resumed = subprocess.run([program, *command[1:]], check=False, env=quiet_env(), capture_output=True, text=True,
                             timeout=SUBPROCESS_TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / LAST_NAME} at iteration {stopped_at}" in resumed.stderr

    _, straight_err = straight.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert straight.returncode == 0, straight_err[-2000:]
    a = torch.load(tmp_path / "straight" / "model_final.pt", weights_only=True)["model"]
    b = torch.load(out / "model_final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ after resume ({context}): {differing[:5]}"


def test_a_signal_sets_the_flag_and_a_second_one_acts_at_once():
    with StopOnSignal() as stop:
        assert stop.requested is None and not stop.agreed(torch.device("cpu"))
        signal.raise_signal(signal.SIGINT)  # Ctrl-C: no KeyboardInterrupt, the flag instead
        assert stop.requested == "SIGINT" and stop.agreed(torch.device("cpu"))
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second: Python's own handler again
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize(
    "argv, env, expected",
    [
        (["/venv/bin/maskrcnn", "train", "--config", "my run.yaml"], {}, "maskrcnn train --config 'my run.yaml' --resume"),
        (["/venv/bin/maskrcnn", "train", "--resume"], {}, "maskrcnn train --resume"),
        (["/src/maskrcnn/engine/train.py", "--set", "solver.lr=0.1"], {},
         "python -m maskrcnn.engine.train --set solver.lr=0.1 --resume"),
        (["/src/maskrcnn/engine/train.py", "--output", "o"], {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"},
         "torchrun --nproc_per_node=2 -m maskrcnn.engine.train --output o --resume"),
        # started otherwise (no --resume there): `maskrcnn train` on the config the run wrote
        (["/venv/bin/maskrcnn", "demo", "--output", "runs/demo"], {},
         "maskrcnn train --config 'runs/my demo/config.yaml' --output 'runs/my demo' --resume"),
        (["notebook.py"], {}, "maskrcnn train --config 'runs/my demo/config.yaml' --output 'runs/my demo' --resume"),
    ],
)
def test_the_resume_command_is_the_command_line_with_resume(argv, env, expected, monkeypatch):
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resume_command(argv, output_dir=Path("runs/my demo")) == expected


def _agree(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        stop = StopOnSignal()
        if rank == 1:
            stop.requested = "SIGTERM"  # only one process was signalled
        results[rank] = stop.agreed(torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def test_under_ddp_every_process_stops_when_one_is_signalled():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.start_processes(_agree, args=(2, port, results), nprocs=2, join=True, start_method="fork")
    assert dict(results) == {0: True, 1: True}


# ---------------------------------------------------------------------------------------
# A full disk while saving
# ---------------------------------------------------------------------------------------


REAL_FDOPEN = os.fdopen


class FillsUpAfter:
    """os.fdopen for the writer: the file takes `room` bytes, then writing raises ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, fd: int, mode: str = "r", *args, **kwargs) -> _FullFile:
        return _FullFile(REAL_FDOPEN(fd, mode, *args, **kwargs), self.room)


class _FullFile:
    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data: bytes) -> int:
        self.handle.write(data[: self.room])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self) -> _FullFile:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def test_a_save_that_fails_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / LAST_NAME
    first = {"format": "maskrcnn", "iteration": 4, "weights": torch.arange(10_000.0)}
    save_checkpoint(path, first)
    monkeypatch.setattr(io_utils.os, "fdopen", FillsUpAfter(room=20_000))
    with pytest.raises(DiskFullError) as caught:
        save_checkpoint(path, {**first, "iteration": 8, "weights": torch.zeros(10_000)})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{tmp_path.resolve()}: no space left to write last.pt")
    needed = len(_serialized({**first, "iteration": 8, "weights": torch.zeros(10_000)}))
    assert f"({needed} bytes)" in message and "the previous last.pt is kept" in message and "--resume" in message
    kept = torch.load(path, weights_only=True)
    assert kept["iteration"] == 4 and torch.equal(kept["weights"], first["weights"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_NAME]  # no temporary left behind


def _serialized(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_a_full_disk_during_training_stops_with_one_line_and_last_pt_loads(tmp_path, monkeypatch, capsys):
    # The run saves last.pt after 2 iterations; the disk is full for the next save (the
    # finish's, after iteration 4): one line naming the folder, and iteration 2 is kept.
    real_save = io_utils.atomic_write_bytes
    saves = []

    def atomic_write_bytes(path, data):
        saves.append(Path(path).name)
        if Path(path).name == LAST_NAME and saves.count(LAST_NAME) == 2:
            monkeypatch.setattr(io_utils.os, "fdopen", FillsUpAfter(room=len(data) // 2))
        try:
            return real_save(path, data)
        finally:
            monkeypatch.setattr(io_utils.os, "fdopen", REAL_FDOPEN)

    monkeypatch.setattr(io_utils, "atomic_write_bytes", atomic_write_bytes)
    out = tmp_path / "run"
    config = tiny_config(tmp_path / "data", "solver.max_iter=4", "solver.warmup_iters=1", "train.checkpoint_period=2")
    argv = ["train", "--config", str(config), "--output", str(out)]
    status = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert status == 1
    assert lines == [line for line in err.splitlines() if line.startswith(f"maskrcnn: error: {out.resolve()}: no space left")]
    assert len(lines) == 1 and "the previous last.pt is kept" in lines[0], err[-2000:]
    assert load_training_checkpoint(out / LAST_NAME)["iteration"] == 2
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
