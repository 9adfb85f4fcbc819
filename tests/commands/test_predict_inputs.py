"""Expanding the image arguments of `maskrcnn predict`, and overlay file names."""

from pathlib import Path

import pytest

from maskrcnn.commands.predict import ImageListError, collect_images, overlay_names


@pytest.fixture()
def tree(tmp_path) -> Path:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.png"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_gives_its_images_sorted_not_recursive(tree) -> None:
    assert [p.name for p in collect_images([tree])] == ["a.JPG", "b.png"]


def test_glob_and_files_keep_order_and_drop_repeats(tree) -> None:
    found = collect_images([str(tree / "sub" / "*.png"), tree / "b.png", str(tree / "*.png"), tree / "notes.txt"])
    assert [p.name for p in found] == ["c.png", "b.png", "notes.txt"]


def test_recursive_glob(tree) -> None:
    assert sorted(p.name for p in collect_images([str(tree / "**" / "*.png")])) == ["b.png", "c.png"]


def test_glob_matching_only_non_images(tree) -> None:
    with pytest.raises(ImageListError, match="none is an image file"):
        collect_images([str(tree / "*.txt")])


def test_overlay_names_are_unique() -> None:
    names = overlay_names([Path("x/a.png"), Path("y/a.jpg"), Path("b.png"), Path("z/a.png")])
    assert names == ["a.png", "a_2.png", "b.png", "a_3.png"]
