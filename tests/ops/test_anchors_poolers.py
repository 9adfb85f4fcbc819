import math

import torch

from maskrcnn.ops.anchors import AnchorGenerator, cell_anchors, grid_anchors
from maskrcnn.ops.poolers import assign_levels, infer_scale, multilevel_roi_align
from maskrcnn.ops.roi_align import roi_align


def test_cell_anchors_match_torchvision_values():
    cell = cell_anchors([32], [0.5, 1.0, 2.0], torch.float32, "cpu")
    assert cell.tolist() == [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]]
    two_sizes = cell_anchors([32, 64], [1.0, 2.0], torch.float32, "cpu")  # ratio-major
    assert two_sizes.tolist() == [[-16, -16, 16, 16], [-32, -32, 32, 32], [-11, -23, 11, 23], [-23, -45, 23, 45]]


def test_grid_anchors_order_row_col_anchor():
    cell = torch.tensor([[-1.0, -1.0, 1.0, 1.0], [-2.0, -2.0, 2.0, 2.0]])
    (anchors,) = grid_anchors([cell], [(2, 3)], [(10, 8)])
    assert anchors.shape == (2 * 3 * 2, 4)
    assert anchors[0].tolist() == [-1, -1, 1, 1]
    assert anchors[1].tolist() == [-2, -2, 2, 2]
    assert anchors[2].tolist() == [7, -1, 9, 1]  # column 1: x shift 8
    assert anchors[6].tolist() == [-1, 9, 1, 11]  # row 1: y shift 10
    assert grid_anchors([cell], [(0, 3)], [(10, 8)])[0].shape == (0, 4)


def test_anchor_generator_strides_and_counts():
    generator = AnchorGenerator([[32], [64, 128]], [[0.5, 1.0, 2.0], [1.0]])
    assert generator.num_anchors_per_location() == [3, 2]
    levels = generator((100, 130), [(25, 33), (13, 17)], "cpu", torch.float32)
    assert [a.shape[0] for a in levels] == [25 * 33 * 3, 13 * 17 * 2]
    # strides 100 // 25 = 4, 130 // 33 = 3 on level 0
    assert levels[0][3].tolist() == [-23 + 3, -11, 23 + 3, 11]
    assert levels[0][33 * 3].tolist() == [-23, -11 + 4, 23, 11 + 4]


def test_assign_levels_at_boundaries():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 224.0, 224.0],  # exactly canonical -> level 4
            [0.0, 0.0, 223.0, 224.0],  # just under -> 3
            [0.0, 0.0, 112.0, 112.0],  # 3
            [0.0, 0.0, 448.0, 448.0],  # 5
            [0.0, 0.0, 1.0, 1.0],  # clamped to 2
            [0.0, 0.0, 5000.0, 5000.0],  # clamped to 5
        ]
    )
    assert assign_levels(boxes, 2, 5).tolist() == [2, 1, 1, 3, 0, 3]
    assert assign_levels(torch.zeros((0, 4)), 2, 5).shape == (0,)


def test_infer_scale():
    assert infer_scale((200, 304), (800, 1216)) == 0.25
    assert infer_scale((25, 38), (800, 1216)) == 1 / 32
    assert infer_scale((13, 19), (400, 600)) == 1 / 32  # 13/400 ~ 1/30.8 rounds to 2**-5


def test_multilevel_roi_align_routes_boxes_by_size():
    generator = torch.Generator().manual_seed(0)
    features = [torch.rand((2, 3, 64, 64), generator=generator), torch.rand((2, 3, 32, 32), generator=generator)]
    scales = [0.25, 0.125]  # k_min 2, k_max 3
    small = torch.tensor([[10.0, 10.0, 50.0, 50.0]])  # -> level index 0
    large = torch.tensor([[0.0, 0.0, 200.0, 200.0], [5.0, 5.0, 60.0, 40.0]])  # -> 1, 0
    out = multilevel_roi_align(features, [small, large], scales, 7, 2, False)
    assert out.shape == (3, 3, 7, 7)
    expected_small = roi_align(features[0], torch.tensor([[0.0, 10, 10, 50, 50]]), 7, 0.25, 2, False)
    expected_large = roi_align(features[1], torch.tensor([[1.0, 0, 0, 200, 200]]), 7, 0.125, 2, False)
    torch.testing.assert_close(out[0], expected_small[0])
    torch.testing.assert_close(out[1], expected_large[0])
    pooled = multilevel_roi_align(features, [small, large], scales, 7, 2, False, pool="max")
    assert pooled.shape == (3, 3, 7, 7)
    empty = multilevel_roi_align(features, [torch.zeros((0, 4)), torch.zeros((0, 4))], scales, 7, 2, False)
    assert empty.shape == (0, 3, 7, 7)


def test_multilevel_single_level_uses_its_scale():
    feature = torch.arange(16.0).view(1, 1, 4, 4)
    out = multilevel_roi_align([feature], [torch.tensor([[0.0, 0.0, 8.0, 8.0]])], [0.5], 1, 1, True)
    # aligned, scale 0.5: box [-0.5, -0.5, 3.5, 3.5], one sample at (1.5, 1.5) -> mean of the 4 centre values
    assert math.isclose(out.item(), (5 + 6 + 9 + 10) / 4)
