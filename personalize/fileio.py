"""Atomic file writes: a crash or a full disk never leaves a half-written project file.

Every write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows). Readers therefore see either the old
file or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from personalize.progress import ProgressFn, no_progress

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    Use for writers that want a file name (e.g. torch.save, cv2.imwrite, ffmpeg). On any
    exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_save_npz(target: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(target, buf.getvalue())


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)


def sha256_file(path: str | os.PathLike[str], progress: ProgressFn = no_progress,
                message: str = "verifying") -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks (never the whole file in memory).

    The one file hash of the studio: source videos (did the user pick the same video again?),
    downloaded weights (are they the right file?). ``progress(bytes_done, bytes_total, message)``.
    """
    digest = hashlib.sha256()
    total = os.path.getsize(path)
    done = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            done += len(block)
            progress(done, total, message)
    return digest.hexdigest()


def same_file_content(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when two files hold the same bytes (sizes first: most different files differ there)."""
    return os.path.getsize(a) == os.path.getsize(b) and sha256_file(a) == sha256_file(b)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; not supported on every platform (e.g. Windows), hence best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
