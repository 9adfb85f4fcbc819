"""matplotlib figures as PNG bytes: the Agg canvas of a `Figure` (no pyplot state, no display)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # Matplotlib's default PNG metadata holds its web address; our pictures hold none.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
