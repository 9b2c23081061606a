"""``studio-cli models list|fetch|import`` end to end through ``studio.cli.main``.

Downloads go to a local HTTP server on 127.0.0.1; the cache is the test's ``studio_cache``.
"""
from __future__ import annotations

from studio.cli import main
from tests._weights_helpers import (closed_port_url, file_server, payload,  # noqa: F401
                                    point_entry_at, weights_env)


def _row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_models_list_shows_every_file_with_status_size_and_path(weights_env, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name, filename, mib in [("ffhq", "ffhq.pkl", "363.9 MiB"),
                                ("lpips-alex", "alexnet-owt-7be5be79.pth", "233.1 MiB"),
                                ("clip-vit-b32", "ViT-B-32.pt", "337.6 MiB")]:
        row = _row(out, name)
        assert "missing" in row and mib in row and str(weights_env / filename) in row
    assert f"cache: {weights_env}" in out
    assert "studio-cli models fetch NAME" in out


def test_models_fetch_downloads_with_progress_then_list_shows_present(weights_env, file_server,
                                                                      monkeypatch, capsys):
    data = payload(3 * 2**20 + 123)  # a few MiB so the MiB progress bar moves
    url = file_server.serve("mirror/ffhq.pkl", data)
    point_entry_at(monkeypatch, "ffhq", "https://example.invalid/ffhq.pkl", data)

    assert main(["models", "fetch", "ffhq", "--url", url]) == 0
    captured = capsys.readouterr()
    assert "verified" in captured.out and str(weights_env / "ffhq.pkl") in captured.out
    assert url in captured.err and "3.00M/3.00M" in captured.err  # the byte progress bar
    assert (weights_env / "ffhq.pkl").read_bytes() == data

    assert main(["models", "list"]) == 0
    row = _row(capsys.readouterr().out, "ffhq")
    assert "present" in row and "3.0 MiB" in row


def test_models_fetch_offline_is_a_clear_error(weights_env, monkeypatch, capsys):
    url = closed_port_url()
    point_entry_at(monkeypatch, "ffhq", url, payload())

    assert main(["models", "fetch", "ffhq"]) == 2
    err = capsys.readouterr().err
    assert "error: could not download 'ffhq'" in err
    assert url in err and str(weights_env / "ffhq.pkl") in err
    assert "studio-cli models import ffhq FILE" in err
    assert "Traceback" not in err


def test_models_import_refuses_a_wrong_file_and_accepts_the_right_one(weights_env, tmp_path,
                                                                      monkeypatch, capsys):
    data = payload()
    point_entry_at(monkeypatch, "ffhq", "https://example.invalid/ffhq.pkl", data)
    wrong, right = tmp_path / "wrong.pkl", tmp_path / "right.pkl"
    wrong.write_bytes(payload(seed=5))
    right.write_bytes(data)

    assert main(["models", "import", "ffhq", str(wrong)]) == 2
    assert "nothing was installed" in capsys.readouterr().err
    assert not (weights_env / "ffhq.pkl").exists()

    assert main(["models", "import", "ffhq", str(right)]) == 0
    assert "imported" in capsys.readouterr().out
    assert (weights_env / "ffhq.pkl").read_bytes() == data


def test_models_fetch_unknown_name_lists_the_known_ones(weights_env, capsys):
    assert main(["models", "fetch", "stylegan3"]) == 2
    err = capsys.readouterr().err
    assert "unknown weights name 'stylegan3'" in err and "lpips-alex" in err
