"""A local HTTP file server (127.0.0.1 only) and registry helpers for the weights tests.

The server honours ``Range: bytes=N-`` (206 / 416) and can be told to cut the connection after K
body bytes, ignore Range (answer 200 with everything) or answer an error status, so resume,
restart and failure paths are exercised against real sockets, never the internet.

It also mimics Google Drive's download endpoint (``/download?id=ID&export=download``): a file can
answer with the bytes directly, with the large-file confirmation page (a form whose hidden
inputs id/export/confirm/uuid lead to the bytes), with a quota page (200 or 403), or with an
access page. Point ``studio.weights.gdrive.DRIVE_DOWNLOAD_URL`` at ``drive_endpoint``.
"""
from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Literal
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

import studio.weights.gdrive as gdrive
from studio.weights import REGISTRY


@dataclass
class ServedRequest:
    path: str
    range: str | None
    status: int
    body_bytes: int  # bytes of body actually sent
    page: bool = False  # an HTML page (Drive's confirmation, quota or access page)


DriveAnswer = Literal["confirm", "direct", "quota", "quota403", "access"]


@dataclass
class DriveFile:
    data: bytes
    answer: DriveAnswer = "confirm"
    uuid: str = "0d7c1a52-5c1e-4d6b-9a55-2b1f3c4d5e6f"


QUOTA_PAGE = ("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
              "<body><p>Too many users have viewed or downloaded this file recently. Please try "
              "accessing the file again later.</p></body></html>")
ACCESS_PAGE = ("<!DOCTYPE html><html><head><title>Google Drive</title></head><body>"
               "<p>You need access</p><a href='https://accounts.google.com/ServiceLogin'>Sign in"
               "</a></body></html>")


def confirm_page(action: str, file_id: str, uuid: str) -> str:
    """Drive's 'can't scan this file for viruses' page, as of 2024-2025 (form + hidden inputs)."""
    return (
        "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
        "<p>Google Drive can't scan this file for viruses.</p>"
        f'<form id="download-form" action="{action}" method="get">'
        '<input type="submit" id="uc-download-link" value="Download anyway"/>'
        f'<input type="hidden" name="id" value="{file_id}">'
        '<input type="hidden" name="export" value="download">'
        '<input type="hidden" name="confirm" value="t">'
        f'<input type="hidden" name="uuid" value="{uuid}">'
        "</form></body></html>")


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    drive: dict[str, DriveFile] = field(default_factory=dict)
    cut_after: int | None = None     # one-shot: send only this many body bytes, then hang up
    ignore_range: bool = False       # behave like a server without Range support
    force_status: int | None = None  # answer every request with this error status
    requests: list[ServedRequest] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state = self.server.state
        range_header = self.headers.get("Range")
        parts = urlsplit(self.path)
        if parts.path == "/download" and not state.force_status:
            self._drive(parse_qs(parts.query), range_header)
            return
        data = state.files.get(self.path)
        if state.force_status or data is None:
            status = state.force_status or 404
            self.send_error(status)
            state.requests.append(ServedRequest(self.path, range_header, status, 0))
            return
        self._send_bytes(data, range_header)

    def _send_page(self, html: str, status: int = 200) -> None:
        body = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # Recorded before the body goes out, so ``requests`` is in arrival order even when a
        # client hangs up mid-body and its handler thread finishes after the next request's.
        self.server.state.requests.append(
            ServedRequest(self.path, self.headers.get("Range"), status, len(body), page=True))
        self.wfile.write(body)

    def _drive(self, query: dict[str, list[str]], range_header: str | None) -> None:
        file_id = query.get("id", [""])[0]
        drive_file = self.server.state.drive.get(file_id)
        if drive_file is None:
            self._send_page("<html><title>Error 404 (Not Found)</title></html>", 404)
        elif drive_file.answer == "quota":
            self._send_page(QUOTA_PAGE)
        elif drive_file.answer == "quota403":
            self._send_page(QUOTA_PAGE, 403)
        elif drive_file.answer == "access":
            self._send_page(ACCESS_PAGE)
        elif drive_file.answer == "direct" or (
                query.get("confirm") == ["t"] and query.get("uuid") == [drive_file.uuid]):
            self._send_bytes(drive_file.data, range_header)
        else:
            port = self.server.server_address[1]
            self._send_page(confirm_page(f"http://127.0.0.1:{port}/download", file_id,
                                         drive_file.uuid))

    def _send_bytes(self, data: bytes, range_header: str | None) -> None:
        state = self.server.state
        start, status = 0, 200
        if range_header and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            assert match, f"client sent an unexpected Range header: {range_header}"
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                state.requests.append(ServedRequest(self.path, range_header, 416, 0))
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state.cut_after is not None:
            body, state.cut_after = body[: state.cut_after], None
            self.close_connection = True
        state.requests.append(ServedRequest(self.path, range_header, status, len(body)))
        self.wfile.write(body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = ServerState()


class FileServer:
    """Handle for tests: ``serve(path, data) -> url``, ``state`` to steer and inspect."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.state = server.state

    def serve(self, path: str, data: bytes) -> str:
        self.state.files["/" + path] = data
        return f"http://127.0.0.1:{self._server.server_address[1]}/{path}"

    @property
    def drive_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/download"

    def serve_drive(self, file_id: str, data: bytes, answer: DriveAnswer = "confirm") -> None:
        self.state.drive[file_id] = DriveFile(data, answer)


@pytest.fixture()
def file_server() -> Iterator[FileServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield FileServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def weights_env(studio_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty studio cache plus empty torch-hub and clip caches (other tools' copies are found)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return studio_cache


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def tar_gz_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz holding ``members`` (name -> bytes) and symlinks ``links`` (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def torch_payload(n_floats: int = 60_000, seed: int = 0) -> bytes:
    """A real torch.save checkpoint (zip format) of about 4*n_floats bytes."""
    buffer = io.BytesIO()
    torch.save({"w": torch.randn(n_floats, generator=torch.Generator().manual_seed(seed))}, buffer)
    return buffer.getvalue()


@pytest.fixture()
def drive(file_server: "FileServer", monkeypatch: pytest.MonkeyPatch) -> "FileServer":
    """The file server, with Google Drive's endpoint pointed at it."""
    monkeypatch.setattr(gdrive, "DRIVE_DOWNLOAD_URL", file_server.drive_endpoint)
    return file_server


def point_drive_entry(monkeypatch: pytest.MonkeyPatch, name: str, file_id: str,
                      **overrides: object) -> None:
    """Make registry entry ``name`` a Drive file ``file_id`` (overrides win)."""
    fields: dict[str, object] = {"source": "gdrive", "gdrive_id": file_id,
                                 "url": gdrive.view_url(file_id)}
    fields.update(overrides)
    monkeypatch.setitem(REGISTRY, name, replace(REGISTRY[name], **fields))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def point_entry_at(monkeypatch: pytest.MonkeyPatch, name: str, url: str, data: bytes,
                   **overrides: object) -> None:
    """Make registry entry ``name`` describe ``data`` served at ``url`` (overrides win)."""
    fields: dict[str, object] = {"url": url, "size": len(data), "sha256": sha256(data),
                                 "sha256_prefix": None}
    fields.update(overrides)
    monkeypatch.setitem(REGISTRY, name, replace(REGISTRY[name], **fields))


def closed_port_url(path: str = "ffhq.pkl") -> str:
    """A loopback URL nothing listens on: connecting is refused (as when offline/blocked)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"
