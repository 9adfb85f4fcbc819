"""maskrcnn: Mask R-CNN instance segmentation you can read.

    from maskrcnn import Predictor, train, evaluate, load_config

The names are imported on first use, so `import maskrcnn` stays light (no torch import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "Predictor": "maskrcnn.inference.predictor",
    "train": "maskrcnn.api",
    "evaluate": "maskrcnn.api",
    "load_config": "maskrcnn.config",
}

__all__ = ["__version__", *_LAZY_EXPORTS]

if TYPE_CHECKING:  # for type checkers and editors only
    from maskrcnn.api import evaluate, train
    from maskrcnn.config import load_config
    from maskrcnn.inference.predictor import Predictor


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'maskrcnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
