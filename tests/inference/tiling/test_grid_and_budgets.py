from __future__ import annotations

import pytest

from maskrcnn.config import load_config
from maskrcnn.inference.tiling.grid import TilingError, tile_grid, tile_starts
from maskrcnn.inference.tiling.tiled_prediction import BUDGET_CAPS, tile_budgets
from maskrcnn.model.build import build_model
from maskrcnn.model.inference_options import DetectionBudgets


@pytest.mark.parametrize("length, tile, overlap, origin", [(1000, 256, 64, 0), (1000, 256, 64, 77), (256, 256, 64, 5),
                                                           (100, 256, 64, 0), (5000, 1024, 128, 300)])
def test_tiles_cover_the_axis_with_at_least_the_overlap(length, tile, overlap, origin):
    starts = tile_starts(length, tile, overlap, origin)
    ends = [min(s + tile, length) for s in starts]
    assert starts[0] == 0 and ends[-1] == length
    assert all(e - s == min(tile, length) for s, e in zip(starts, ends))  # full-size tiles
    assert all(ends[i] - starts[i + 1] >= overlap for i in range(len(starts) - 1))


def test_grid_rows_and_errors():
    grid = tile_grid(300, 500, 128, 32)
    assert [t.index for t in grid.tiles] == list(range(len(grid.tiles)))
    assert all(len(row) == len(grid.rows[0]) for row in grid.rows)
    with pytest.raises(TilingError, match="overlap 128"):
        tile_grid(300, 500, 128, 128)
    with pytest.raises(TilingError, match="tile size 16"):
        tile_grid(300, 500, 16, 0)


def test_budgets_grow_with_the_tile_and_leave_the_model_alone():
    cfg = load_config("shapes_demo")
    model = build_model(cfg.model).eval()  # budgets 300 / 100 / 30 for its square input
    side = cfg.model.transform.max_size  # the input's side (min_size = max_size)
    own = model.budgets()
    before = (model.rpn.pre_nms_top_n, model.rpn.post_nms_top_n, model.roi_heads.detections_per_img)
    grown = tile_budgets(model, (2 * side) ** 2)  # 4x the input area
    assert grown == DetectionBudgets(4 * own.pre_nms_top_n, 4 * own.post_nms_top_n, 4 * own.detections_per_img)
    capped = tile_budgets(model, 4096 * 4096)
    assert capped.post_nms_top_n == BUDGET_CAPS.post_nms_top_n
    assert capped.detections_per_img == BUDGET_CAPS.detections_per_img
    assert tile_budgets(model, 64 * 64) == own  # never lowered
    assert (model.rpn.pre_nms_top_n, model.rpn.post_nms_top_n, model.roi_heads.detections_per_img) == before
