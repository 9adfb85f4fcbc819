"""Training speed of two source trees in one run, alternating, as JSON: the same-run ratio.

    python benchmarks/compare_trees.py --base PATH --new PATH [--repeats 3]
        [--setups shapes_demo r50_fpn_512] [--iters 3] [--warmup 1] [--threads 0] [--json PATH]

PATH is a checkout's root (its src/ goes on PYTHONPATH; its benchmarks/train.py measures
it): for example a `git worktree add ../base HEAD~1` beside this checkout. Each repeat
runs every setup for the base and then the new tree (the order alternates by repeat), so
both see the same machine load; on a shared machine single figures move a lot, the
median of the per-repeat ratios much less. Reports iterations/s of each run and the
median ratio new / base per setup (> 1: the new tree is faster).
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


def run_tree(root: Path, setup: str, args: argparse.Namespace) -> float:
    """Iterations/s of one setup measured by `root`'s own benchmarks/train.py on its own code."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "train.json"
        command = [sys.executable, str(root / "benchmarks" / "train.py"), "--setups", setup, "--iters",
                   str(args.iters), "--warmup", str(args.warmup), "--json", str(out)]
        if args.threads > 0:
            command += ["--threads", str(args.threads)]
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
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
