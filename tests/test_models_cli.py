"""``studio-cli models list|fetch|import`` end to end through ``studio.cli.main``.

Downloads go to a local HTTP server on 127.0.0.1; the cache is the test's ``studio_cache``.
"""
from __future__ import annotations

import io
import sys

from studio.cli import main
from studio.weights import REGISTRY, files_for, is_present
from tests._weights_helpers import (closed_port_url, drive, file_server, payload,  # noqa: F401
                                    point_drive_entry, point_entry_at, tar_gz_bytes,
                                    torch_payload, weights_env, zip_bytes)


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


# ---------------------------------------------------------------------------- one-shot files

class _Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's typed answers."""

    def isatty(self) -> bool:
        return True


def _serve_backend(drive, monkeypatch, backend: str) -> dict[str, bytes]:
    """Serve every downloadable file of ``backend`` from the Drive mimic; name -> installed bytes."""
    installed = {}
    for i, name in enumerate(files_for(backend)):
        entry = REGISTRY[name]
        if entry.source == "manual":
            continue
        data = torch_payload(n_floats=2000 + i, seed=i)
        if name == "flame-landmarks":
            data = b"\x93NUMPY" + payload(500, seed=i)
            point_entry_at(monkeypatch, name, drive.serve("landmark_embedding.npy", data), data)
            installed[name] = data
            continue
        file_id = f"{name.replace('-', '')}XXXXXXXXXX"
        served = data
        if entry.archive == "data.tar.gz":
            served = tar_gz_bytes({"data/deca_model.tar": data})
        elif entry.archive:
            member = ("ffhq256_autoenc/last.ckpt" if name == "diffae-ffhq256" else
                      "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/x=1.0.ckpt")
            served = zip_bytes({member: data})
        drive.serve_drive(file_id, served)
        point_drive_entry(monkeypatch, name, file_id)
        installed[name] = data
    return installed


def test_models_list_shows_oneshot_files_with_unknown_size_and_licence_marker(weights_env,
                                                                             capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    row = _row(out, "stylegan2-voxceleb")
    assert "missing" in row and " ? " in row and " note " in row
    assert "HyperReenact" in row and str(weights_env / "stylegan-voxceleb.pt") in row
    assert "missing (import)" in _row(out, "flame")
    assert " - " in _row(out, "ffhq")  # no licence note
    assert "LICENCE 'note'" in out

    assert main(["models", "list", "--backend", "directions"]) == 0
    rows = capsys.readouterr().out.split("\n\ncache:")[0].splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["stylegan2-voxceleb", "e4e-voxceleb", "deca",
                                            "directions-a"]


def test_models_fetch_refuses_without_a_terminal_or_the_flag(weights_env, drive, monkeypatch,
                                                             capsys):
    _serve_backend(drive, monkeypatch, "directions")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    assert main(["models", "fetch", "directions-a"]) == 2
    err = capsys.readouterr().err
    assert "--accept-licence" in err and "not been accepted" in err
    assert "without a licence" in err and "Traceback" not in err
    assert drive.state.requests == []


def test_models_fetch_asks_on_a_terminal(weights_env, drive, monkeypatch, capsys):
    installed = _serve_backend(drive, monkeypatch, "directions")
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    assert main(["models", "fetch", "directions-a"]) == 2
    assert "Accept? [y/N]" in capsys.readouterr().err and drive.state.requests == []

    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    assert main(["models", "fetch", "directions-a"]) == 0
    assert (weights_env / "A_matrix.pt").read_bytes() == installed["directions-a"]
    assert main(["models", "list"]) == 0
    assert " accepted " in _row(capsys.readouterr().out, "directions-a")


def test_models_fetch_backend_gets_every_file_once(weights_env, drive, monkeypatch, capsys):
    installed = _serve_backend(drive, monkeypatch, "directions")

    assert main(["models", "fetch", "--backend", "directions", "--accept-licence"]) == 0
    captured = capsys.readouterr()
    for name, data in installed.items():
        assert f"{name}: verified" in captured.out
        assert (weights_env / REGISTRY[name].filename).read_bytes() == data
    assert captured.err.count("licence note for") == 3  # HyperReenact models, DECA, directions
    served = len(drive.state.requests)

    assert main(["models", "fetch", "--backend", "directions"]) == 0  # nothing left to accept
    assert len(drive.state.requests) == served


def test_models_fetch_diffusionact_says_flame_must_be_imported(weights_env, drive, monkeypatch,
                                                               capsys):
    installed = _serve_backend(drive, monkeypatch, "diffusionact")

    assert main(["models", "fetch", "--backend", "diffusionact", "--accept-licence"]) == 2
    captured = capsys.readouterr()
    assert "flame cannot be downloaded by the studio. The other files are ready." in captured.err
    assert "https://flame.is.tue.mpg.de" in captured.err
    assert set(installed) == {"diffusionact-net", "gaze-xgaze", "emoca-v2", "flame-landmarks"}
    assert all(is_present(name) for name in installed)

    assert main(["models", "fetch", "--backend", "diffusionact", "--landmarks", "mediapipe"]) == 0


def test_models_import_of_an_archive_reminds_the_licence(weights_env, tmp_path, capsys):
    flame_zip = tmp_path / "FLAME2020.zip"
    flame_zip.write_bytes(zip_bytes({"FLAME2020/generic_model.pkl": b"\x80\x02N."}))
    assert main(["models", "import", "flame", str(flame_zip)]) == 0
    captured = capsys.readouterr()
    assert "verified and imported" in captured.out and "flame.is.tue.mpg.de" in captured.err


def test_models_fetch_needs_names_or_a_backend(weights_env, capsys):
    assert main(["models", "fetch"]) == 2
    assert "--backend" in capsys.readouterr().err
    assert main(["models", "fetch", "ffhq", "lpips-alex", "--url", "https://x.invalid/f"]) == 2
    assert "exactly one NAME" in capsys.readouterr().err
