"""A local HTTP file server (127.0.0.1 only) and registry helpers for the weights tests.

The server honours ``Range: bytes=N-`` (206 / 416) and can be told to cut the connection after K
body bytes, ignore Range (answer 200 with everything) or answer an error status, so resume,
restart and failure paths are exercised against real sockets, never the internet.
"""
from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from studio.weights import REGISTRY


@dataclass
class ServedRequest:
    path: str
    range: str | None
    status: int
    body_bytes: int  # bytes of body actually sent


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
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
        data = state.files.get(self.path)
        if state.force_status or data is None:
            status = state.force_status or 404
            self.send_error(status)
            state.requests.append(ServedRequest(self.path, range_header, status, 0))
            return
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
        self.wfile.write(body)
        self.wfile.flush()
        state.requests.append(ServedRequest(self.path, range_header, status, len(body)))


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
