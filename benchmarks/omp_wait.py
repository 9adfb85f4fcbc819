"""OpenMP's waiting policy against inference speed, as JSON.

    python benchmarks/omp_wait.py [--image chelsea] [--rounds 3] [--threads 2] [--json PATH]

PyTorch's OpenMP threads spin while they wait; on a busy CPU the spinning competes with
the work. The policy is read once when OpenMP starts, so each setting runs in its own
process: the default (spin a while, then sleep), OMP_WAIT_POLICY=PASSIVE (sleep at once)
and GOMP_SPINCOUNT=10000 (spin briefly). Rounds interleave the settings, so a burst of
load from elsewhere hits all of them. Model: R50-FPN with the parity weights
(../shared/parity/make_weights.py), prepared as `Predictor.from_checkpoint` does.
Reported per setting: seconds per image (each run: one warm-up, then 2 timed calls;
fastest and median over rounds) and the load average around each round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import (  # noqa: E402
    PARITY,
    finish_report,
    load_average,
    machine_info,
    run_json_child,
)
from runtimes import parity_weights  # noqa: E402  (the same torchvision-format file)

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spincount_10000": {"GOMP_SPINCOUNT": "10000"},
}

# Runs in a child process: time the Predictor on one image, print the seconds as JSON.
CHILD = """
import json, sys, time
import numpy as np, torch
from PIL import Image
from maskrcnn import Predictor
torch.set_num_threads(int(sys.argv[3]))
predictor = Predictor.from_checkpoint(sys.argv[1], config="maskrcnn_resnet50_fpn", device="cpu")
image = np.array(Image.open(sys.argv[2]).convert("RGB"))
predictor(image)
times = []
for _ in range(2):
    start = time.perf_counter(); predictor(image); times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    weights = parity_weights(Path(tempfile.mkdtemp(prefix="maskrcnn_omp_wait_")))
    image = PARITY / "images" / f"{args.image}.png"
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    loads: list[Any] = []
    for round_index in range(args.rounds):
        names = list(SETTINGS)
        names = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in names:
            env = {**base_env, **SETTINGS[name]}
            times[name].extend(run_json_child(CHILD, [str(weights), str(image), str(args.threads)], env))
        loads.append(load_average())
        print(f"round {round_index + 1}/{args.rounds} done, load {loads[-1]}", file=sys.stderr, flush=True)
    report = {
        "command": "benchmarks/omp_wait.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "threads": args.threads,
        "image": args.image,
        "load_average_per_round": loads,
        "seconds_per_image": {
            name: {"fastest_s": round(min(v), 3), "median_s": round(statistics.median(v), 3), "runs": [round(t, 3) for t in v]}
            for name, v in times.items()
        },
    }
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
