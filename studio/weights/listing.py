"""One status row per registry file, for ``studio-cli models list`` and the Models dialog.

Cheap by design (no hashing): presence is an existence + size test, so listing stays instant even
with several GB of weights in the cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.weights.groups import backends_using
from studio.weights.licences import licence_accepted
from studio.weights.registry import REGISTRY, get_entry
from studio.weights.store import cache_dir, expected_size, find_copy


@dataclass(frozen=True)
class WeightsStatus:
    """One row. ``size`` is the actual size if present, else the expected one (None: unknown).

    ``source``: 'http', 'gdrive' or 'manual' (import only). ``licence``: the note to accept before
    a download (None: none); ``licence_accepted`` whether it was. ``backends``: the modes that
    need the file (see ``studio.weights.groups``).
    """

    name: str
    present: bool
    path: Path
    where: str
    size: int | None
    purpose: str
    description: str
    url: str
    source: str = "http"
    licence: str | None = None
    licence_accepted: bool = True
    backends: tuple[str, ...] = ()


def status_of(name: str) -> WeightsStatus:
    entry = get_entry(name)
    found = find_copy(entry)
    path, where = found if found else (cache_dir() / entry.filename, "")
    size = path.stat().st_size if found else expected_size(entry)
    return WeightsStatus(name, found is not None, path, where, size, entry.purpose,
                         entry.description, entry.url, entry.source, entry.licence,
                         licence_accepted(name), backends_using(name))


def list_weights(names: list[str] | tuple[str, ...] | None = None) -> list[WeightsStatus]:
    """Rows for ``names`` (default: every registry file, in registry order)."""
    return [status_of(name) for name in (names if names is not None else list(REGISTRY))]
