"""The npe2 manifest: valid, importable, and the one the package's entry point names."""

from __future__ import annotations

from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")
tomllib = pytest.importorskip("tomllib")  # Python 3.11+

import maskrcnn.napari_plugin

REPO = Path(__file__).resolve().parents[2]
MANIFEST = Path(maskrcnn.napari_plugin.__file__).parent / "napari.yaml"


def test_napari_manifest_validates_and_its_commands_import():
    manifest = npe2.PluginManifest.from_file(MANIFEST)  # schema checks, as `npe2 validate` makes
    manifest.validate_imports()  # `npe2 validate --imports`: every python_name imports
    assert manifest.name == "maskrcnn"  # npe2 ties a manifest to the distribution of that name
    assert [w.display_name for w in manifest.contributions.widgets] == ["Mask R-CNN instances"]


def test_napari_entry_point_and_package_data_name_the_manifest():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    entry = project["project"]["entry-points"]["napari.manifest"]["maskrcnn"]
    module, _, resource = entry.partition(":")
    assert module == "maskrcnn.napari_plugin" and resource == MANIFEST.name
    assert "napari_plugin/napari.yaml" in project["tool"]["setuptools"]["package-data"]["maskrcnn"]
    extras = project["project"]["optional-dependencies"]
    assert "napari" not in " ".join(project["project"]["dependencies"])  # the base install stays light
    assert any(req.startswith("napari") for req in extras["napari"])


def test_napari_sample_is_a_generated_nuclei_image():
    from maskrcnn.napari_plugin.sample import generated_nuclei

    [(pixels, kwargs)] = generated_nuclei()
    assert pixels.shape == (256, 256, 3) and pixels.dtype.name == "uint8" and kwargs["rgb"] is True


def test_napari_plugin_is_imported_by_nothing_else_in_the_package():
    # napari and Qt come with the napari extra only: nothing outside the plugin may import it
    package = REPO / "src" / "maskrcnn"
    plugin = package / "napari_plugin"
    importers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if plugin not in path.parents and "napari_plugin" in path.read_text(encoding="utf-8")
    ]
    assert importers == []
    qt_free = ("layer_pixels.py", "segmentation.py", "sample.py")  # testable and usable without Qt
    for name in qt_free:
        text = (plugin / name).read_text(encoding="utf-8")
        assert "import napari" not in text and "qtpy" not in text and "magicgui" not in text, name
