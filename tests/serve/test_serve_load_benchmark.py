"""benchmarks/serve_load.py end to end at a small size (the tiny model, two small images, a
few seconds of load): it starts the server, runs locust and writes the JSON docs/serve.md
describes; the same run shows no 5xx and no wrong or lost answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"


def test_the_load_benchmark_runs_and_reports(tiny_serve_checkpoint, tmp_path):
    out = tmp_path / "serve_load.json"
    command = [sys.executable, str(BENCHMARK), "--weights", str(tiny_serve_checkpoint), "--seconds", "2",
               "--clients", "2", "--tricklers", "0", "--megapixels", "0.02,0.03", "--json", str(out)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=dict(os.environ),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["status_counts"].get("200", 0) > 0
    assert report["server_errors_5xx"] == 0
    assert report["good_answers"] > 0 and report["wrong_answers"] == 0 and report["lost_answers"] == 0
    assert report["server_log_tracebacks"] == 0
    assert report["health_requests"] > 0 and report["health_p99_ms"] > 0
    assert report["peak_rss_mib"] >= report["idle_rss_mib"] > 0
    assert set(report["latency_ms"]) == {"p50", "p95", "p99"} and report["requests_per_second"] > 0
    assert report["config"]["weights"] == "tiny.pt" and report["config"]["max_queue"] == 4
    assert "/" not in report["command"].split("--weights ")[1].split()[0]  # no machine-local paths
