"""Stopping a training run cleanly when its machine goes away (SIGTERM) or on Ctrl-C (SIGINT).

Cloud machines are preempted with SIGTERM and a short grace period. While training, the
first SIGTERM or SIGINT only raises a flag: the current iteration finishes, every process
agrees to stop (under torchrun one all-reduce of the flag per iteration, so the processes
stop after the same iteration even when only one was signalled), `last.pt` is written
atomically, the command that resumes the run is printed, and the process exits with
`PREEMPTED_EXIT_STATUS`. A second signal acts at once, as it would without this module
(SIGTERM ends the process, SIGINT raises KeyboardInterrupt).

Data-loader workers forked after the handlers are installed inherit them, so a signal
sent to the whole process group does not kill a worker under the main process.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from maskrcnn.engine import distributed as du
from maskrcnn.errors import UserError

# EX_TEMPFAIL of sysexits.h: "a temporary failure; retrying later may succeed". Distinct
# from 0 (finished), 1 (an error) and 128 + signal (killed without saving), so a job
# script can requeue exactly the runs that can be resumed.
PREEMPTED_EXIT_STATUS = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(UserError):
    """The run stopped on a signal after saving its state; `exit_status` is PREEMPTED_EXIT_STATUS."""

    exit_status = PREEMPTED_EXIT_STATUS


class StopOnSignal:
    """A context manager: while inside, SIGTERM / SIGINT set `requested` instead of ending the
    process (main thread only; elsewhere signals keep their handlers and nothing is requested)."""

    def __init__(self) -> None:
        self.requested: str | None = None  # the name of the first signal received
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> StopOnSignal:  # noqa: PYI034 - Self needs Python 3.11
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked data-loader worker: the main process decides
            return
        if self.requested is not None:  # the second signal: act as without this handler
            self._restore()
            signal.raise_signal(signum)
            return
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested} received: stopping after this iteration and saving the run (send it again to stop at once)",
              file=sys.stderr, flush=True)

    def agreed(self, device: torch.device) -> bool:
        """Whether any process was asked to stop (collective under DDP: every rank calls it
        after every iteration, so all stop after the same one)."""
        if not du.is_dist():  # one process: no tensor, so no wait on a GPU
            return bool(self.requested)
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        return bool(du.all_reduce_max(flag)[0] > 0)

    def stopped(self, last_checkpoint: Path, iteration: int) -> TrainingStopped:
        """The error that ends the run once `last_checkpoint` holds iteration `iteration`."""
        return TrainingStopped(
            f"stopped by {self.requested or 'a signal on another process'} after iteration {iteration}; "
            f"the run is saved in {last_checkpoint}. Resume it with: {resume_command(output_dir=last_checkpoint.parent)}"
        )


def resume_command(argv: list[str] | None = None, output_dir: Path | None = None) -> str:
    """The command line that started this process, with `--resume` added (once). Started
    otherwise (`maskrcnn demo`, the Python API): `maskrcnn train` on the config.yaml the run
    wrote into `output_dir`."""
    argv = list(sys.argv if argv is None else argv)
    program, args = argv[0] if argv else "maskrcnn", argv[1:]
    name = Path(program).name
    if name == "train.py" and Path(program).parent.name == "engine":  # python -m maskrcnn.engine.train
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world))
            head = ["torchrun", f"--nproc_per_node={per_node}", "-m", "maskrcnn.engine.train"]
        else:
            head = ["python", "-m", "maskrcnn.engine.train"]
    elif name == "maskrcnn" and args[:1] == ["train"]:
        head = ["maskrcnn"]
    else:  # the Python API, `maskrcnn demo`, ...: the run's own config
        folder = str(output_dir) if output_dir is not None else "OUTPUT"
        return shlex.join(["maskrcnn", "train", "--config", f"{folder}/config.yaml", "--output", folder, "--resume"])
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(head + args)
