"""Atomic file writes: a failed or interrupted write never leaves a half-written file."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from maskrcnn.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(_disk_full_message(path, len(data))) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class DiskFullError(UserError):
    """The disk (or quota) filled up during an atomic write; the previous file is kept.
    `situation` names the folder and the space needed; `advice` says what to do."""

    def __init__(self, situation: str, advice: str = "free some space (or choose another folder) and run again") -> None:
        self.situation = situation
        super().__init__(f"{situation}; {advice}")


def _disk_full_message(path: Path, needed: int) -> str:
    folder = path.parent.resolve()
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
    return f"{folder}: no space left to write {path.name}: it needs {needed / 2**20:.1f} MiB ({needed} bytes), {free}; {kept}"


class OutputPathError(UserError):
    """An output file that cannot be written: under a regular file, a folder, or in a read-only folder."""


def prepare_output_file(path: str | Path, what: str = "output file") -> Path:
    """Check that `path` can be written as a file and create the folders above it.

    Call it before long work whose result goes to `path`, so that a bad path fails first,
    in one line naming it, instead of after the work (or as a traceback).
    """
    path = Path(path)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputPathError(f"{path}: cannot write the {what}: {ancestor} is a file, not a folder")
            break
    if path.is_dir():
        raise OutputPathError(f"{path}: cannot write the {what}: it is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise OutputPathError(f"{path}: cannot write the {what}: folder {path.parent} is not writable")
    return path
