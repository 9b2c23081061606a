"""Find and read ONE member of a downloaded .zip / .tar(.gz) archive, safely.

Why not ``extractall``: the archives are third-party (DECA's data.tar.gz, DiffAE's and EMOCA's
zips). Only the member the studio needs is read, as a byte stream the caller copies to a path of
its own choosing, so member names can never place files elsewhere (no path traversal); links,
devices and directories are refused; the declared size is checked before reading and enforced
while reading (a lying header cannot fill the disk).
"""
from __future__ import annotations

import contextlib
import fnmatch
import gzip
import posixpath
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from personalize.errors import UserError
from studio.weights.entry import MemberPick

MAX_MEMBER_BYTES = 32 << 30
"""No weights file here is near this; a bigger declared member is refused."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    regular_file: bool


def is_archive(path: Path) -> bool:
    """True for a zip or tar (any compression) file; decided from content, not the extension."""
    try:
        return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)
    except OSError:
        return False


def list_members(path: Path) -> list[Member]:
    """Every member of the archive (reads the zip directory, or scans the whole tar once)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return [Member(info.filename, info.file_size, _zip_regular(info))
                        for info in archive.infolist()]
        with tarfile.open(path, "r:*") as archive:
            return [Member(info.name, info.size, info.isreg()) for info in archive.getmembers()]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"the archive {path} is damaged or incomplete ({exc}).",
                        "Delete it and download it again.") from exc


def _zip_regular(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    is_link = (mode & 0o170000) == 0o120000
    return not info.is_dir() and not is_link


def _normalized(name: str) -> str | None:
    """The member path in POSIX form, or None if it is absolute or climbs out ('..')."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    if ".." in posixpath.normpath(name).split("/"):
        return None
    return name


def find_member(members: list[Member], patterns: tuple[str, ...], pick: MemberPick,
                what: str) -> Member:
    """The member matching the first pattern that matches anything; ``UserError`` otherwise.

    ``what`` names the archive in messages. Several matches of one pattern are resolved by
    ``pick`` (see ``studio.weights.entry.MemberPick``).
    """
    safe = [(member, _normalized(member.name)) for member in members]
    for pattern in patterns:
        matches = [m for m, name in safe if name is not None and fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            continue
        chosen = _pick(matches, pick, what)
        if not chosen.regular_file:
            raise UserError(f"{what}: the member {chosen.name} is a link or a folder, not a file; "
                            "nothing was installed.",
                            "The archive is not the expected one. Get it again from the source.")
        if chosen.size > MAX_MEMBER_BYTES:
            raise UserError(f"{what}: the member {chosen.name} claims {chosen.size:,} bytes, far "
                            "more than any weights file; nothing was installed.",
                            "The archive is not the expected one. Get it again from the source.")
        return chosen
    shown = ", ".join(m.name for m in members[:12]) + (" ..." if len(members) > 12 else "")
    raise UserError(f"{what} has no member matching {' or '.join(patterns)}; it holds: "
                    f"{shown or 'nothing'}. Nothing was installed.",
                    "It is not the expected archive (or a newer version laid out differently).")


def _pick(matches: list[Member], pick: MemberPick, what: str) -> Member:
    if len(matches) == 1:
        return matches[0]
    if pick == "lowest_metric":
        scored = [(metric, m) for m in matches if (metric := _trailing_metric(m.name)) is not None]
        if scored:
            return min(scored, key=lambda pair: pair[0])[1]
    names = ", ".join(m.name for m in matches)
    raise UserError(f"{what} holds several candidate files ({names}); nothing was installed.",
                    "Extract the right one yourself and import that file.")


def _trailing_metric(name: str) -> float | None:
    """EMOCA's 'best' checkpoint rule: the number after the last '=' of the file stem."""
    stem = posixpath.basename(name).rsplit(".", 1)[0]
    if stem == "last" or "=" not in stem:
        return None
    try:
        return float(stem.rsplit("=", 1)[1])
    except ValueError:
        return None


class _Bounded:
    """A read-only stream that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int, what: str) -> None:
        self._stream, self._left, self._what = stream, limit, what

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._left -= len(chunk)
        if self._left < 0:
            raise UserError(f"{self._what} is larger than its archive header says; nothing was "
                            "installed.", "The archive is damaged or hostile. Get it again.")
        return chunk


@contextlib.contextmanager
def open_member(path: Path, member: Member) -> Iterator[_Bounded]:
    """A byte stream of ``member`` (found with ``find_member``), bounded by its declared size."""
    what = f"{member.name} in {path}"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive, archive.open(member.name) as stream:
                yield _Bounded(stream, member.size, what)
            return
        with tarfile.open(path, "r:*") as archive:
            stream = archive.extractfile(member.name)
            if stream is None:
                raise UserError(f"{what} is not a regular file.", "Get the archive again.")
            with stream:
                yield _Bounded(stream, member.size, what)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(f"the archive {path} is damaged or incomplete ({exc}).",
                        "Delete it and download it again.") from exc
