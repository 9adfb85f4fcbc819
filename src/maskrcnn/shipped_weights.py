"""Weights that ship inside the package, named in `train.init_weights` like a file.

`train.init_weights: nuclei_synthetic` (the `nuclei` recipe's default) starts training from
`maskrcnn/weights/nuclei_synthetic.pt`: the `nuclei` model trained on generated nuclei only
(docs/recipes.md says how it was made and how to make it again). A path that exists always
wins over a shipped name, so a user's own file called `nuclei_synthetic` is never shadowed.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SUFFIX = ".pt"


def shipped_weight_names() -> list[str]:
    """The names `train.init_weights` accepts besides paths, e.g. ['nuclei_synthetic']."""
    return sorted(path.stem for path in WEIGHTS_DIR.glob(f"*{SUFFIX}"))


def resolve_weights(value: str | Path) -> Path:
    """`value` as a path when a file is there; else the shipped weights of that name; else
    `value` unchanged (the reader then reports the missing file)."""
    path = Path(value)
    if path.exists():
        return path
    shipped = WEIGHTS_DIR / f"{value}{SUFFIX}"
    if str(value) in shipped_weight_names():
        return shipped
    return path
