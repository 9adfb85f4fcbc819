"""Merging the pieces of instances that tile borders cut, so one object gives one instance.

Every tile reports instances ("pieces") in image coordinates. An object near a seam is
seen by two or more tiles: whole by some, cut at a tile border by others.

1. Linking. Two pieces from different tiles are the same object when, inside the area
   the two tiles share (where both tiles see the same pixels), their masks overlap:
   intersection over union there >= `threshold` (0.5 by default), and they have the same
   label. (Intersection over the smaller piece linked a small object to any large,
   low-scoring detection around it and chained objects together: mask AP 0.07 against
   0.19 with IoU, in an earlier mosaic benchmark.) Links are transitive (union-find), so an object across
   three tiles or a tile corner becomes one group. Pieces of one tile are never linked
   directly: the model's own NMS has separated them. Between two tiles links are one to
   one, best overlap first: a piece that also overlaps a second, looser detection of the
   neighbour (a low-scoring box around the object and its neighbour) would otherwise chain
   the two into one bloated instance (shapes canvas, 600-iteration model: mask AP 0.146
   with every link above the threshold, 0.178 one to one; benchmarks/tiling_accuracy.py).
2. Merging a group. Each pixel of the group's area takes the mask of the group's tile in
   which it lies deepest (farthest from that tile's borders; the image's own borders do
   not count): every part of the object comes from the tile that saw it with the most
   context, and a cut edge is never used where another tile saw past it. Score and
   label: those of the piece whose tile sees the object's centre deepest; box: each side from the piece that saw
   that side deepest inside its tile, among the pieces not cut there (the model's own
   box regression, more exact than the mask's bounds).
   A piece cut by its tile's border (inside the image) that links to nothing is dropped:
   the neighbouring tile saw that place too and did not confirm it.
3. Streaming. Tiles come row by row; after a row, groups whose pieces all end above the
   next row's top can get no more pieces and leave the merger. What is held is about one
   row of tiles' instances, not the image's.
"""

from __future__ import annotations

import numpy as np

from maskrcnn.inference.tiling.grid import TileWindow
from maskrcnn.inference.tiling.instances import CroppedInstance, trim

DEPTH_AT_IMAGE_BORDER = 1 << 30


class _Piece:
    __slots__ = ("instance", "tile", "parent")

    def __init__(self, instance: CroppedInstance, tile: TileWindow, index: int) -> None:
        self.instance = instance
        self.tile = tile
        self.parent = index


class SeamMerger:
    """Collects per-tile instances and gives back merged ones, row by row."""

    def __init__(self, height: int, width: int, threshold: float = 0.5, class_agnostic: bool = False) -> None:
        self.height, self.width = height, width
        self.threshold = float(threshold)
        self.class_agnostic = class_agnostic
        self.pieces: dict[int, _Piece] = {}  # live pieces by id
        self.tiles: dict[int, tuple[TileWindow, list[int]]] = {}  # tile index -> (window, live piece ids)
        self._next_id = 0

    # -- union-find --------------------------------------------------------------------

    def _root(self, pid: int) -> int:
        while self.pieces[pid].parent != pid:
            grand = self.pieces[self.pieces[pid].parent].parent
            self.pieces[pid].parent = grand
            pid = grand
        return pid

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._root(a), self._root(b)
        if ra != rb:
            self.pieces[max(ra, rb)].parent = min(ra, rb)

    # -- adding tiles ------------------------------------------------------------------

    def add_tile(self, tile: TileWindow, instances: list[CroppedInstance]) -> None:
        """Add one tile's instances (image coordinates) and link them to earlier tiles' pieces."""
        new_ids = []
        for instance in instances:
            pid = self._next_id
            self._next_id += 1
            self.pieces[pid] = _Piece(instance, tile, pid)
            new_ids.append(pid)
        for other, other_ids in list(self.tiles.values()):
            shared = _intersection(tile, other)
            if shared is None:
                continue
            near_new = [self.pieces[a].instance for a in new_ids]
            candidates_a = [(a, i) for a, i in zip(new_ids, near_new) if _box_meets(i, shared)]
            candidates_b = [(b, self.pieces[b].instance) for b in other_ids]
            candidates_b = [(b, i) for b, i in candidates_b if _box_meets(i, shared)]
            pairs = []  # (IoU in the shared area, new piece, earlier piece)
            for a, pa in candidates_a:
                for b, pb in candidates_b:
                    if _box_meets(pa, (pb.y0, pb.x0, pb.y1, pb.x1)):
                        iou = self._shared_iou(pa, pb, shared)
                        if iou > 0 and iou >= self.threshold:
                            pairs.append((iou, a, b))
            # One to one between two tiles, best overlap first: one piece linking two of the
            # other tile's (overlapping) detections would chain them into one instance.
            linked_a: set[int] = set()
            linked_b: set[int] = set()
            for _, a, b in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
                if a not in linked_a and b not in linked_b:
                    linked_a.add(a)
                    linked_b.add(b)
                    self._union(a, b)
        self.tiles[tile.index] = (tile, new_ids)

    def _shared_iou(self, p: CroppedInstance, q: CroppedInstance, shared: tuple[int, int, int, int]) -> float:
        """Mask IoU of p and q inside the shared area; 0 for different labels (unless class-agnostic)."""
        if not self.class_agnostic and p.label != q.label:
            return 0.0
        y0, x0, y1, x1 = shared
        area_p = _area_in(p, y0, x0, y1, x1)
        area_q = _area_in(q, y0, x0, y1, x1)
        if area_p == 0 or area_q == 0:
            return 0.0
        iy0, ix0 = max(y0, p.y0, q.y0), max(x0, p.x0, q.x0)
        iy1, ix1 = min(y1, p.y1, q.y1), min(x1, p.x1, q.x1)
        if iy1 <= iy0 or ix1 <= ix0:
            return 0.0
        mp = p.mask[iy0 - p.y0 : iy1 - p.y0, ix0 - p.x0 : ix1 - p.x0]
        mq = q.mask[iy0 - q.y0 : iy1 - q.y0, ix0 - q.x0 : ix1 - q.x0]
        intersection = int(np.count_nonzero(mp & mq))
        return intersection / (area_p + area_q - intersection)

    # -- taking merged instances out ---------------------------------------------------

    def pop_finished(self, next_row_top: int | None) -> list[CroppedInstance]:
        """Merged instances that no later tile (starting at row `next_row_top`) can touch; None: all."""
        groups: dict[int, list[int]] = {}
        for pid in self.pieces:
            groups.setdefault(self._root(pid), []).append(pid)
        finished = []
        for members in groups.values():
            if next_row_top is not None and any(self.pieces[m].instance.y1 > next_row_top for m in members):
                continue
            pieces = [self.pieces[m] for m in sorted(members)]
            if not (len(pieces) == 1 and self._cut_and_alone(pieces[0])):
                finished.append(self._merge(pieces))
            for m in members:
                del self.pieces[m]
        for index, (tile, ids) in list(self.tiles.items()):
            live = [pid for pid in ids if pid in self.pieces]
            if live:
                self.tiles[index] = (tile, live)
            else:
                del self.tiles[index]
        return finished

    def _cut_and_alone(self, piece: _Piece) -> bool:
        """A piece touching a border of its tile inside the image, linked to nothing.

        Every pixel at a tile's inner border is also inside a neighbouring tile, so an object
        cut there is seen by that tile too; a cut piece that matches nothing there is a
        partial view the neighbour did not confirm (mostly a duplicate of a differently
        segmented whole view), and is dropped.
        """
        return any(self._cut_on(piece.instance, piece.tile, side) for side in range(4))

    def _merge(self, members: list[_Piece]) -> CroppedInstance:
        if len(members) == 1:
            return members[0].instance
        instances = [m.instance for m in members]
        best = max(instances, key=lambda i: i.score)
        y0, x0 = min(i.y0 for i in instances), min(i.x0 for i in instances)
        y1, x1 = max(i.y1 for i in instances), max(i.x1 for i in instances)
        tiles = sorted({m.tile for m in members})
        masks = np.zeros((len(tiles), y1 - y0, x1 - x0), dtype=bool)  # per tile: union of its pieces
        depth = np.full((len(tiles), y1 - y0, x1 - x0), -1, dtype=np.int64)  # -1: outside that tile
        for k, tile in enumerate(tiles):
            for m in members:
                if m.tile == tile:
                    i = m.instance
                    masks[k, i.y0 - y0 : i.y1 - y0, i.x0 - x0 : i.x1 - x0] |= i.mask
            depth[k] = self._depth(tile, y0, x0, y1, x1)
        chosen = np.argmax(depth, axis=0)  # (h, w): the deepest tile; ties go to the earlier tile
        mask = np.take_along_axis(masks, chosen[None], axis=0)[0]
        merged = trim(CroppedInstance(best.box, best.label, best.score, y0, x0, mask))
        if merged.mask.any():
            merged.box = self._merged_box(members, merged)
            lead = self._deepest_at_centre(members, merged)
            merged.score, merged.label = lead.instance.score, lead.instance.label
        return merged

    def _deepest_at_centre(self, members: list[_Piece], merged: CroppedInstance) -> _Piece:
        """The piece whose tile sees the merged object's centre deepest (ties: higher score).

        Its score is the group's: the view with the most context. The highest of the pieces'
        scores would promote a doubtful second-class detection that some shallow view scored
        high (shapes canvas: objects with two detections >= 0.5, 80 with the highest score,
        53 with the deepest, 54 in small crops; mask AP 0.662 and 0.663).
        """
        cy, cx = (merged.y0 + merged.y1) // 2, (merged.x0 + merged.x1) // 2

        def key(m: _Piece) -> tuple[int, float]:
            t = m.tile
            y, x = min(max(cy, t.y0), t.y1 - 1), min(max(cx, t.x0), t.x1 - 1)
            return int(self._depth(t, y, x, y + 1, x + 1)[0, 0]), float(m.instance.score)

        return max(members, key=key)

    def _merged_box(self, members: list[_Piece], merged: CroppedInstance) -> np.ndarray:
        """(4,) x1 y1 x2 y2: each side from the piece that saw that side deepest inside its
        tile, among the pieces whose mask reaches the merged mask's bound on that side and
        are not cut there; the merged mask's bound where none is. The box always holds the
        centre of every pixel of the merged mask.

        The model's regressed box is more exact than a mask's bounds (shapes canvas, small
        crops: box AP 0.717 with the model's boxes, 0.662 with the masks' bounds), but a
        piece cut by its tile's border saw only part of the object on that side, and a piece
        that does not reach the side saw another part of the object (one arm of a C whose
        other arm reaches further): its box side is not the object's.
        """
        bounds = np.array([merged.x0, merged.y0, merged.x1, merged.y1], dtype=np.float32)
        box = bounds.copy()
        for side in range(4):  # x1, y1, x2, y2
            best: tuple[tuple[int, float], float] | None = None
            for m in members:
                i, t = m.instance, m.tile
                if self._cut_on(i, t, side) or not _reaches(i, merged, side):
                    continue
                vertical = side in (0, 2)  # the side is a vertical line at x = box[side]
                along = (i.box[1] + i.box[3]) / 2 if vertical else (i.box[0] + i.box[2]) / 2
                y = int(np.clip(along if vertical else i.box[side], t.y0, t.y1 - 1))
                x = int(np.clip(i.box[side] if vertical else along, t.x0, t.x1 - 1))
                key = (int(self._depth(t, y, x, y + 1, x + 1)[0, 0]), float(i.score))
                if best is None or key > best[0]:
                    best = (key, float(i.box[side]))
            if best is not None:
                box[side] = best[1]
        # every mask pixel's centre inside the box (a pixel column x has its centre at x + 0.5)
        low, high = box[:2] > bounds[:2] + 0.5, box[2:] < bounds[2:] - 0.5
        box[:2][low] = bounds[:2][low]
        box[2:][high] = bounds[2:][high]
        return box

    def _cut_on(self, i: CroppedInstance, t: TileWindow, side: int) -> bool:
        """Whether the piece's mask reaches its tile's border on `side` (0 left, 1 top, 2 right, 3 bottom) inside the image."""
        if side == 0:
            return i.x0 <= t.x0 and t.x0 > 0
        if side == 1:
            return i.y0 <= t.y0 and t.y0 > 0
        if side == 2:
            return i.x1 >= t.x1 and t.x1 < self.width
        return i.y1 >= t.y1 and t.y1 < self.height

    def _depth(self, tile: TileWindow, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """(h, w) distance of each pixel of rows y0..y1, columns x0..x1 to the tile's inner borders."""
        ys, xs = np.arange(y0, y1), np.arange(x0, x1)
        dy = _axis_depth(ys, tile.y0, tile.y1, self.height)  # (h,)
        dx = _axis_depth(xs, tile.x0, tile.x1, self.width)  # (w,)
        depth = np.minimum(dy[:, None], dx[None, :])
        inside = ((ys >= tile.y0) & (ys < tile.y1))[:, None] & ((xs >= tile.x0) & (xs < tile.x1))[None, :]
        return np.where(inside, depth, -1)


def _axis_depth(coords: np.ndarray, start: int, end: int, length: int) -> np.ndarray:
    """(n,) distance of each coordinate to the tile's inner borders along one axis (the
    image's own borders do not count: a tile spanning the whole axis is deep everywhere)."""
    depth = np.full(coords.shape, DEPTH_AT_IMAGE_BORDER, dtype=np.int64)
    if start > 0:
        depth = np.minimum(depth, coords - start)
    if end < length:
        depth = np.minimum(depth, end - 1 - coords)
    return depth


def _reaches(piece: CroppedInstance, merged: CroppedInstance, side: int) -> bool:
    """Whether the piece's mask reaches the merged mask's bound on `side` (0 left, 1 top, 2 right, 3 bottom)."""
    if side == 0:
        return piece.x0 <= merged.x0
    if side == 1:
        return piece.y0 <= merged.y0
    if side == 2:
        return piece.x1 >= merged.x1
    return piece.y1 >= merged.y1


def _intersection(a: TileWindow, b: TileWindow) -> tuple[int, int, int, int] | None:
    y0, x0, y1, x1 = max(a.y0, b.y0), max(a.x0, b.x0), min(a.y1, b.y1), min(a.x1, b.x1)
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def _box_meets(instance: CroppedInstance, window: tuple[int, int, int, int]) -> bool:
    y0, x0, y1, x1 = window
    return instance.y0 < y1 and instance.y1 > y0 and instance.x0 < x1 and instance.x1 > x0


def _area_in(instance: CroppedInstance, y0: int, x0: int, y1: int, x1: int) -> int:
    """Mask pixels of `instance` inside rows y0..y1, columns x0..x1."""
    iy0, ix0 = max(y0, instance.y0), max(x0, instance.x0)
    iy1, ix1 = min(y1, instance.y1), min(x1, instance.x1)
    if iy1 <= iy0 or ix1 <= ix0:
        return 0
    region = instance.mask[iy0 - instance.y0 : iy1 - instance.y0, ix0 - instance.x0 : ix1 - instance.x0]
    return int(np.count_nonzero(region))
