"""The local weights cache: where files live, whether they are there, verifying and importing them.

Why a cache in the user data dir (not the project): the same 380 MB generator serves every
project, and users on shared servers point ``STUDIO_CACHE_DIR`` at a shared disk. Copies that other
tools already downloaded (torch hub's AlexNet, the clip package's ViT-B-32) are used in place so
nobody downloads them twice.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import IO, Callable

import platformdirs

from personalize.errors import MissingWeightsError, UserError
from personalize.fileio import atomic_path, atomic_write_json, read_json, sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.weights.archives import Member, find_member, is_archive, list_members, open_member
from studio.weights.formats import check_format, html_refusal, looks_like_html, torch_zip_members
from studio.weights.registry import WeightsFile, get_entry

APP_NAME = "selfscan-avatar-studio"
CACHE_ENV = "STUDIO_CACHE_DIR"
PINS_FILE = "pins.json"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The weights folder: ``$STUDIO_CACHE_DIR`` if set, else ``<user data dir>/weights``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "weights"


def cache_path(name: str) -> Path:
    """Where the studio itself keeps (or would keep) the file ``name``."""
    return cache_dir() / get_entry(name).filename


# ---------------------------------------------------------------------------------------------
# Copies made by other tools that we accept in place.

def _torch_hub_copy(entry: WeightsFile) -> Path:
    import torch.hub  # lazy: only needed when looking for the AlexNet file

    return Path(torch.hub.get_dir()) / "checkpoints" / entry.filename


def _clip_package_copy(entry: WeightsFile) -> Path:
    # The clip package's default download_root.
    return Path.home() / ".cache" / "clip" / entry.filename


_OTHER_TOOLS: dict[str, tuple[str, Callable[[WeightsFile], Path]]] = {
    "lpips-alex": ("torch hub cache", _torch_hub_copy),
    "clip-vit-b32": ("clip package cache", _clip_package_copy),
}


def _candidates(entry: WeightsFile) -> list[tuple[Path, str]]:
    """(path, where) pairs in preference order: the studio cache first."""
    found = [(cache_dir() / entry.filename, "studio cache")]
    if entry.name in _OTHER_TOOLS:
        where, locate = _OTHER_TOOLS[entry.name]
        found.append((locate(entry), where))
    return found


def expected_size(entry: WeightsFile) -> int | None:
    """The registry's size, else the size pinned by the first verified copy, else None."""
    if entry.size is not None:
        return entry.size
    pinned = read_pins().get(entry.name, {}).get("size")
    return pinned if isinstance(pinned, int) else None


def _looks_complete(entry: WeightsFile, path: Path) -> bool:
    """Cheap presence test (no hashing, so `models list` stays instant): exists with right size."""
    try:
        if not path.is_file():
            return False
        size = expected_size(entry)
        return size is None or path.stat().st_size == size
    except OSError:
        return False


def find_copy(entry: WeightsFile) -> tuple[Path, str] | None:
    """The first complete-looking copy as (path, where), or None."""
    for path, where in _candidates(entry):
        if _looks_complete(entry, path):
            return path, where
    return None


def weights_path(name: str) -> Path:
    """Where ``name`` lives (studio cache or another tool's cache) or, if absent, would live."""
    entry = get_entry(name)
    found = find_copy(entry)
    return found[0] if found else cache_dir() / entry.filename


def is_present(name: str) -> bool:
    return find_copy(get_entry(name)) is not None


def manual_download_hint(entry: WeightsFile) -> str:
    """How a person gets the file by hand, ending where ``models import NAME FILE`` takes over."""
    if entry.source == "manual":
        return entry.manual_steps
    what = f"the archive {entry.archive}" if entry.archive else entry.filename
    where = " in a browser" if entry.source == "gdrive" else ""
    also = (f"\n(FILE: the archive itself, or {entry.filename} extracted from it)"
            if entry.archive else "")
    return (f"Download {what}{where} from {entry.url}\n"
            f"yourself and run:   studio-cli models import {entry.name} FILE{also}")


def how_to_get(entry: WeightsFile, target: Path) -> str:
    """The ways to get a file, shared by every 'missing' message."""
    size = f" ({entry.size:,} bytes)" if entry.size else ""
    manual = manual_download_hint(entry)
    if entry.downloadable:
        manual = (f"Download it with:   studio-cli models fetch {entry.name}\n"
                  f"or {manual[0].lower()}{manual[1:]}")
    return f"{manual}\nor put the file exactly at: {target}{size}"


def require_weights(name: str) -> Path:
    """The path of ``name``; raises ``MissingWeightsError`` saying how to get it if absent."""
    entry = get_entry(name)
    found = find_copy(entry)
    if found:
        return found[0]
    target = cache_dir() / entry.filename
    raise MissingWeightsError(
        f"missing pretrained weights '{entry.name}': {entry.description} "
        f"(needed for {entry.purpose}).",
        how_to_get(entry, target))


# ---------------------------------------------------------------------------------------------
# Verification and pins.

def _pins_path() -> Path:
    return cache_dir() / PINS_FILE


def read_pins() -> dict[str, dict]:
    path = _pins_path()
    if not path.is_file():
        return {}
    try:
        pins = read_json(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"the weights pin file {path} is unreadable ({exc}).",
                        "Delete it; hashes are pinned again on the next verified download.") from exc
    return pins if isinstance(pins, dict) else {}


def record_pin_if_new(entry: WeightsFile, digest: str, size: int, source: str) -> None:
    """Pin on first verified copy: only for entries whose hash the registry does not know."""
    if entry.sha256:
        return
    pins = read_pins()
    if entry.name in pins:
        return
    pins[entry.name] = {"sha256": digest, "size": size, "source": source,
                        "pinned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(_pins_path(), pins)


def forget_pin(name: str) -> bool:
    """Drop the pinned hash of ``name`` (True if there was one).

    Why: the first copy of an unhashed file is pinned on a cheap structural check; when that copy
    then turns out not to load (a different network imported under this name), keeping its pin
    would refuse the right file later.
    """
    entry = get_entry(name)
    pins = read_pins()
    if entry.sha256 or name not in pins:
        return False
    del pins[name]
    atomic_write_json(_pins_path(), pins)
    return True


def check_file_identity(entry: WeightsFile, digest: str, size: int, what: str,
                        hint: str | None = None) -> None:
    """Raise ``UserError`` unless (digest, size) is the registry's file (or its pin).

    ``what`` names the checked file in the message (e.g. 'the download from URL').
    """
    problems = []
    if entry.size is not None and size != entry.size:
        problems.append(f"size {size:,} bytes, expected {entry.size:,}")
    if entry.sha256 and digest != entry.sha256:
        problems.append(f"sha256 {digest}, expected {entry.sha256}")
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        problems.append(f"sha256 starts with {digest[:8]}, expected {entry.sha256_prefix}")
    if not entry.sha256:
        pin = read_pins().get(entry.name)
        if pin and (pin.get("sha256") != digest or pin.get("size", size) != size):
            problems.append(f"sha256 {digest}, but the first verified copy (pinned in "
                            f"{_pins_path()}) had {pin.get('sha256')}")
    if problems:
        raise UserError(
            f"{what} is not the expected '{entry.name}' file ({'; '.join(problems)}); "
            "nothing was installed.",
            hint or "The file may be truncated, corrupt or a different model. Get it again "
                    f"from {entry.url}")


def verify_file(name: str, path: Path, progress: ProgressFn = no_progress) -> str:
    """Check an existing file against the registry (hash or pin, and format); returns its sha256.

    A file put in place by hand is pinned here the first time it passes, like a download.
    """
    entry = get_entry(name)
    digest = sha256_file(path, progress)
    size = path.stat().st_size
    check_file_identity(entry, digest, size, f"{path}")
    check_format(entry.file_format, path, f"{path}", manual_download_hint(entry))
    record_pin_if_new(entry, digest, size, f"verified copy at {path}")
    return digest


# ---------------------------------------------------------------------------------------------
# Installing a file (from an import, an archive member or a finished download).

def install_stream(entry: WeightsFile, stream: IO[bytes], size: int | None, what: str,
                   progress: ProgressFn = no_progress, message: str = "copying",
                   cancel: CancelToken = NEVER_CANCELLED) -> Path:
    """Copy ``stream`` into the cache as ``entry``'s file, atomically, if it is the right file.

    The bytes go to a temporary file next to the target, hashed on the way; the size, hash (or
    pin) and format are checked before the rename, so a wrong or half-written file never appears
    under the real name. The first verified copy of an unhashed entry pins its hash. ``what``
    names the source in messages; ``size`` (if known) scales the progress.
    """
    target = cache_dir() / entry.filename
    _check_free_space(target.parent, size)
    digest = hashlib.sha256()
    done = 0
    hint = ("It may be truncated, corrupt or a different model.\n"
            + manual_download_hint(entry))
    with atomic_path(target, suffix=".import") as tmp:
        with open(tmp, "wb") as dst:
            while chunk := stream.read(_CHUNK):
                cancel.check()
                digest.update(chunk)
                dst.write(chunk)
                done += len(chunk)
                progress(done, size or 0, message)
        check_file_identity(entry, digest.hexdigest(), done, what, hint=hint)
        check_format(entry.file_format, tmp, what, hint)
    record_pin_if_new(entry, digest.hexdigest(), done, what)
    return target


def _check_free_space(folder: Path, size: int | None) -> None:
    """Refuse early (not with a half-written file and an OSError) when the disk is too full."""
    if size is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < size + (64 << 20):
        raise UserError(f"not enough free disk space in {folder} for a {size / 2**20:,.0f} MiB "
                        f"file ({free / 2**20:,.0f} MiB free); nothing was installed.",
                        f"Free some space, or point ${CACHE_ENV} at a larger disk.")


def import_weights(name: str, file: str | os.PathLike[str],
                   progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> Path:
    """Copy a user-supplied file into the cache after checking it is the right one.

    For an entry that comes out of an archive, ``file`` may be the archive itself: the member is
    found and extracted (and only it). A web page saved by mistake is refused with a hint.
    Importing needs no licence acceptance (see ``studio.weights.licences``). A cancel stops
    between chunks; nothing appears under the real name then.
    """
    entry = get_entry(name)
    source = Path(file).expanduser()
    if not source.is_file():
        raise UserError(f"cannot import '{name}': {source} is not a file.",
                        manual_download_hint(entry))
    size = source.stat().st_size
    with open(source, "rb") as fh:
        head = fh.read(64)
    if looks_like_html(head):
        raise html_refusal(str(source), manual_download_hint(entry))
    member = _member_to_import(entry, source)
    if member is not None:
        with open_member(source, member) as stream:
            return install_stream(entry, stream, member.size, f"{member.name} in {source}",
                                  progress, "extracting", cancel)
    if entry.size is not None and size != entry.size:
        raise UserError(
            f"{source} is not the expected '{name}' file (size {size:,} bytes, expected "
            f"{entry.size:,}); nothing was installed.",
            f"It may be truncated or a different model.\n{manual_download_hint(entry)}")
    target = cache_dir() / entry.filename
    if target.exists() and source.resolve() == target.resolve():
        verify_file(name, target, progress)
        return target
    with open(source, "rb") as stream:
        return install_stream(entry, stream, size, str(source), progress, cancel=cancel)


def _member_to_import(entry: WeightsFile, source: Path) -> Member | None:
    """The archive member to extract when ``source`` is an archive holding ``entry``'s file.

    None means ``source`` is to be taken as the file itself: the entry is not an archive member,
    or ``source`` is not an archive, or it is a PyTorch zip checkpoint (the member itself). An
    archive without the member is refused rather than pinned as the file.
    """
    if not entry.members or not is_archive(source):
        return None
    members = list_members(source)
    names = [m.name for m in members]
    if torch_zip_members(names) or "pickle" in names:
        return None
    return find_member(members, entry.members, entry.member_pick, str(source))
