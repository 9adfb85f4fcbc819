import json

import pytest
import torch

from maskrcnn.io_utils import atomic_torch_save, atomic_write_json


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.ones(2)}, path)
    with pytest.raises(RuntimeError):
        atomic_torch_save({"w": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left


def test_json_round_trip(tmp_path):
    atomic_write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"x": 1}


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    atomic_write_json(tmp_path / "r.json", [])
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~mask
