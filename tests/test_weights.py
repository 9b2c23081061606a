"""The weights manager: cache location, registry facts, resumable verified downloads, imports.

Every download goes to a local HTTP server on 127.0.0.1 started by the test (see
``tests/_weights_helpers.py``); nothing touches the internet or the user's real cache.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import platformdirs
import pytest

import studio.weights.download as download
from personalize.errors import Cancelled, MissingWeightsError, UserError
from personalize.progress import CancelToken
from studio.weights import (REGISTRY, cache_dir, fetch_weights, import_weights, is_present,
                            list_weights, read_pins, require_weights, weights_path)
from tests._weights_helpers import (closed_port_url, file_server, payload,  # noqa: F401
                                    point_entry_at, sha256, weights_env)


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


# ---------------------------------------------------------------------------- cache and registry

def test_cache_dir_uses_env_override_else_user_data_dir(studio_cache, monkeypatch):
    assert cache_dir() == studio_cache
    monkeypatch.delenv("STUDIO_CACHE_DIR")
    expected = Path(platformdirs.user_data_dir("selfscan-avatar-studio")) / "weights"
    assert cache_dir() == expected


def test_registry_entries_are_self_consistent():
    assert {"ffhq", "lpips-alex", "clip-vit-b32"} <= set(REGISTRY)
    for name, entry in REGISTRY.items():
        assert entry.name == name
        assert entry.url.startswith("https://")
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.purpose and entry.description and entry.provenance
    for name in ("ffhq", "lpips-alex", "clip-vit-b32"):  # plain files with known size and hash
        entry = REGISTRY[name]
        assert entry.source == "http" and entry.url.endswith("/" + entry.filename)
        assert entry.size and entry.size > 100 * 2**20 and entry.sha256
    alex = REGISTRY["lpips-alex"]
    # torchvision's convention: the file name carries the first 8 hex digits of the sha256.
    assert alex.filename == f"alexnet-owt-{alex.sha256_prefix}.pth"
    assert alex.sha256.startswith(alex.sha256_prefix)
    clip = REGISTRY["clip-vit-b32"]
    assert clip.url.split("/")[-2] == clip.sha256  # the clip package's convention


def _installed_source(package: str, module_file: str) -> str:
    """Source text of an installed module, read without importing it (clip's import is slow)."""
    spec = importlib.util.find_spec(package)
    assert spec and spec.origin, f"{package} is not installed"
    return (Path(spec.origin).parent / module_file).read_text(encoding="utf-8")


def test_registry_urls_match_the_installed_packages():
    """The URLs must stay those torchvision and the clip package themselves download."""
    alexnet_source = _installed_source("torchvision", "models/alexnet.py")
    assert f'url="{REGISTRY["lpips-alex"].url}"' in alexnet_source
    clip_source = _installed_source("clip", "clip.py")
    assert f'"ViT-B/32": "{REGISTRY["clip-vit-b32"].url}"' in clip_source


def test_require_weights_says_what_where_and_how(weights_env):
    with pytest.raises(MissingWeightsError) as info:
        require_weights("ffhq")
    message = str(info.value)
    entry = REGISTRY["ffhq"]
    assert entry.url in message
    assert str(weights_env / "ffhq.pkl") in message
    assert "studio-cli models fetch ffhq" in message
    assert "studio-cli models import ffhq FILE" in message
    assert not is_present("ffhq")
    assert weights_path("ffhq") == weights_env / "ffhq.pkl"


def test_unknown_name_is_a_user_error(weights_env):
    with pytest.raises(UserError, match="lpips-alex"):
        weights_path("lpips-vgg")


# ---------------------------------------------------------------------------- downloads

def test_fetch_downloads_verifies_and_installs(weights_env, file_server, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data)
    monkeypatch.setattr(download, "CHUNK_BYTES", 64 * 1024)
    reports = []

    path = fetch_weights("ffhq", progress=lambda d, t, m="": reports.append((d, t, m)))

    assert path == weights_env / "ffhq.pkl"
    assert path.read_bytes() == data
    assert not _part(path).exists()
    downloading = [(d, t) for d, t, m in reports if m == "downloading"]
    assert len(downloading) >= 4 and downloading[-1] == (len(data), len(data))
    assert [d for d, _ in downloading] == sorted(d for d, _ in downloading)
    assert is_present("ffhq") and require_weights("ffhq") == path
    assert [r.range for r in file_server.state.requests] == [None]

    # Already present: verified, not downloaded again.
    assert fetch_weights("ffhq") == path
    assert len(file_server.state.requests) == 1


def test_interrupted_download_resumes_with_range(weights_env, file_server, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data)
    monkeypatch.setattr(download, "CHUNK_BYTES", 16 * 1024)
    target = weights_env / "ffhq.pkl"
    cut = 100_000
    file_server.state.cut_after = cut

    with pytest.raises(MissingWeightsError) as info:
        fetch_weights("ffhq")
    assert "interrupted" in str(info.value) and "studio-cli models fetch ffhq" in str(info.value)
    assert _part(target).stat().st_size == cut
    assert not target.exists() and not is_present("ffhq")

    fetch_weights("ffhq")

    first, second = file_server.state.requests
    assert (first.range, first.status, first.body_bytes) == (None, 200, cut)
    assert (second.range, second.status) == (f"bytes={cut}-", 206)
    assert second.body_bytes == len(data) - cut  # only the rest was sent
    assert sha256(target.read_bytes()) == sha256(data)
    assert not _part(target).exists()


def test_server_that_ignores_range_restarts_from_zero(weights_env, file_server, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data)
    file_server.state.cut_after = 50_000
    with pytest.raises(MissingWeightsError):
        fetch_weights("ffhq")
    file_server.state.ignore_range = True

    path = fetch_weights("ffhq")

    second = file_server.state.requests[1]
    assert second.range == "bytes=50000-" and second.status == 200
    assert second.body_bytes == len(data)
    assert path.read_bytes() == data  # not the first 50 kB twice


def test_complete_part_answered_416_is_verified_and_installed(weights_env, file_server,
                                                              monkeypatch):
    data = payload()
    # Size unknown, so only the server can tell that nothing is left to fetch.
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data, size=None)
    _part(weights_env / "ffhq.pkl").parent.mkdir(parents=True)
    _part(weights_env / "ffhq.pkl").write_bytes(data)

    path = fetch_weights("ffhq")

    assert [(r.range, r.status) for r in file_server.state.requests] == [
        (f"bytes={len(data)}-", 416)]
    assert path.read_bytes() == data


def test_wrong_hash_is_rejected_and_nothing_installed(weights_env, file_server, monkeypatch):
    data = payload()
    url = file_server.serve("ffhq.pkl", data)
    point_entry_at(monkeypatch, "ffhq", url, data, sha256=sha256(b"some other file"))
    target = weights_env / "ffhq.pkl"

    with pytest.raises(UserError) as info:
        fetch_weights("ffhq")

    assert "nothing was installed" in str(info.value) and url in str(info.value)
    assert sha256(data) in str(info.value)
    assert not target.exists() and not _part(target).exists()
    assert not is_present("ffhq")


def test_offline_gives_url_and_manual_place(weights_env, monkeypatch):
    url = closed_port_url()
    point_entry_at(monkeypatch, "ffhq", url, payload())

    with pytest.raises(MissingWeightsError) as info:
        fetch_weights("ffhq", timeout=5)

    message = str(info.value)
    assert url in message
    assert str(weights_env / "ffhq.pkl") in message
    assert "studio-cli models import ffhq FILE" in message
    assert not (weights_env / "ffhq.pkl").exists()


def test_blocked_http_error_is_explained(weights_env, file_server, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data)
    file_server.state.force_status = 403

    with pytest.raises(MissingWeightsError, match="HTTP 403") as info:
        fetch_weights("ffhq")
    assert str(weights_env / "ffhq.pkl") in str(info.value)


def test_cancel_keeps_the_part_for_resume(weights_env, file_server, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data)
    monkeypatch.setattr(download, "CHUNK_BYTES", 16 * 1024)
    token = CancelToken()
    target = weights_env / "ffhq.pkl"

    def cancel_after_two_chunks(done: int, total: int, message: str = "") -> None:
        if done >= 32 * 1024:
            token.cancel()

    with pytest.raises(Cancelled):
        fetch_weights("ffhq", progress=cancel_after_two_chunks, cancel=token)
    kept = _part(target).stat().st_size
    assert 0 < kept < len(data) and not target.exists()

    fetch_weights("ffhq")
    assert file_server.state.requests[-1].range == f"bytes={kept}-"
    assert target.read_bytes() == data


def test_corrupt_file_in_cache_is_replaced(weights_env, file_server, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", file_server.serve("ffhq.pkl", data), data)
    target = weights_env / "ffhq.pkl"
    target.parent.mkdir(parents=True)
    target.write_bytes(payload(seed=1))  # right size, wrong content
    assert is_present("ffhq")  # presence is a cheap size check; fetch verifies the hash

    assert fetch_weights("ffhq").read_bytes() == data


def test_unknown_hash_is_pinned_on_first_download(weights_env, file_server, monkeypatch):
    data = payload()
    url = file_server.serve("ffhq.pkl", data)
    point_entry_at(monkeypatch, "ffhq", url, data, sha256=None, size=None)

    path = fetch_weights("ffhq")
    pin = read_pins()["ffhq"]
    assert pin["sha256"] == sha256(data) and pin["size"] == len(data)
    assert url in pin["source"]

    # The server now hands out something else: the pin refuses it.
    path.unlink()
    file_server.serve("ffhq.pkl", payload(seed=2))
    with pytest.raises(UserError, match="pinned"):
        fetch_weights("ffhq")
    assert not path.exists() and not _part(path).exists()


def test_torchvision_style_prefix_check(weights_env, file_server, monkeypatch):
    data = payload()
    url = file_server.serve("alexnet.pth", data)
    point_entry_at(monkeypatch, "lpips-alex", url, data, sha256=None, sha256_prefix="0badc0de")
    with pytest.raises(UserError, match="expected 0badc0de"):
        fetch_weights("lpips-alex")
    assert not is_present("lpips-alex")

    point_entry_at(monkeypatch, "lpips-alex", url, data, sha256=None,
                   sha256_prefix=sha256(data)[:8])
    assert fetch_weights("lpips-alex").read_bytes() == data


# ---------------------------------------------------------------------------- other tools' copies

def test_lpips_alex_from_torch_hub_cache_is_used_in_place(weights_env, file_server, tmp_path,
                                                           monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "lpips-alex", file_server.serve("alexnet.pth", data), data)
    hub_copy = tmp_path / "torch-home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    hub_copy.parent.mkdir(parents=True)
    hub_copy.write_bytes(data)

    assert is_present("lpips-alex")
    assert weights_path("lpips-alex") == hub_copy == require_weights("lpips-alex")
    row = next(r for r in list_weights() if r.name == "lpips-alex")
    assert row.present and row.where == "torch hub cache" and row.path == hub_copy
    assert fetch_weights("lpips-alex") == hub_copy
    assert file_server.state.requests == []  # nothing downloaded
    assert not (weights_env / hub_copy.name).exists()


# ---------------------------------------------------------------------------- import

def test_import_with_wrong_hash_is_refused(weights_env, tmp_path, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", "https://example.invalid/ffhq.pkl", data)
    wrong = tmp_path / "downloaded-ffhq.pkl"
    wrong.write_bytes(payload(seed=3))  # same size, other bytes

    with pytest.raises(UserError, match="nothing was installed"):
        import_weights("ffhq", wrong)

    assert not (weights_env / "ffhq.pkl").exists()
    assert list(weights_env.iterdir()) == []  # no temporary leftovers
    assert wrong.exists()  # the user's file is never touched


def test_import_of_the_right_file_installs_a_copy(weights_env, tmp_path, monkeypatch):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", "https://example.invalid/ffhq.pkl", data)
    source = tmp_path / "Downloads" / "ffhq (1).pkl"
    source.parent.mkdir()
    source.write_bytes(data)

    path = import_weights("ffhq", source)

    assert path == weights_env / "ffhq.pkl" and path.read_bytes() == data
    assert source.read_bytes() == data
    assert is_present("ffhq")


def test_import_of_a_missing_file_says_so(weights_env, tmp_path):
    with pytest.raises(UserError, match="is not a file"):
        import_weights("ffhq", tmp_path / "nope.pkl")
