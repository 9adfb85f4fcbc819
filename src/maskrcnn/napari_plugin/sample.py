"""File > Open Sample > maskrcnn: a generated nuclei image (`maskrcnn.data.nuclei`), to try the widget."""

from __future__ import annotations

from typing import Any

from maskrcnn.data.nuclei import render_nuclei_image

SAMPLE_SEED, SAMPLE_INDEX, SAMPLE_SIZE = 0, 0, (256, 256)


def generated_nuclei() -> list[tuple[Any, dict[str, Any]]]:
    """[(pixels (H, W, 3) uint8, layer keyword arguments)], as npe2 sample data returns."""
    pixels, _masks, style = render_nuclei_image(SAMPLE_SEED, SAMPLE_INDEX, (SAMPLE_SIZE,))
    return [(pixels, {"name": f"nuclei ({style})", "rgb": True})]
