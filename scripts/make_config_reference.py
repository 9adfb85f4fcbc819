"""Write docs/configs.md from src/maskrcnn/config.py (run after changing a config key)."""

from pathlib import Path

from maskrcnn.config_reference import reference_markdown
from maskrcnn.io_utils import atomic_write_text

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "configs.md"
    atomic_write_text(target, reference_markdown())
    print(f"wrote {target}")
