"""Where a second thread helps our float32 Predictor, and where it does not: per-op CPU time
at 1 and at N threads, as JSON.

    python benchmarks/thread_scaling.py [--image chelsea] [--threads 2] [--top 15] [--json PATH]

Each thread count runs in its own process from the start: in a process that ran at 1
thread first (where the Predictor packs its convolution weights for oneDNN) and then at 2,
the three 2048 -> 512 1x1 convolutions of res5 took 0.111 s against 0.017 s in a process
that ran at 2 threads only, and oneDNN's convolutions as a whole gained 1.23x from the
second thread instead of 1.42x.
Model: R50-FPN with the parity weights (../shared/parity/make_weights.py), prepared as
`Predictor.from_checkpoint` does, OMP_WAIT_POLICY=PASSIVE as `maskrcnn predict` sets it.
Each process: two warm-up calls, three timed calls (wall seconds), then two calls under
torch.profiler; per op the smaller of the two self-CPU totals (the profiler's self time:
wall time of the calling thread inside the op, so a parallel op counts once).
Reported: wall seconds per call at each thread count, the ops with the most time at N
threads, and for each the speed-up (time at 1 / time at N).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import (  # noqa: E402
    PARITY,
    finish_report,
    load_average,
    machine_info,
    run_json_child,
)
from runtimes import parity_weights  # noqa: E402  (the same torchvision-format file)

# Runs in a child process: print {"walls": [...], "ops": {name: seconds}} as JSON.
CHILD = """
import json, sys, time
import numpy as np, torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile
from maskrcnn import Predictor
torch.set_num_threads(int(sys.argv[3]))
predictor = Predictor.from_checkpoint(sys.argv[1], config="maskrcnn_resnet50_fpn", device="cpu", score_threshold=0.0)
image = np.array(Image.open(sys.argv[2]).convert("RGB"))
predictor(image); predictor(image)
walls = []
for _ in range(3):
    start = time.perf_counter(); predictor(image); walls.append(time.perf_counter() - start)
ops = {}
for _ in range(2):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        predictor(image)
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        ops[event.key] = min(ops.get(event.key, seconds), seconds)
print(json.dumps({"walls": walls, "ops": ops}))
"""


def run_child(weights: Path, image: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return run_json_child(CHILD, [str(weights), str(image), str(threads)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="ops listed, by time at --threads")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    weights = parity_weights(Path(tempfile.mkdtemp(prefix="maskrcnn_thread_scaling_")))
    image = PARITY / "images" / f"{args.image}.png"
    loads = [load_average()]
    one = run_child(weights, image, 1)
    loads.append(load_average())
    many = run_child(weights, image, args.threads)
    loads.append(load_average())
    top = sorted(many["ops"], key=lambda k: -many["ops"][k])[: args.top]
    report = {
        "command": "benchmarks/thread_scaling.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "image": args.image,
        "threads": args.threads,
        "load_average": loads,
        "wall_s": {"1": min(one["walls"]), str(args.threads): min(many["walls"])},
        "speedup_wall": round(min(one["walls"]) / min(many["walls"]), 3),
        "self_cpu_s_total": {"1": round(sum(one["ops"].values()), 3), str(args.threads): round(sum(many["ops"].values()), 3)},
        "ops": [
            {
                "op": name,
                "s_1_thread": round(one["ops"].get(name, 0.0), 4),
                f"s_{args.threads}_threads": round(many["ops"][name], 4),
                "speedup": round(one["ops"].get(name, 0.0) / many["ops"][name], 2) if many["ops"][name] else None,
            }
            for name in top
        ],
    }
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
