"""The merge alone: a stub detector reports, for every tile, the ground-truth pieces it sees.

Objects straddle tile borders and corners, some are larger than the overlap (no tile sees
them whole) and some are concave. Every object must come out exactly once with mask IoU
>= 0.9 (the stub is exact, so the merge must give the object back), whatever the grid.
The stub's boxes are the tight boxes of its pieces, so every merged box must be the tight
box of its merged mask (`assert_box_is_tight_box_of_mask`, checked on every result here).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask
from tiled_checks import assert_box_is_tight_box_of_mask

from maskrcnn.data.image_source import ArrayImage, ImageSource
from maskrcnn.data.intensity import IntensityWindow
from maskrcnn.inference.tiling.grid import TileWindow, tile_grid
from maskrcnn.inference.tiling.instances import CroppedInstance, crop_to_rle
from maskrcnn.inference.tiling.tiled_prediction import predict_tiled
from maskrcnn.ops.masks import mask_to_rle

HEIGHT, WIDTH, TILE, OVERLAP = 560, 760, 192, 48


def make_objects(seed: int = 0) -> list[np.ndarray]:
    """Non-overlapping, connected (H, W) bool masks: ellipses, polygons and C shapes of 14-170 px."""
    rng = np.random.default_rng(seed)
    taken = np.zeros((HEIGHT, WIDTH), dtype=bool)
    grid = tile_grid(HEIGHT, WIDTH, TILE, OVERLAP)
    borders_y = sorted({t.y0 for t in grid.tiles} | {t.y1 for t in grid.tiles})
    borders_x = sorted({t.x0 for t in grid.tiles} | {t.x1 for t in grid.tiles})
    objects = []
    for k in range(400):
        if len(objects) >= 45:
            break
        size = float(rng.choice([14, 30, 60, 110, 170]))
        if k % 2 == 0:  # centred on a tile border or corner
            cy = float(rng.choice(borders_y)) + rng.uniform(-6, 6)
            cx = float(rng.choice(borders_x)) + rng.uniform(-6, 6)
        else:
            cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
        half = int(size / 2) + 3  # drawn on a local canvas around (cy, cx), then placed
        oy, ox = int(cy) - half, int(cx) - half
        canvas = Image.new("L", (2 * half, 2 * half), 0)
        draw = ImageDraw.Draw(canvas)
        ly, lx = cy - oy, cx - ox
        kind = k % 3
        if kind == 0:
            draw.ellipse([lx - size / 2, ly - size / 3, lx + size / 2, ly + size / 3], fill=1)
        elif kind == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
            radii = rng.uniform(0.3, 0.5, 7) * size
            draw.polygon([(lx + r * np.cos(a), ly + r * np.sin(a)) for a, r in zip(angles, radii)], fill=1)
        else:  # a C: concave, leaves and re-enters tiles
            draw.arc([lx - size / 2, ly - size / 2, lx + size / 2, ly + size / 2], 40, 320, fill=1, width=max(3, int(size / 6)))
        local = np.asarray(canvas, dtype=bool)
        mask = np.zeros((HEIGHT + 4 * half, WIDTH + 4 * half), dtype=bool)  # room for canvases past the border
        mask[oy + 2 * half : oy + 4 * half, ox + 2 * half : ox + 4 * half] = local
        mask = mask[2 * half : 2 * half + HEIGHT, 2 * half : 2 * half + WIDTH]
        if mask.sum() < 20 or not is_connected(mask):
            continue
        grown = mask.copy()  # keep a gap of one pixel between objects
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        if (grown & taken).any():
            continue
        taken |= mask
        objects.append(mask)
    return objects


def is_connected(mask: np.ndarray) -> bool:
    """One 4-connected component (a shape cut in two by the image border is two objects)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    reached = np.zeros_like(crop)
    reached.flat[np.flatnonzero(crop)[0]] = True
    while True:
        grown = reached.copy()
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= crop
        if np.array_equal(grown, reached):
            return bool(np.array_equal(reached, crop))
        reached = grown


class GroundTruthPieces:
    """A stub detector: what of each object lies in the tile, exactly."""

    def __init__(self, objects: list[np.ndarray]) -> None:
        self.objects = objects

    def __call__(self, pixels: np.ndarray, window: TileWindow) -> list[CroppedInstance]:
        pieces = []
        for k, full in enumerate(self.objects):
            part = full[window.y0 : window.y1, window.x0 : window.x1]
            if not part.any():
                continue
            rows, cols = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            box = np.array([c0, r0, c1, r1], dtype=np.float32)
            pieces.append(CroppedInstance(box, 1 + k % 2, 0.5 + 0.01 * k, int(r0), int(c0), part[r0:r1, c0:c1].copy()))
        return pieces


class BleedingAtTileBorders(GroundTruthPieces):
    """Like a real model with little context at a tile's edge: masks grow 1 px within 8 px of
    the tile's inner borders (not at the image's own borders)."""

    def __call__(self, pixels: np.ndarray, window: TileWindow) -> list[CroppedInstance]:
        near = np.zeros((window.height, window.width), dtype=bool)
        if window.y0 > 0:
            near[:8] = True
        if window.y1 < HEIGHT:
            near[-8:] = True
        if window.x0 > 0:
            near[:, :8] = True
        if window.x1 < WIDTH:
            near[:, -8:] = True
        pieces = []
        for piece in super().__call__(pixels, window):
            full = np.zeros((window.height, window.width), dtype=bool)
            full[piece.y0 : piece.y1, piece.x0 : piece.x1] = piece.mask
            grown = full.copy()
            for _ in range(1):
                step = grown.copy()
                step[1:] |= grown[:-1]
                step[:-1] |= grown[1:]
                step[:, 1:] |= grown[:, :-1]
                step[:, :-1] |= grown[:, 1:]
                grown = step
            full |= grown & near
            rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            pieces.append(CroppedInstance(piece.box, piece.label, piece.score, int(r0), int(c0), full[r0:r1, c0:c1]))
        return pieces


def run(objects: list[np.ndarray], origin=(0, 0), tile=TILE, overlap=OVERLAP, detector=GroundTruthPieces):
    source = ImageSource(ArrayImage(np.zeros((HEIGHT, WIDTH, 3), np.uint8)), IntensityWindow(0.0, 255.0))
    return predict_tiled(detector(objects), source, tile_size=tile, overlap=overlap, origin=origin)


def iou_matrix(result, objects: list[np.ndarray]) -> np.ndarray:
    """(N, G) mask IoU of the result's instances (from their crops) with the objects."""
    predicted = [crop_to_rle(i.mask, i.y0, i.x0, HEIGHT, WIDTH) for i in result.instances]
    truth = [mask_to_rle(m) for m in objects]
    return np.asarray(coco_mask.iou(predicted, truth, [0] * len(truth))).reshape(len(predicted), len(truth))


@pytest.fixture(scope="module")
def objects() -> list[np.ndarray]:
    objs = make_objects()
    assert len(objs) >= 30
    return objs


def test_the_objects_do_cross_seams(objects):
    grid = tile_grid(HEIGHT, WIDTH, TILE, OVERLAP)
    seen_by = [sum(bool(m[t.y0 : t.y1, t.x0 : t.x1].any()) for t in grid.tiles) for m in objects]
    assert sum(n >= 2 for n in seen_by) >= 15 and max(seen_by) >= 4  # across borders and corners
    unseen_whole = [m for m in objects if not any(
        m[t.y0 : t.y1, t.x0 : t.x1].sum() == m.sum() for t in grid.tiles)]
    assert len(unseen_whole) >= 3  # larger than the overlap: no tile sees them whole


@pytest.mark.parametrize("overlap", [OVERLAP, 1])  # 1: a shared area one pixel short is none
def test_every_object_exactly_once_with_its_mask(objects, overlap):
    result = run(objects, overlap=overlap)
    assert len(result.instances) == len(objects)
    assert_box_is_tight_box_of_mask(result.instances)
    ious = iou_matrix(result, objects)  # (N, G)
    assert (ious.max(axis=1) >= 0.9).all() and (ious.max(axis=0) >= 0.9).all()
    assert sorted(ious.argmax(axis=1).tolist()) == list(range(len(objects)))  # a one-to-one match
    assert ious.max(axis=1).min() == 1.0  # the stub is exact, so the merge is too


@pytest.mark.parametrize("origin, tile, overlap", [((37, 101), TILE, OVERLAP), ((0, 0), 160, 64), ((90, 5), 256, 40),
                                                   ((11, 70), TILE, 1)])
def test_result_does_not_depend_on_the_seams(objects, origin, tile, overlap):
    def instances(result):
        return {(i.label, round(i.score, 6), crop_to_rle(i.mask, i.y0, i.x0, HEIGHT, WIDTH)["counts"], tuple(i.box.tolist()))
                for i in result.instances}

    shifted = run(objects, origin=origin, tile=tile, overlap=overlap)
    assert instances(shifted) == instances(run(objects))
    assert len(shifted.instances) == len(objects)
    assert_box_is_tight_box_of_mask(shifted.instances)


def test_errors_at_tile_edges_are_outvoted_by_deeper_tiles(objects):
    # Each pixel takes the mask of the tile it lies deepest in: the 1-px bleed within 8 px of
    # a tile's border is always decided by a tile that sees that place with more context
    # (overlap 48 > 2 x 8), so the merged masks are exact. A union of the pieces, or the
    # shallowest tile, would keep the bleed.
    result = run(objects, detector=BleedingAtTileBorders)
    assert len(result.instances) == len(objects)
    assert_box_is_tight_box_of_mask(result.instances)
    ious = iou_matrix(result, objects)
    assert sorted(ious.argmax(axis=1).tolist()) == list(range(len(objects)))
    assert ious.max(axis=1).min() == 1.0


def test_touching_objects_stay_apart():
    a = np.zeros((HEIGHT, WIDTH), dtype=bool)
    b = np.zeros((HEIGHT, WIDTH), dtype=bool)
    border = TILE - OVERLAP // 2  # inside the first overlap
    a[100:140, border - 30 : border] = True
    b[100:140, border : border + 30] = True
    result = run([a, b])
    assert len(result.instances) == 2
    assert_box_is_tight_box_of_mask(result.instances)


def test_label_image_numbers_instances_by_score(objects):
    result = run(objects)
    assert_box_is_tight_box_of_mask(result.instances)
    labels = result.label_image()
    assert labels.dtype == np.uint16 and labels.shape == (HEIGHT, WIDTH)
    for k, inst in enumerate(result.instances):
        region = labels[inst.y0 : inst.y1, inst.x0 : inst.x1]
        assert (region[inst.mask] == k + 1).all()  # the objects do not overlap: each keeps all its pixels
    assert labels.max() == len(result.instances)
    part = result.label_image(50, 60, 300, 333)
    assert np.array_equal(part, labels[50:300, 60:333])


def test_a_cut_piece_that_no_neighbour_confirms_is_dropped():
    class WithSpuriousPieces(GroundTruthPieces):
        def __call__(self, pixels, window):
            pieces = super().__call__(pixels, window)
            if window.index == 0:  # one piece cut by the tile's right border, one well inside
                mask = np.ones((10, 10), dtype=bool)
                box = np.array([0, 0, 10, 10], dtype=np.float32)
                pieces.append(CroppedInstance(box + [window.width - 10, 20, window.width - 10, 20], 1, 0.9, 20, window.width - 10, mask))
                pieces.append(CroppedInstance(box + [60, 60, 60, 60], 1, 0.9, 60, 60, mask))
            return pieces

    empty: list[np.ndarray] = []
    result = run(empty, detector=WithSpuriousPieces)
    assert_box_is_tight_box_of_mask(result.instances)
    assert [(i.y0, i.x0) for i in result.instances] == [(60, 60)]


def _rect(y0: int, x0: int, y1: int, x1: int, score: float, holes: tuple[int, int, int, int] | None = None) -> CroppedInstance:
    mask = np.ones((y1 - y0, x1 - x0), dtype=bool)
    if holes is not None:
        hy0, hx0, hy1, hx1 = holes
        mask[hy0 - y0 : hy1 - y0, hx0 - x0 : hx1 - x0] = False
    return CroppedInstance(np.array([x0, y0, x1, y1], dtype=np.float32), 1, score, y0, x0, mask)


def test_a_piece_links_to_one_detection_of_the_neighbour_tile_not_to_a_junk_one_around_it():
    # Tiles A (x 0..100) and B (x 60..160) share x 60..100. Object O (x 50..80) crosses B's
    # left border; object P (x 110..130) lies in B only. B also reports a low-scoring
    # detection J spanning O's piece, the gap and P: inside the shared area J overlaps A's
    # O with IoU 0.67, so linking every pair above 0.5 would merge O, J and B's O into one
    # instance bloated over P. Linked one to one (best overlap first), O and P come out exact
    # and J, cut by B's border and linked to nothing, is dropped.
    from maskrcnn.inference.tiling.merge import SeamMerger

    merger = SeamMerger(100, 160, 0.5)
    merger.add_tile(TileWindow(0, 0, 0, 100, 100), [_rect(40, 50, 60, 80, 0.9)])
    junk = _rect(40, 60, 60, 130, 0.3, holes=None)
    junk.mask[:5, 20:50] = False  # the gap between O and P is thinner: rows 45..55
    junk.mask[15:, 20:50] = False
    merger.add_tile(TileWindow(1, 0, 60, 100, 160), [_rect(40, 60, 60, 80, 0.9), junk, _rect(40, 110, 60, 130, 0.8)])
    found = sorted(merger.pop_finished(None), key=lambda i: i.x0)
    assert_box_is_tight_box_of_mask(found)
    assert [(i.y0, i.x0, i.mask.shape, bool(i.mask.all())) for i in found] == [(40, 50, (20, 30), True), (40, 110, (20, 20), True)]


def test_one_row_of_tiles_merges_objects_across_its_seams():
    # An image no taller than a tile: every tile spans the whole height (no inner border
    # above or below), which the merge's depth map must handle.
    height, width = 150, 500
    objects = []
    for x0 in (120, 260, 400):  # across the seams of tile 192 / overlap 48 (tiles at 0, 144, 288, 308)
        mask = np.zeros((height, width), dtype=bool)
        mask[40:90, x0 : x0 + 60] = True
        objects.append(mask)
    source = ImageSource(ArrayImage(np.zeros((height, width, 3), np.uint8)), IntensityWindow(0.0, 255.0))
    result = predict_tiled(GroundTruthPieces(objects), source, tile_size=192, overlap=48)
    assert result.tiles == 4 and len(result.instances) == 3
    assert_box_is_tight_box_of_mask(result.instances)
    assert sorted((i.y0, i.x0, i.mask.shape, bool(i.mask.all())) for i in result.instances) == [
        (40, x0, (50, 60), True) for x0 in (120, 260, 400)
    ]


def test_a_merged_box_is_the_model_box_of_the_tile_that_saw_each_side():
    # Tile A (x 0..100) sees the object whole; tile B (x 60..160) sees it cut at x = 60.
    # The merged box takes the left side from A (B's is cut), the other sides from the
    # tile that saw them deepest, as the model regressed them, not the mask's bounds.
    from maskrcnn.inference.tiling.merge import SeamMerger

    whole = _rect(40, 50, 60, 90, 0.9)
    whole.box = np.array([49.4, 39.6, 90.3, 60.2], dtype=np.float32)  # (x1, y1, x2, y2), regressed
    cut = _rect(40, 60, 60, 90, 0.8)
    cut.box = np.array([60.0, 39.8, 89.8, 60.1], dtype=np.float32)
    merger = SeamMerger(100, 160, 0.5)
    merger.add_tile(TileWindow(0, 0, 0, 100, 100), [whole])
    merger.add_tile(TileWindow(1, 0, 60, 100, 160), [cut])
    (merged,) = merger.pop_finished(None)
    # left: only A saw it; top and bottom: both, A deeper at x 70 (29 px from its right
    # border against 10 from B's left); right, x 90: B deeper (30 px against A's 9)
    assert merged.box.tolist() == pytest.approx([49.4, 39.6, 89.8, 60.2])
    assert (merged.y0, merged.x0, merged.mask.shape) == (40, 50, (20, 40))


def test_a_merged_score_is_that_of_the_view_with_the_most_context():
    # A sees the object (x 84..98) 2 px from its right border and scores it 0.9; B sees it
    # 24 px inside and scores it 0.6: the group takes B's score, not the highest.
    from maskrcnn.inference.tiling.merge import SeamMerger

    merger = SeamMerger(100, 160, 0.5)
    merger.add_tile(TileWindow(0, 0, 0, 100, 100), [_rect(40, 84, 60, 98, 0.9)])
    merger.add_tile(TileWindow(1, 0, 60, 100, 160), [_rect(40, 84, 60, 98, 0.6)])
    (merged,) = merger.pop_finished(None)
    assert merged.score == pytest.approx(0.6)
    assert_box_is_tight_box_of_mask([merged])


def test_a_c_shaped_object_at_the_image_top_keeps_its_whole_box(objects):
    # The C in the seam fixture at x 110..261 starts at row 0; the tile that saw its other
    # arm deepest saw it start at row 32, and the merged box took that top (the box left
    # rows 0..31 of the mask out). Its box must be the tight box of the merged mask.
    result = run(objects)
    (c_shape,) = [i for i in result.instances if (i.x0, i.x1) == (110, 261)]
    assert c_shape.y0 == 0 and c_shape.box.tolist() == [110.0, 0.0, 261.0, 91.0]


def test_the_merged_box_holds_the_mask_even_where_the_model_box_does_not():
    # Tile A sees the object whole but its regressed box stops 5 px short of the mask at the
    # top; B's piece is cut at its left border. The box is A's, moved out to hold every
    # mask pixel's centre on the side where it did not.
    from maskrcnn.inference.tiling.merge import SeamMerger

    whole = _rect(40, 50, 60, 90, 0.9)
    whole.box = np.array([49.6, 45.0, 90.2, 59.8], dtype=np.float32)
    merger = SeamMerger(100, 160, 0.5)
    merger.add_tile(TileWindow(0, 0, 0, 100, 100), [whole])
    merger.add_tile(TileWindow(1, 0, 60, 100, 160), [_rect(40, 60, 60, 90, 0.8)])
    (merged,) = merger.pop_finished(None)
    assert merged.box.tolist() == pytest.approx([49.6, 40.0, 90.0, 59.8])


def test_two_tiles_that_disagree_split_an_even_overlap_in_the_middle():
    # A (x 0..100) and B (x 60..160) share x 60..100, 40 px. A sees the object in rows
    # 40..60, B in rows 44..56. Each pixel takes the tile it lies deeper in: A up to x 79
    # (20 px from its border against B's 19), B from x 80: 20 columns each.
    from maskrcnn.inference.tiling.merge import SeamMerger

    merger = SeamMerger(100, 160, 0.5)
    merger.add_tile(TileWindow(0, 0, 0, 100, 100), [_rect(40, 50, 60, 100, 0.9)])
    merger.add_tile(TileWindow(1, 0, 60, 100, 160), [_rect(44, 60, 56, 120, 0.9)])
    (merged,) = merger.pop_finished(None)
    assert (merged.y0, merged.x0, merged.mask.shape) == (40, 50, (20, 70))
    rows_per_column = merged.mask.sum(axis=0)  # columns x 50..120
    assert rows_per_column[: 80 - 50].tolist() == [20] * 30
    assert rows_per_column[80 - 50 :].tolist() == [12] * 40


def test_piece_boxes_move_by_their_tile_offset_in_x_and_in_y():
    # One object seen whole by a tile at x 300, y 150 (different offsets in x and y): the
    # stub reports it in tile coordinates, the result holds it in image coordinates.
    height, width = 400, 500
    mask = np.zeros((height, width), dtype=bool)
    mask[170:200, 330:390] = True  # rows 170..200, columns 330..390
    source = ImageSource(ArrayImage(np.zeros((height, width, 3), np.uint8)), IntensityWindow(0.0, 255.0))
    result = predict_tiled(GroundTruthPieces([mask]), source, tile_size=128, overlap=32, origin=(150, 300))
    (found,) = result.instances
    assert (found.y0, found.x0) == (170, 330) and found.box.tolist() == [330.0, 170.0, 390.0, 200.0]
    assert result.boxes.tolist() == [[330.0, 170.0, 390.0, 200.0]]
