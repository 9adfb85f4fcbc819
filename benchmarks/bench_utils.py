"""Helpers shared by the benchmark scripts: machine facts, matmul rate, timing, memory.

Nothing here changes global torch state except where a script asks (`set_threads`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
PARITY = SHARED / "parity"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": load_average(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def matmul_gflops(size: int = 2048, repeats: int = 7, device: str = "cpu") -> float:
    """Best-of-`repeats` float32 (size x size) @ (size x size) rate in GFLOP/s (2 n^3 flops)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn((size, size), generator=generator).to(device)
    b = torch.randn((size, size), generator=generator).to(device)
    out = torch.empty((size, size), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b, out=out)  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def time_runs(run: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def summarize_times(times: list[float]) -> dict[str, float]:
    return {
        "fastest_s": round(min(times), 4),
        "median_s": round(statistics.median(times), 4),
        "runs": len(times),
    }


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (getrusage; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Samples this process's RSS on a thread while a block runs; `.peak` and `.start` in bytes.

    Used only in untimed runs (the sampling thread takes a little CPU).
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> "RssSampler":
        self.start = current_rss_bytes()
        self.peak = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


def mib(num_bytes: int | float) -> float:
    return round(num_bytes / 2**20, 1)


def finish_report(report: dict[str, Any], json_path: str | None) -> dict[str, Any]:
    """Add the end-of-run load and peak memory, print the report as JSON, and write it
    atomically to `json_path` when given."""
    report["machine"]["load_average_at_end"] = machine_info()["load_average_1_5_15min"]
    report["max_rss_mib"] = mib(max_rss_bytes())
    text = json.dumps(report, indent=2)
    print(text)
    if json_path:
        from maskrcnn.io_utils import atomic_write_text

        atomic_write_text(json_path, text + "\n")
    return report


def run_json_child(code: str, args: list[str], env: dict[str, str]) -> Any:
    """Run `code` in a fresh Python process (its own OpenMP and oneDNN state) with `args`
    and `env`; return the JSON of the last line it prints."""
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def add_malloc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc malloc as it is (default: maskrcnn.runtime.reuse_freed_memory, as the Predictor and train do)",
    )


def apply_malloc_option(args: argparse.Namespace) -> bool:
    """Reuse freed memory unless --system-malloc; whether it is in effect (for the report)."""
    from maskrcnn.runtime import reuse_freed_memory

    return False if args.system_malloc else reuse_freed_memory()
