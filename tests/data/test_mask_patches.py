"""Masks decoded once and kept as tight patches give exactly the masks decoded each time."""

import numpy as np
import torch

from maskrcnn.data.coco import CocoDataset, decode_segmentation
from maskrcnn.data.instance_masks import mask_extents
from maskrcnn.data.mask_patches import MaskPatchCache, paste_patches, tight_patch
from maskrcnn.data.nuclei import generate_nuclei


def decoded_each_time(dataset: CocoDataset, index: int) -> np.ndarray:
    """(N, H, W): what load_targets returned before the cache."""
    info = dataset.image_info(index)
    anns = dataset._targets[info["image_id"]]
    return np.stack([decode_segmentation(a["segmentation"], info["height"], info["width"]) for a in anns])


def check_dataset(dataset: CocoDataset) -> None:
    for _ in range(2):  # first pass decodes, second pass pastes cached patches
        for index in range(len(dataset)):
            masks = dataset.load_targets(index).masks
            assert masks.dtype == torch.uint8
            assert np.array_equal(masks.numpy(), decoded_each_time(dataset, index))
            # the extents it carries are those a scan of the masks finds
            assert torch.equal(mask_extents(masks), mask_extents(masks.clone()))


def test_tiny_set_polygons_and_both_rle_forms(tiny_coco):
    json_path, images_dir = tiny_coco
    check_dataset(CocoDataset(json_path, images_dir))


def test_dense_nuclei_images(tmp_path):
    json_path = generate_nuclei(tmp_path, num_images=2, max_side=256, seed=3)
    dataset = CocoDataset(json_path, tmp_path / "images")
    check_dataset(dataset)
    assert dataset._mask_patches.bytes > 0


def test_over_the_budget_images_are_decoded_each_time(tmp_path):
    json_path = generate_nuclei(tmp_path, num_images=2, max_side=256, seed=4)
    dataset = CocoDataset(json_path, tmp_path / "images")
    dataset._mask_patches = MaskPatchCache(max_bytes=0)
    check_dataset(dataset)
    assert dataset._mask_patches.bytes == 0


def test_empty_mask_stays_empty():
    full = np.zeros((5, 6), np.uint8)
    assert tight_patch(full) is None
    full[1:3, 2:5] = 1
    patch = tight_patch(full)
    masks = paste_patches([patch, None], 5, 6)
    assert np.array_equal(masks[0].numpy(), full) and int(masks[1].sum()) == 0
    assert mask_extents(masks).tolist() == [[2, 1, 5, 3], [0, 0, 0, 0]]
