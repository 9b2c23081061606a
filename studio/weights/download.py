"""Resumable, verified downloads of registry files (stdlib ``urllib`` only), Google Drive included.

Why this shape: the files are 100 MB - 2 GB and users are often on flaky links or rented servers.
Bytes go to ``<target>.part``; a later run asks the server for the rest with ``Range: bytes=N-``.
Only a file whose size, sha256 (or first pinned sha256) and format check out is renamed
(atomically) to its real name, so a truncated, corrupt or substituted download is never used.
A web page (a Drive confirmation, quota or sign-in page, a captive portal) is never written into
a ``.part``: Drive's confirmation is followed, every other page is an error that says how to get
the file in a browser. Archives (DECA's data.tar.gz, DiffAE's and EMOCA's zips) are downloaded the
same way into ``archives/``, only the needed members are extracted, and the archive is deleted.
Proxies from the environment (HTTPS_PROXY) apply.
"""
from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from personalize.errors import MissingWeightsError, UserError
from personalize.fileio import sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.weights.archives import Member, find_member, list_members, open_member
from studio.weights.formats import check_format, looks_like_html
from studio.weights.gdrive import DrivePage, download_url, file_id_from_url, read_drive_page, view_url
from studio.weights.licences import licence_accepted, require_licence
from studio.weights.registry import REGISTRY, WeightsFile, get_entry
from studio.weights.store import (cache_dir, check_file_identity, find_copy,
                                  how_to_get, install_stream, record_pin_if_new, verify_file)

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
ARCHIVES_DIR = "archives"
MAX_PAGE_BYTES = 2 << 20   # an HTML answer is read (to understand it) up to this size
MAX_CONFIRMATIONS = 3      # Drive asks once; more means something else is going on


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


@dataclass(frozen=True)
class _Source:
    """Where bytes come from: ``shown`` in messages, ``request`` asked first; Drive or plain."""

    shown: str
    request: str
    drive: bool


def _source_of(entry: WeightsFile, url: str | None) -> _Source:
    if url is None and entry.source == "gdrive" and entry.gdrive_id:
        return _Source(entry.url, download_url(entry.gdrive_id), True)
    url = url or entry.url
    file_id = file_id_from_url(url)
    if file_id:  # a Drive link given as a mirror
        return _Source(view_url(file_id), download_url(file_id), True)
    return _Source(url, url, False)


def fetch_weights(name: str, progress: ProgressFn = no_progress,
                  cancel: CancelToken = NEVER_CANCELLED, url: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S, accept_licence: bool = False) -> Path:
    """Make sure ``name`` is present and verified; download (or resume) it if needed.

    ``url`` overrides the registry URL (a mirror, or another Drive link); the file must still
    match the registry hash or pin. A file with a licence note needs ``accept_licence=True`` once
    (else ``LicenceNotAcceptedError`` carrying the note); acceptance is then recorded.
    ``progress(done_bytes, total_bytes, message)``; ``total`` is 0 when the size is unknown.
    Cancelling raises ``Cancelled`` and keeps the ``.part`` file (or the downloaded archive) so
    the next call resumes. Returns the installed path.
    """
    entry = get_entry(name)
    found = _verified_copy(entry, progress)
    if found is not None:
        return found
    target = cache_dir() / entry.filename
    if not entry.downloadable and url is None:
        raise MissingWeightsError(f"'{entry.name}' ({entry.description}) is not installed.",
                                  how_to_get(entry, target))
    require_licence(entry, accept_licence)
    source = _source_of(entry, url)
    if entry.archive:
        return _fetch_from_archive(entry, source, progress, cancel, timeout)
    return _fetch_file(entry, source, target, progress, cancel, timeout)


def _verified_copy(entry: WeightsFile, progress: ProgressFn) -> Path | None:
    found = find_copy(entry)
    if found is None:
        return None
    path, where = found
    try:
        verify_file(entry.name, path, progress)
        return path
    except UserError:
        # A bad copy in our cache is replaced; another tool's copy is left alone and we
        # install our own (which the studio cache then prefers).
        if where == "studio cache":
            path.unlink()
        return None


def _fetch_file(entry: WeightsFile, source: _Source, target: Path, progress: ProgressFn,
                cancel: CancelToken, timeout: float) -> Path:
    part = part_path(target)
    _download_to_part(entry, source, part, entry.size, progress, cancel, timeout)
    size = part.stat().st_size
    hint = (f"The partial download was deleted. Run `studio-cli models fetch {entry.name}` "
            "again to start from scratch; if it fails again, the server or a proxy hands "
            "out a different file.\n" + _manual_steps(entry, source, target))
    try:
        digest = sha256_file(part, progress)
        check_file_identity(entry, digest, size, f"the download from {source.shown}", hint=hint)
        check_format(entry.file_format, part, f"the download from {source.shown}", hint)
    except UserError:
        part.unlink(missing_ok=True)
        raise
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, target)
    record_pin_if_new(entry, digest, size, f"download from {source.shown}")
    return target


# ---------------------------------------------------------------------------------------------
# Archives.

def archive_path(entry: WeightsFile) -> Path:
    """Where the archive holding ``entry`` is kept between its download and the extraction."""
    assert entry.archive, f"{entry.name} is not an archive member"
    return cache_dir() / ARCHIVES_DIR / entry.archive


def _fetch_from_archive(entry: WeightsFile, source: _Source, progress: ProgressFn,
                        cancel: CancelToken, timeout: float) -> Path:
    """Download the archive (resumable), extract ``entry`` and its missing siblings, delete it.

    Siblings (other registry files from the same archive) come along when their licence note is
    accepted or is the same note, so an archive is downloaded once. A damaged archive, or one
    without the member, is deleted (the error says what it held); a cancelled extraction keeps it
    so the next run skips the download.
    """
    archive = archive_path(entry)
    if not archive.is_file():
        part = part_path(archive)
        _download_to_part(entry, source, part, None, progress, cancel, timeout)
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(part, archive)

    def extracting(done: int, total: int, message: str = "") -> None:
        cancel.check()
        progress(done, total, message)

    what = f"the archive {entry.archive} from {source.shown}"
    try:
        members = list_members(archive)
        installed = _extract(archive, members, entry, what, extracting)
        for sibling in _siblings_to_extract(entry):
            try:
                _extract(archive, members, sibling, what, extracting)
            except UserError:
                pass  # a sibling is a bonus; its own fetch reports its problem
    except UserError:
        archive.unlink(missing_ok=True)
        raise
    archive.unlink(missing_ok=True)
    return installed


def _extract(archive: Path, members: list[Member], entry: WeightsFile, what: str,
             progress: ProgressFn) -> Path:
    member = find_member(members, entry.members, entry.member_pick, what)
    with open_member(archive, member) as stream:
        return install_stream(entry, stream, member.size, f"{member.name} in {what}", progress,
                              "extracting")


def _siblings_to_extract(entry: WeightsFile) -> list[WeightsFile]:
    return [other for other in REGISTRY.values()
            if other.name != entry.name and other.archive == entry.archive
            and find_copy(other) is None
            and (other.licence == entry.licence or licence_accepted(other.name))]


# ---------------------------------------------------------------------------------------------
# HTTP.

def _download_to_part(entry: WeightsFile, source: _Source, part: Path, size: int | None,
                      progress: ProgressFn, cancel: CancelToken, timeout: float) -> None:
    """Make ``part`` hold the whole file at ``source`` (appending to what it already holds).

    Drive's confirmation pages are followed (with the Range header kept, so resuming works
    through them); any other web page raises ``MissingWeightsError`` without touching ``part``.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and size is not None and part.stat().st_size > size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
    if part.exists() and size is not None and part.stat().st_size == size:
        return
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    url = source.request
    for _ in range(MAX_CONFIRMATIONS + 1):
        cancel.check()
        response = _open(opener, entry, source, url, part, timeout)
        if response is None:
            return  # 416: nothing left to send; the checks after the download decide
        with response:
            try:
                head = _read_at_least(response, 64)
                is_page = looks_like_html(head) or _content_type(response) == "text/html"
                page = b""
                if is_page:
                    page = head + response.read(MAX_PAGE_BYTES)
            except (http.client.HTTPException, OSError) as err:
                raise _unreachable(entry, source, str(err) or type(err).__name__) from None
            if is_page:
                if not source.drive:
                    raise _unreachable(entry, source,
                                       "the server sent a web page instead of the file")
                answer = read_drive_page(page.decode("utf-8", "replace"), response.geturl())
                if answer.kind != "confirm":
                    raise _drive_refused(entry, source, answer)
                url = answer.next_url or url
                continue
            _write_body(entry, source, response, head, part, size, progress, cancel)
            return
    raise _drive_refused(entry, source, DrivePage("unknown", title="confirmation loop"))


def _open(opener: urllib.request.OpenerDirector, entry: WeightsFile, source: _Source, url: str,
          part: Path, timeout: float) -> http.client.HTTPResponse | None:
    """Send the request (with Range when resuming); None for 416 on a resume."""
    from studio import __version__

    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"selfscan-avatar-studio/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        try:
            if err.code == 416 and start:
                return None
            body = _error_body(err) if source.drive else b""
        finally:
            err.close()
        if looks_like_html(body):
            answer = read_drive_page(body.decode("utf-8", "replace"), url)
            if answer.kind in ("quota", "access", "not_found"):
                raise _drive_refused(entry, source, answer) from None
        raise _unreachable(entry, source,
                           f"the server answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _unreachable(entry, source, str(getattr(err, "reason", err))) from None


def _error_body(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read(MAX_PAGE_BYTES) or b""
    except (OSError, http.client.HTTPException, AttributeError):
        return b""


def _content_type(response: http.client.HTTPResponse) -> str:
    return (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _read_at_least(response: http.client.HTTPResponse, count: int) -> bytes:
    head = b""
    while len(head) < count:
        chunk = response.read(count - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _write_body(entry: WeightsFile, source: _Source, response: http.client.HTTPResponse,
                head: bytes, part: Path, size: int | None, progress: ProgressFn,
                cancel: CancelToken) -> None:
    """Append (206) or write from scratch (200) the body whose first bytes are ``head``."""
    start = part.stat().st_size if part.exists() else 0
    total: int | None
    if response.status == 206 and start:
        first, total = _parse_content_range(response.headers.get("Content-Range", ""))
        if first != start:
            part.unlink()
            raise _unreachable(entry, source,
                               f"the server resumed at byte {first} instead of {start}")
        mode = "ab"
    else:  # 200: a fresh download, or a server that ignores Range and resends everything
        start, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    total = total or size
    done = start
    with open(part, mode) as fh:
        try:
            chunk = head
            while chunk:
                cancel.check()
                fh.write(chunk)
                done += len(chunk)
                progress(done, total or 0, "downloading")
                chunk = response.read(CHUNK_BYTES)
        except (http.client.HTTPException, OSError) as err:
            raise _interrupted(entry, source, part, done, total, str(err) or type(err).__name__)
    if total and done < total:
        raise _interrupted(entry, source, part, done, total, "the connection closed early")


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); the total may be '*' (unknown) -> None."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if not match:
        return None, None
    total = match.group(2)
    return int(match.group(1)), (int(total) if total.isdigit() else None)


# ---------------------------------------------------------------------------------------------
# Messages.

def _manual_steps(entry: WeightsFile, source: _Source, target: Path) -> str:
    size = f" ({entry.size:,} bytes)" if entry.size and not entry.archive else ""
    what = f"the archive {entry.archive}" if entry.archive else "the file"
    how = " in a browser" if source.drive else ""
    also = f" (the archive, or {entry.filename} from it)" if entry.archive else ""
    return (f"If this machine cannot reach it, download {what} from {source.shown}{size}{how} "
            f"elsewhere and run\n  studio-cli models import {entry.name} FILE{also}\n"
            f"or put the file exactly at: {target}")


def _target_of(entry: WeightsFile) -> Path:
    return cache_dir() / entry.filename


def _unreachable(entry: WeightsFile, source: _Source, reason: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"could not download '{entry.name}' from {source.shown}: {reason}.",
        "Check the internet connection, firewall or proxy (HTTPS_PROXY).\n"
        + _manual_steps(entry, source, _target_of(entry)))


def _drive_refused(entry: WeightsFile, source: _Source, answer: DrivePage) -> MissingWeightsError:
    later = (" Drive lifts the quota after a while (often a day): you can also try again later."
             if answer.kind == "quota" else "")
    what = f"the archive {entry.archive}" if entry.archive else entry.filename
    also = f" (the archive, or {entry.filename} from it)" if entry.archive else ""
    return MissingWeightsError(
        f"could not download '{entry.name}': {answer.reason}. Nothing was saved.",
        f"Open {source.shown} in a web browser (signed in to a Google account if Drive asks), "
        f"download {what}, then run\n  studio-cli models import {entry.name} FILE{also}\n"
        f"or put the file exactly at: {_target_of(entry)}.{later}")


def _interrupted(entry: WeightsFile, source: _Source, part: Path, done: int, total: int | None,
                 reason: str) -> MissingWeightsError:
    of_total = f" of {total:,}" if total else ""
    return MissingWeightsError(
        f"the download of '{entry.name}' from {source.shown} was interrupted after {done:,}"
        f"{of_total} bytes ({reason}).",
        f"Run `studio-cli models fetch {entry.name}` again: it resumes from {part}.\n"
        + _manual_steps(entry, source, _target_of(entry)))
