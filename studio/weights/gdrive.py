"""Google Drive links: file ids, the download endpoint, and reading the pages Drive answers with.

Why this is needed: the one-shot backends' official weights are Drive files. Drive sends small
files directly, but for a large file it first answers with an HTML page ("Google Drive can't scan
this file for viruses") holding a form whose hidden inputs (id, export, confirm, uuid) must be sent
back to the download endpoint. When a file was downloaded too often, or is not shared publicly,
Drive answers with another HTML page instead of the bytes. Those pages must never end up saved
as a weights file, and the user must learn to download in a browser and ``models import`` it.

Pure functions only (no network): ``studio.weights.download`` does the requests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

DRIVE_DOWNLOAD_URL = "https://drive.usercontent.google.com/download"
"""Where both the first request and the confirmed download go (tests point it at a local server)."""

_DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{10,}")


def view_url(file_id: str) -> str:
    """The page a person opens in a browser to download the file by hand."""
    return f"https://drive.google.com/file/d/{file_id}/view"


def download_url(file_id: str) -> str:
    """The first request of a download (answers bytes, or a confirmation page for large files)."""
    return f"{DRIVE_DOWNLOAD_URL}?{urlencode({'id': file_id, 'export': 'download'})}"


def file_id_from_url(url: str) -> str | None:
    """The Drive file id in a share, view or download link; None if ``url`` is not a Drive link.

    Accepts ``/file/d/ID/view``, ``/uc?id=ID`` and ``drive.usercontent.google.com/download?id=ID``.
    """
    parts = urlsplit(url)
    if parts.hostname not in _DRIVE_HOSTS:
        return None
    match = re.search(r"/file/d/([^/?#]+)", parts.path)
    candidate = match.group(1) if match else parse_qs(parts.query).get("id", [""])[0]
    return candidate if _FILE_ID.fullmatch(candidate) else None


PageKind = Literal["confirm", "quota", "access", "not_found", "unknown"]


@dataclass(frozen=True)
class DrivePage:
    """What an HTML answer from Drive means. ``next_url`` is set for ``confirm`` only."""

    kind: PageKind
    next_url: str | None = None
    title: str = ""

    @property
    def reason(self) -> str:
        """A sentence for the user, saying why no file came."""
        return {
            "confirm": "Google Drive asked to confirm the download of a large file",
            "quota": "Google Drive's download quota for this file is exceeded (too many people "
                     "downloaded it recently)",
            "access": "Google Drive refused access (the file is not shared publicly, or Drive "
                      "wants you to sign in)",
            "not_found": "Google Drive says the file does not exist (it may have been removed)",
            "unknown": "Google Drive answered with a web page instead of the file"
                       + (f" ('{self.title}')" if self.title else ""),
        }[self.kind]


class _PageParser(HTMLParser):
    """Collects forms (action + hidden inputs), links and the title of a Drive page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self.title = ""
        self._in_form = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append((attr.get("action", ""), {}))
            self._in_form = True
        elif tag == "input" and self._in_form and attr.get("type", "").lower() == "hidden":
            if attr.get("name"):
                self.forms[-1][1][attr["name"]] = attr.get("value", "")
        elif tag == "a" and attr.get("href"):
            self.links.append(attr["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


_QUOTA = ("quota exceeded", "too many users have viewed or downloaded this file")
_ACCESS = ("you need access", "request access", "servicelogin", "you need permission")
_NOT_FOUND = ("file you have requested does not exist", "error 404")


def read_drive_page(html: str, page_url: str) -> DrivePage:
    """Classify an HTML answer; for a confirmation page, build the URL that gets the file.

    Both Drive's current form (action + hidden id/export/confirm/uuid) and the older link
    (``/uc?export=download&confirm=TOKEN&id=ID``) are understood. The follow-up URL must stay on a
    Google host or on the host that served the page; anything else is treated as unknown.
    """
    parser = _PageParser()
    parser.feed(html)
    title = " ".join(parser.title.split())
    for action, inputs in parser.forms:
        if "confirm" in inputs or ("id" in inputs and "export" in inputs):
            target = urljoin(page_url, action or DRIVE_DOWNLOAD_URL)
            if _allowed_follow_up(target, page_url):
                separator = "&" if urlsplit(target).query else "?"
                return DrivePage("confirm", f"{target}{separator}{urlencode(inputs)}", title)
    for href in parser.links:
        target = urljoin(page_url, href)
        if "confirm=" in urlsplit(target).query and _allowed_follow_up(target, page_url):
            return DrivePage("confirm", target, title)
    text = html.lower()
    if any(marker in text for marker in _QUOTA):
        return DrivePage("quota", title=title)
    if any(marker in text for marker in _NOT_FOUND):
        return DrivePage("not_found", title=title)
    if any(marker in text for marker in _ACCESS):
        return DrivePage("access", title=title)
    return DrivePage("unknown", title=title)


def _allowed_follow_up(target: str, page_url: str) -> bool:
    parts, page = urlsplit(target), urlsplit(page_url)
    if parts.scheme == "https" and (parts.hostname or "").endswith(".google.com"):
        return True
    return parts.scheme == page.scheme and parts.netloc == page.netloc
