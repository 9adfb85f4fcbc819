"""Tiled prediction of large images: grid, per-tile detection, merging across seams, outputs."""
