"""Cheap structural checks of a weights file, before it is installed or its hash pinned.

Why: most one-shot files have no known hash, so the first copy is pinned as "the" file. A
truncated download, a half-copied file or a saved web page must not become that pin. These checks
read only the ends of the file (a zip's central directory, a pickle's last opcode), never the
whole file, and never unpickle anything.
"""
from __future__ import annotations

import pickle
import tarfile
import zipfile
from pathlib import Path

from personalize.errors import UserError
from studio.weights.entry import FileFormat

_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<!--")
# torch.save's legacy (non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_TORCH_LEGACY_HEAD = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
_PICKLE_STOP = b"."


def looks_like_html(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a body or file) is a web page, not binary weights."""
    return head.lstrip()[:64].lower().startswith(_HTML_STARTS)


def html_refusal(what: str, hint: str) -> UserError:
    return UserError(f"{what} is a web page, not a weights file (for example Google Drive's "
                     "'can't scan for viruses' or quota page saved by mistake); nothing was "
                     "installed.", hint)


def torch_zip_members(names: list[str]) -> bool:
    """True if a zip's member list is torch.save's zip format (``<folder>/data.pkl``)."""
    return any(name.endswith("/data.pkl") or name == "data.pkl" for name in names)


def _is_torch_tar(path: Path) -> bool:
    """torch.save's oldest format: a tar with 'pickle', 'storages' and 'tensors' members."""
    try:
        if not tarfile.is_tarfile(path):
            return False
        with tarfile.open(path) as archive:
            return "pickle" in archive.getnames()
    except (tarfile.TarError, OSError, EOFError):
        return False


def check_format(file_format: FileFormat | None, path: Path, what: str, hint: str) -> None:
    """Raise ``UserError`` if ``path`` cannot be a complete file of ``file_format``.

    ``torch``: torch.save's zip format with its ``data.pkl`` and an intact central directory
    (a truncated zip loses it), the legacy format's magic-number header, or the oldest tar
    format. ``pickle``: a pickle stream that ends with the STOP opcode. ``npy``: numpy's magic string.
    ``what`` names the file in the message; ``hint`` says what to do.
    """
    with open(path, "rb") as fh:
        head = fh.read(64)
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 1))
        tail = fh.read(1)
    if looks_like_html(head):
        raise html_refusal(what, hint)
    if file_format is None:
        return
    problem = None
    if file_format == "torch":
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if not torch_zip_members(archive.namelist()):
                    problem = "a zip archive, but not a PyTorch checkpoint (no data.pkl inside)"
        elif not (head.startswith(_TORCH_LEGACY_HEAD) or _is_torch_tar(path)):
            problem = ("not a PyTorch checkpoint (no torch.save header, or a zip checkpoint "
                       "whose end is missing: truncated)")
    elif file_format == "pickle":
        if tail != _PICKLE_STOP:
            problem = "not a complete pickle file (its end is missing: truncated)"
    elif file_format == "npy":
        if not head.startswith(b"\x93NUMPY"):
            problem = "not a numpy .npy file"
    if problem:
        raise UserError(f"{what} is {problem}; nothing was installed.", hint)
