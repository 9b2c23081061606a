"""What the weights manager knows about one pretrained file (no I/O here).

Why one record per file, not per download: a download may be an archive that holds several files
(DECA's ``data.tar.gz``), and a file may have no download at all (FLAME needs a registration).
Jobs only ever ask for a *file* by name (``require_weights``); how it arrives is this record's
business.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["http", "gdrive", "manual"]
"""``http``: a plain URL. ``gdrive``: a Google Drive file id (the confirmation page for large files
is handled). ``manual``: no download; the user brings the file with ``models import``."""

MemberPick = Literal["only", "lowest_metric"]
"""How to choose among several archive members that match: ``only`` refuses ambiguity;
``lowest_metric`` is EMOCA's 'best' rule (the smallest number after the last '=' in the file
stem, skipping ``last``)."""

FileFormat = Literal["torch", "pickle", "npy"]
"""A cheap structural check run before a file is installed or its hash pinned, so a truncated
file or a saved web page is refused even when no hash is known (see ``studio.weights.formats``)."""


@dataclass(frozen=True)
class WeightsFile:
    """One file the studio can use. ``size`` in bytes; ``sha256`` full hex digest, None if unknown.

    ``url`` is what a person opens to get the file by hand: the file itself, the Google Drive page,
    or (``manual``) the registration page. ``archive`` names the downloaded archive when the file is
    one of its members; ``members`` are ``fnmatch`` patterns (``*`` also matches ``/``) tried in
    order against member paths, also used when ``models import`` is given the archive.
    """

    name: str
    description: str
    purpose: str
    url: str
    filename: str
    size: int | None
    sha256: str | None
    # torchvision names its files after the first 8 hex digits of the sha256 and only checks that
    # prefix; we check it too (in addition to the full hash when that is known).
    sha256_prefix: str | None = None
    provenance: str = ""
    source: Source = "http"
    gdrive_id: str | None = None
    archive: str | None = None
    members: tuple[str, ...] = ()
    member_pick: MemberPick = "only"
    file_format: FileFormat | None = None
    licence: str | None = None
    """A note the user accepts once before the studio downloads the file (None: no note)."""
    manual_steps: str = ""
    """For ``manual`` files: what the user must do to get the file (shown in every error)."""

    @property
    def downloadable(self) -> bool:
        return self.source != "manual"
