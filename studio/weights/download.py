"""Resumable, verified downloads of registry files (stdlib ``urllib`` only).

Why this shape: the files are 250-380 MB and users are often on flaky links or rented servers.
Bytes go to ``<target>.part``; a later run asks the server for the rest with ``Range: bytes=N-``.
Only a file whose size and sha256 match is renamed (atomically) to its real name, so a truncated,
corrupt or substituted download is never used. Proxies from the environment (HTTPS_PROXY) apply.
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from personalize.errors import MissingWeightsError, UserError
from personalize.fileio import sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.weights.registry import WeightsFile, get_entry
from studio.weights.store import (cache_dir, check_file_identity, find_copy,
                                  record_pin_if_new, verify_file)

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def fetch_weights(name: str, progress: ProgressFn = no_progress,
                  cancel: CancelToken = NEVER_CANCELLED, url: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Make sure ``name`` is present and verified; download (or resume) it if needed.

    ``url`` overrides the registry URL (a mirror); the file must still match the registry hash.
    ``progress(done_bytes, total_bytes, message)``; ``total`` is 0 when the size is unknown.
    Cancelling raises ``Cancelled`` and keeps the ``.part`` file so the next call resumes.
    Returns the installed path.
    """
    entry = get_entry(name)
    url = url or entry.url
    found = find_copy(entry)
    if found is not None:
        path, where = found
        try:
            verify_file(name, path, progress)
            return path
        except UserError:
            # A bad copy in our cache is replaced; another tool's copy is left alone and we
            # install our own (which the studio cache then prefers).
            if where == "studio cache":
                path.unlink()

    target = cache_dir() / entry.filename
    part = part_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and entry.size is not None and part.stat().st_size > entry.size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
    if not (part.exists() and entry.size is not None and part.stat().st_size == entry.size):
        _download_to_part(entry, url, target, part, progress, cancel, timeout)

    size = part.stat().st_size
    try:
        digest = sha256_file(part, progress)
        check_file_identity(
            entry, digest, size, f"the download from {url}",
            hint=f"The partial download was deleted. Run `studio-cli models fetch {entry.name}` "
                 "again to start from scratch; if it fails again, the server or a proxy hands "
                 "out a different file.\n" + _manual_steps(entry, url, target))
    except UserError:
        part.unlink(missing_ok=True)
        raise
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, target)
    record_pin_if_new(entry, digest, size, f"download from {url}")
    return target


def _download_to_part(entry: WeightsFile, url: str, target: Path, part: Path,
                      progress: ProgressFn, cancel: CancelToken, timeout: float) -> None:
    """Append the missing bytes of ``url`` to ``part`` (or rewrite it if the server restarts)."""
    from studio import __version__

    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"selfscan-avatar-studio/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    cancel.check()
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and start:
            return  # nothing left to send: the .part is complete; the hash check decides
        raise _unreachable(entry, url, target, f"the server answered HTTP {err.code} {err.reason}")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _unreachable(entry, url, target, str(getattr(err, "reason", err)))

    with response:
        total: int | None
        if response.status == 206 and start:
            first, total = _parse_content_range(response.headers.get("Content-Range", ""))
            if first != start:
                part.unlink()
                raise _unreachable(entry, url, target,
                                   f"the server resumed at byte {first} instead of {start}")
            mode = "ab"
        else:  # 200: a fresh download, or a server that ignores Range and resends everything
            start, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        total = total or entry.size
        done = start
        with open(part, mode) as fh:
            try:
                while True:
                    cancel.check()
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    fh.write(chunk)
                    done += len(chunk)
                    progress(done, total or 0, "downloading")
            except (http.client.HTTPException, OSError) as err:
                raise _interrupted(entry, url, part, done, total, str(err) or type(err).__name__)
    if total and done < total:
        raise _interrupted(entry, url, part, done, total, "the connection closed early")


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); the total may be '*' (unknown) -> None."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if not match:
        return None, None
    total = match.group(2)
    return int(match.group(1)), (int(total) if total.isdigit() else None)


def _manual_steps(entry: WeightsFile, url: str, target: Path) -> str:
    size = f" ({entry.size:,} bytes)" if entry.size else ""
    return (f"If this machine cannot reach it, download {url}{size} elsewhere and run\n"
            f"  studio-cli models import {entry.name} FILE\n"
            f"or put the file exactly at: {target}")


def _unreachable(entry: WeightsFile, url: str, target: Path, reason: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"could not download '{entry.name}' from {url}: {reason}.",
        "Check the internet connection, firewall or proxy (HTTPS_PROXY).\n"
        + _manual_steps(entry, url, target))


def _interrupted(entry: WeightsFile, url: str, part: Path, done: int, total: int | None,
                 reason: str) -> MissingWeightsError:
    of_total = f" of {total:,}" if total else ""
    target = part.with_name(part.name[: -len(".part")])
    return MissingWeightsError(
        f"the download of '{entry.name}' from {url} was interrupted after {done:,}{of_total} "
        f"bytes ({reason}).",
        f"Run `studio-cli models fetch {entry.name}` again: it resumes from {part}.\n"
        + _manual_steps(entry, url, target))
