"""Training speed of two source trees in one run, alternating, as JSON: the same-run ratio.

    python benchmarks/compare_trees.py --base PATH --new PATH [--repeats 3]
        [--setups shapes_demo r50_fpn_512] [--iters 3] [--warmup 1] [--threads 0]
        [--measure wall|cpu] [--json PATH]

PATH is a checkout's root (its src/ goes on PYTHONPATH; its benchmarks/train.py measures
it): for example a `git worktree add ../base HEAD~1` beside this checkout. Each repeat
runs every setup for the base and then the new tree (the order alternates by repeat), so
both see the same machine load; on a shared machine single figures move a lot, the
median of the per-repeat ratios much less. Reports iterations/s of each run and the
median ratio new / base per setup (> 1: the new tree is faster).

--measure cpu: instead of benchmarks/train.py's wall-clock iterations/s, the CPU seconds
of one thread per `train_step` (median of --iters after --warmup), turned into
iterations per CPU-second: the work each tree does, much less moved by other processes
on a busy machine than the wall clock (the same setups, images and SGD settings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info

CPU_CHILD = """
import statistics, sys, time, torch
root, setup, iters, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, root + "/benchmarks")
torch.set_num_threads(1)
from train import SETUPS, synthetic_batch
from maskrcnn.config import load_config
from maskrcnn.engine.schedule import build_optimizer
from maskrcnn.engine.train import train_step
from maskrcnn.model.build import build_model
config, overrides, size, batch = SETUPS[setup]
cfg = load_config(config, overrides)
torch.manual_seed(0)
model = build_model(cfg.model).train()
if cfg.train.channels_last:
    model = model.to(memory_format=torch.channels_last)
optimizer = build_optimizer(model, cfg.solver)
for group in optimizer.param_groups:
    group["lr"] = min(group["lr"], 0.002)
scaler = torch.amp.GradScaler("cpu", enabled=False)
images, targets = synthetic_batch(batch or cfg.data.batch_size, size, seed=0)
seconds = []
for i in range(warmup + iters):
    start = time.process_time()
    train_step(model, images, targets, optimizer=optimizer, scaler=scaler, iteration=i)
    seconds.append(time.process_time() - start)
print(1.0 / statistics.median(seconds[warmup:]))
"""


def run_tree(root: Path, setup: str, args: argparse.Namespace) -> float:
    """Iterations/s of one setup measured by `root`'s own benchmarks/train.py on its own code
    (--measure cpu: iterations per CPU-second of one thread, CPU_CHILD)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    if args.measure == "cpu":
        command = [sys.executable, "-c", CPU_CHILD, str(root), setup, str(args.iters), str(args.warmup)]
        result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return round(float(result.stdout.strip().splitlines()[-1]), 4)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "train.json"
        command = [sys.executable, str(root / "benchmarks" / "train.py"), "--setups", setup, "--iters",
                   str(args.iters), "--warmup", str(args.warmup), "--json", str(out)]
        if args.threads > 0:
            command += ["--threads", str(args.threads)]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return float(json.loads(out.read_text())["setups"][setup]["iterations_per_s"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="root of the checkout to compare against")
    parser.add_argument("--new", required=True, type=Path, help="root of the checkout measured")
    parser.add_argument("--setups", nargs="+", default=["shapes_demo", "r50_fpn_512"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--measure", default="wall", choices=("wall", "cpu"),
                        help="wall: benchmarks/train.py's iterations/s; cpu: iterations per CPU-second, one thread")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[float]]] = {s: {"base": [], "new": []} for s in args.setups}
    for repeat in range(args.repeats):
        order = ("base", "new") if repeat % 2 == 0 else ("new", "base")
        for setup in args.setups:
            for which in order:
                runs[setup][which].append(run_tree(getattr(args, which), setup, args))
            print(f"  repeat {repeat}: {setup} {runs[setup]}", file=sys.stderr)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/compare_trees.py", *(argv if argv is not None else sys.argv[1:])]),
        "measure": "wall-clock iterations/s" if args.measure == "wall" else "iterations per CPU-second, one thread",
        "setups": {
            setup: {
                "base_iterations_per_s": values["base"],
                "new_iterations_per_s": values["new"],
                "median_ratio_new_over_base": round(
                    statistics.median(n / b for n, b in zip(values["new"], values["base"])), 3
                ),
            }
            for setup, values in runs.items()
        },
    }
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
