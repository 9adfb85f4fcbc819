"""The repository speaks of the product, not of how it was made.

Every tracked text file (README, docs, source with its configs and help texts, benchmarks
with their recorded results, scripts, tests) is searched for words that belong to a
development log ("round 4" as a development round, "judged", "this session", "lent once")
and for absolute paths of the machine something was measured on (/work/..., /home/...,
/root/...; /tmp/... in a benchmark record's `command`). A figure's command is written
relative to the repository, so a reader can run it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).resolve()

HISTORY_WORDS = re.compile(
    r"(?<![-\w])rounds?[ _-]?\d+\b"  # "round 4", "Round 1 -> 2", "rounds 3-5" (not `--rounds 2`)
    r"|\bjudged?\b|\bjudging\b"
    r"|\bthis session\b|\bother sessions\b"
    r"|\blent once\b",
    re.IGNORECASE,
)
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|home|root)/[\w.]")
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".json", ".toml", ".txt", ".sh", ".cfg", ".ini", ".html", ".js", ".css"}
TEXT_NAMES = {"Makefile", "README", "CHANGELOG", "LICENSE"}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    paths = [REPO_ROOT / name for name in listed.decode().split("\0") if name]
    return [
        p for p in paths
        if p.is_file() and p.resolve() != THIS_FILE and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)
    ]


def history_hits(text: str) -> list[str]:
    return [m.group(0) for m in HISTORY_WORDS.finditer(text)]


def path_hits(text: str) -> list[str]:
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def json_commands(value) -> list[str]:
    """Every `command` string in a benchmark record, at any depth."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k == "command" and isinstance(v, str)]
        return found + [c for v in value.values() for c in json_commands(v)]
    if isinstance(value, list):
        return [c for v in value for c in json_commands(v)]
    return []


def test_the_patterns_find_what_they_should():
    assert history_hits("Round 4 (2026-11-30): ...; rounds 3-5 trained; round8") == ["Round 4", "rounds 3", "round8"]
    assert history_hits("the judged command, in this session, lent once") == ["judged", "this session", "lent once"]
    assert history_hits("a machine shared with 7 other sessions") == ["other sessions"]
    assert history_hits("benchmarks/omp_wait.py --rounds 2; rounded to 3 decimals; a round number") == []


@pytest.mark.parametrize("sample, expected", [
    ("see /work/main/runs", 1), ("at /home/user/x", 1), ("in /root/.cache/x", 1), ("in /root/cache", 1),
    ("runs/work/x and src/home/y", 0), ("relative runs/demo", 0),
])
def test_the_path_pattern(sample, expected):
    assert len(path_hits(sample)) == expected


def test_no_development_history_words_or_machine_paths():
    problems = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for hit in history_hits(line) + path_hits(line):
                problems.append(f"{path.relative_to(REPO_ROOT)}:{number}: {hit!r}: {line.strip()[:120]}")
    assert not problems, "development-history words or machine paths:\n" + "\n".join(problems)


def test_benchmark_record_commands_are_relative():
    problems = []
    for path in sorted((REPO_ROOT / "benchmarks" / "results").glob("*.json")):
        for command in json_commands(json.loads(path.read_text())):
            if re.search(r"(?<![\w.~])/(?:work|home|root|tmp|Users)/", command):
                problems.append(f"{path.name}: {command[:160]}")
    assert not problems, "absolute paths in benchmark commands:\n" + "\n".join(problems)
