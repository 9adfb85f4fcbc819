"""The share of each training iteration spent waiting for data, from a run's metrics.jsonl, as JSON.

    python benchmarks/data_wait_share.py RUN_FOLDER [--json PATH]

`maskrcnn train` logs, per `train.log_period` iterations, the mean seconds per iteration
(`time_per_iter`) and the part of it spent waiting for the next batch from the loader
(`data_time`). The share is their ratio over the run's training records (weighted by
the iterations each record covers); near 0 the GPU is never starved of data, near 1 the
loader is the bottleneck (raise `data.num_workers`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info


def data_wait_share(metrics: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("type") == "train" and "time_per_iter" in r and "data_time" in r]
    if not train:
        raise SystemExit(f"{metrics}: no training records with time_per_iter and data_time")
    iterations = [b["iteration"] - a["iteration"] for a, b in zip([{"iteration": 0}, *train], train)]
    total = sum(r["time_per_iter"] * n for r, n in zip(train, iterations))
    waiting = sum(r["data_time"] * n for r, n in zip(train, iterations))
    return {
        "iterations": train[-1]["iteration"],
        "seconds_per_iteration": round(total / sum(iterations), 5),
        "data_wait_seconds_per_iteration": round(waiting / sum(iterations), 5),
        "data_wait_share": round(waiting / total, 4) if total > 0 else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a training run's output folder (holds metrics.jsonl)")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    report = {"machine": machine_info(), "run": args.run.name, **data_wait_share(args.run / "metrics.jsonl")}
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
