from __future__ import annotations

import pytest

from maskrcnn.config import AugmentConfig, ConfigError, DatasetConfig
from maskrcnn.data.build import build_dataset
from maskrcnn.data.transforms import Compose


def _shapes(tmp_path, **overrides) -> DatasetConfig:
    values = dict(kind="shapes", annotations=str(tmp_path / "train.json"), num_images=3, image_size=32, seed=0)
    values.update(overrides)
    return DatasetConfig(**values)


def test_shapes_are_generated_once_and_regenerated_when_the_config_changes(tmp_path):
    ds = build_dataset(_shapes(tmp_path), AugmentConfig(), train=True)
    assert len(ds) == 3 and isinstance(ds.transforms, Compose)
    json_path = tmp_path / "train.json"
    stamp = json_path.stat().st_mtime_ns
    build_dataset(_shapes(tmp_path), None, train=False)
    assert json_path.stat().st_mtime_ns == stamp  # reused
    bigger = build_dataset(_shapes(tmp_path, num_images=5), None, train=False)
    assert len(bigger) == 5 and bigger.transforms is None


def test_train_and_val_can_share_a_folder(tmp_path):
    train = build_dataset(_shapes(tmp_path, seed=0), None, train=True)
    val = build_dataset(_shapes(tmp_path, annotations=str(tmp_path / "val.json"), seed=1), None, train=False)
    assert train.image_info(0)["file_name"] == "train_000000.png"
    assert val.image_info(0)["file_name"] == "val_000000.png"
    assert not (train[0][0] == val[0][0]).all()


def test_coco_kind_reads_the_given_files(tiny_coco):
    json_path, images_dir = tiny_coco
    ds = build_dataset(DatasetConfig(kind="coco", annotations=str(json_path), images=str(images_dir)), None, train=False)
    assert len(ds) == 2 and ds.class_names[1:] == ["dog", "cat"]


@pytest.mark.parametrize(
    "config, message",
    [
        (DatasetConfig(kind="coco", annotations="", images="x"), r"data.train.annotations: kind 'coco' needs"),
        (DatasetConfig(kind="coco", annotations="a.json", images=""), r"data.train.images: kind 'coco' needs"),
        (DatasetConfig(kind="voc"), r"data.train.kind: expected 'coco' or 'shapes', got 'voc'"),
        (DatasetConfig(kind="shapes", annotations="", num_images=3), r"data.train.annotations: kind 'shapes'"),
        (DatasetConfig(kind="shapes", annotations="s/t.json", num_images=0), r"data.train.num_images"),
        (DatasetConfig(kind="shapes", annotations="s/t.json", images="elsewhere", num_images=2), r"data.train.images"),
    ],
)
def test_config_mistakes_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        build_dataset(config, None, train=True)
