"""Licence notes accepted once per file, before the studio downloads it on the user's behalf.

Why: most one-shot weights are research-only (no licence at all, or non-commercial licences of
MPI / CC BY-NC-SA). The studio downloads them for the user, so the user must have read the terms
first. Acceptance is recorded per file in ``licences.json`` in the weights cache, together with a
hash of the note, so a changed note is asked again.

Decision about ``models import``: importing a file the user brought does NOT need (or record)
acceptance: the user obtained it under the terms of wherever it came from. The CLI still prints
the note after an import, as a reminder. Nothing here gates *using* a file (``require_weights``).
"""
from __future__ import annotations

import hashlib
import time
from typing import Iterable

from personalize.errors import UserError
from personalize.fileio import atomic_write_json, read_json
from studio.weights.registry import WeightsFile, get_entry
from studio.weights.store import cache_dir

LICENCES_FILE = "licences.json"


class LicenceNotAcceptedError(UserError):
    """A download needs the user to accept a licence note first; ``note`` is its text."""

    def __init__(self, names: list[str], note: str) -> None:
        self.names = names
        self.note = note
        listed = ", ".join(f"'{n}'" for n in names)
        super().__init__(
            f"the licence note of {listed} has not been accepted yet:\n\n{note}\n",
            "Accept it to download: `studio-cli models fetch` asks when run in a terminal; "
            "elsewhere add --accept-licence.")


def _note_hash(note: str) -> str:
    return hashlib.sha256(note.encode("utf-8")).hexdigest()


def _read() -> dict[str, dict]:
    path = cache_dir() / LICENCES_FILE
    try:
        data = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # an unreadable record only means the notes are asked again
    return data if isinstance(data, dict) else {}


def licence_note(name: str) -> str | None:
    """The note of ``name`` (None if the file has none)."""
    return get_entry(name).licence


def licence_accepted(name: str) -> bool:
    """True if ``name`` has no note, or its current note was accepted."""
    entry = get_entry(name)
    if entry.licence is None:
        return True
    record = _read().get(name)
    return isinstance(record, dict) and record.get("note_sha256") == _note_hash(entry.licence)


def accept_licence(*names: str) -> None:
    """Record that the user accepted the notes of ``names`` (atomic write of licences.json)."""
    records = _read()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for name in names:
        note = get_entry(name).licence
        if note is not None:
            records[name] = {"note_sha256": _note_hash(note), "accepted_at": stamp}
    atomic_write_json(cache_dir() / LICENCES_FILE, records)


def pending_licences(names: Iterable[str]) -> dict[str, list[str]]:
    """Notes not accepted yet for ``names``: note text -> the names it covers (input order).

    Several files share a note (e.g. the HyperReenact models), so a caller asks once per note.
    """
    pending: dict[str, list[str]] = {}
    for name in names:
        if not licence_accepted(name):
            pending.setdefault(get_entry(name).licence or "", []).append(name)
    return pending


def require_licence(entry: WeightsFile, accept: bool) -> None:
    """Before a download: record acceptance if ``accept``, else refuse while the note is pending."""
    if licence_accepted(entry.name):
        return
    if accept:
        accept_licence(entry.name)
        return
    raise LicenceNotAcceptedError([entry.name], entry.licence or "")
