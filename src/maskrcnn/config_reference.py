"""The config reference (docs/configs.md), generated from config.py's dataclasses.

Every key's default comes from the dataclass; its meaning from the comments written beside
it in config.py (a comment at the end of the field's line, or full-line comments just
above it). So config.py stays the only home of defaults and their explanations, and the
reference page cannot drift: `tests/test_config_reference.py` regenerates it and compares.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import tokenize
from pathlib import Path
from typing import Any

from maskrcnn import config as config_module
from maskrcnn.config import Config

HEADER = """# Config reference

Generated from `src/maskrcnn/config.py` by `python scripts/make_config_reference.py`; do not
edit by hand. Every key can be set in a YAML config or on the command line with
`--set section.key=value` (the value is parsed as YAML). `maskrcnn configs NAME` prints a
built-in config whole.
"""


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One config key as the reference shows it."""

    key: str  # dotted, e.g. "solver.lr"
    default: str  # as YAML would write it
    meaning: str


def _comments_by_line(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """(dataclass name, field name) -> the comments written beside or just above the field."""
    comments = _comments_by_line(source)
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            parts = []
            line = item.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):  # full-line comments above
                parts.insert(0, comments.get(line, ""))
                line -= 1
            if item.end_lineno in comments and not lines[item.end_lineno - 1].strip().startswith("#"):
                parts.append(comments[item.end_lineno])
            found[(node.name, item.target.id)] = " ".join(p for p in parts if p)
    return found


def _format_default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).replace("'", '"') if not isinstance(value, float) else repr(value)


def key_docs(cfg: Any = None, prefix: str = "", comments: dict[tuple[str, str], str] | None = None) -> list[KeyDoc]:
    """Every leaf key of the config, depth first, in declaration order."""
    cfg = Config() if cfg is None else cfg
    if comments is None:
        comments = field_comments(Path(config_module.__file__).read_text())
    docs: list[KeyDoc] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            docs.extend(key_docs(value, f"{key}.", comments))
        else:
            docs.append(KeyDoc(key, _format_default(value), comments.get((type(cfg).__name__, f.name), "")))
    return docs


def reference_markdown() -> str:
    """The whole docs/configs.md text: one table per top-level section."""
    out = [HEADER]
    section = None
    for doc in key_docs():
        top = doc.key.split(".")[0] if "." in doc.key else "(top level)"
        if top != section:
            section = top
            out.append(f"\n## {section}\n\n| key | default | meaning |\n|---|---|---|")
        meaning = doc.meaning.replace("|", "\\|")
        out.append(f"| `{doc.key}` | `{doc.default}` | {meaning} |")
    return "\n".join(out) + "\n"
