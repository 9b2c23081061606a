"""The one-shot backends' weights: registry facts, groups, licence notes, Google Drive, archives.

Every download goes to a local HTTP server on 127.0.0.1 that mimics Google Drive's endpoint
(``tests/_weights_helpers.py``); nothing touches the internet or the user's real cache.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

import studio.weights.archives as archives
import studio.weights.download as download
from personalize.errors import Cancelled, MissingWeightsError, UserError
from personalize.progress import CancelToken
from studio.weights import (BACKENDS, REGISTRY, LicenceNotAcceptedError, WeightsFile,
                            accept_licence, backends_using, fetch_weights, files_for,
                            import_weights, is_present, licence_accepted, licence_note,
                            list_weights, pending_licences, read_pins, require_weights)
from studio.weights.archives import Member, find_member
from studio.weights.gdrive import file_id_from_url, read_drive_page, view_url
from tests._weights_helpers import (drive, file_server, point_drive_entry,  # noqa: F401
                                    point_entry_at, sha256, tar_gz_bytes, torch_payload,
                                    weights_env, zip_bytes)

# The official Google Drive ids, as the READMEs give them (see the entries' provenance).
OFFICIAL_DRIVE = {
    "stylegan2-voxceleb": ("1cBwIFwq6cYIA5iR8tEvj6BIL7Ji7azIH", "stylegan-voxceleb.pt", None),
    "e4e-voxceleb": ("1TRATaREBi4VCMITUZV0ZO2XFU3YZKGlQ", "e4e-voxceleb.pt", None),
    "hyperreenact-net": ("1BUp6S3Wf2SeM3a-b_7mkKZyaXAxKhLrI", "hypernetwork.pt", None),
    "arcface-irse50": ("1F3wrQALEOd1Vku8ArJ_Gn4T6U3IX7Pz7", "insight_face.pth", None),
    "deca": ("1BHVJAEXscaXMj_p2rOsHYF_vaRRRHQbA", "deca_model.tar", "data.tar.gz"),
    "directions-a": ("11aNalhBnPREFQT9i9wmQE0-fkQac4SzQ", "A_matrix.pt", None),
    "diffae-ffhq256": ("1QKmwW9-yHcC91_f-Mq4maQLdgFrffmdW", "diffae_ffhq256_autoenc_last.ckpt",
                       "ffhq256_autoenc.zip"),
    "diffusionact-net": ("1_pBdrega9Q38BYKx2-V1RavTYyG2BSpv", "diffusionact_model.pt", None),
    "gaze-xgaze": ("1OkzpEkAbI8WugxO7l514JwkYoWqhcnkT", "gaze_estimation_model.tar", None),
    "emoca-v2": ("1iVNqIvNEHYKtnqsk6h4m7kRXLn5wqGNf", "emoca_v2_lr_mse_20.ckpt", "EMOCA.zip"),
    "e4e-ffhq": ("1cUv_reLE6k3604or78EranS7XzuVMWeO", "e4e_ffhq_encode.pt", None),
}


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


# ---------------------------------------------------------------------------- registry and groups

def test_oneshot_entries_carry_the_official_drive_ids_names_and_licence_notes():
    for name, (file_id, filename, archive) in OFFICIAL_DRIVE.items():
        entry = REGISTRY[name]
        assert (entry.source, entry.gdrive_id, entry.filename, entry.archive) == (
            "gdrive", file_id, filename, archive), name
        assert entry.url == view_url(file_id) == f"https://drive.google.com/file/d/{file_id}/view"
        assert entry.size is None and entry.sha256 is None  # pinned by the first verified copy
        assert entry.file_format == "torch"
        assert entry.licence and "non-commercial" in entry.licence
        assert bool(entry.members) == bool(archive)
    flame = REGISTRY["flame"]
    assert flame.source == "manual" and not flame.downloadable
    assert "https://flame.is.tue.mpg.de" in flame.manual_steps
    assert "studio-cli models import flame FILE" in flame.manual_steps
    landmarks = REGISTRY["flame-landmarks"]
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/yfeng95/DECA/[0-9a-f]{40}/data/"
                        r"landmark_embedding\.npy", landmarks.url)
    assert landmarks.size == 31_292 and landmarks.sha256
    filenames = [entry.filename for entry in REGISTRY.values()]
    assert len(filenames) == len(set(filenames))
    urls_per_archive: dict[str, set[str]] = {}
    for entry in REGISTRY.values():
        if entry.archive:
            urls_per_archive.setdefault(entry.archive, set()).add(entry.url)
    assert all(len(urls) == 1 for urls in urls_per_archive.values())


@pytest.mark.parametrize("name, members, expected", [
    ("deca", ["data/head_template.obj", "data/deca_model.tar", "data/generic_model.pkl"],
     "data/deca_model.tar"),
    ("deca", ["./pretrained/data/deca_model.tar"], "./pretrained/data/deca_model.tar"),
    ("diffae-ffhq256", ["ffhq256_autoenc/latent.pkl", "ffhq256_autoenc/last.ckpt"],
     "ffhq256_autoenc/last.ckpt"),
    ("emoca-v2", [  # EMOCA's locate_checkpoint(mode='best'): smallest number after the last '='
        "EMOCA/models/EMOCA_v2_lr_mse_20/cfg.yaml",
        "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/last.ckpt",
        "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/deca-epoch=03-val_loss/"
        "dataloader_idx_0=4.10000000.ckpt",
        "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/deca-epoch=10-val_loss/"
        "dataloader_idx_0=3.25521111.ckpt",
        "EMOCA/models/EMOCA_v2_mp/detail/checkpoints/deca-epoch=11-val_loss/"
        "dataloader_idx_0=1.00000000.ckpt",
     ], "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/deca-epoch=10-val_loss/"
        "dataloader_idx_0=3.25521111.ckpt"),
    ("flame", ["FLAME2020/female_model.pkl", "FLAME2020/generic_model.pkl", "Readme.pdf"],
     "FLAME2020/generic_model.pkl"),
])
def test_member_patterns_find_the_file_the_official_code_loads(name, members, expected):
    entry = REGISTRY[name]
    found = find_member([Member(m, 10, True) for m in members], entry.members,
                        entry.member_pick, "the archive")
    assert found.name == expected


def test_member_search_refuses_ambiguity_links_traversal_and_absence():
    entry = REGISTRY["deca"]
    with pytest.raises(UserError, match="several candidate"):
        find_member([Member("a/deca_model.tar", 1, True), Member("b/deca_model.tar", 1, True)],
                    ("*/deca_model.tar",), "only", "x.zip")
    with pytest.raises(UserError, match="link or a folder"):
        find_member([Member("data/deca_model.tar", 0, False)], entry.members, "only", "x.zip")
    with pytest.raises(UserError, match="holds: ../deca_model.tar, /deca_model.tar"):
        find_member([Member("../deca_model.tar", 1, True), Member("/deca_model.tar", 1, True)],
                    entry.members, "only", "x.zip")


def test_files_for_each_backend_and_the_mediapipe_variant():
    assert set(BACKENDS) == {"personal", "hyperreenact", "directions", "diffusionact"}
    assert files_for("hyperreenact") == ("stylegan2-voxceleb", "e4e-voxceleb", "hyperreenact-net",
                                         "arcface-irse50", "deca")
    assert files_for("directions") == ("stylegan2-voxceleb", "e4e-voxceleb", "deca",
                                       "directions-a")
    # DiffAE's own checkpoint only initialises the official ControlNet, whose every tensor the
    # DiffusionAct file then overwrites: the mode does not read it
    assert set(files_for("diffusionact")) == {"diffusionact-net", "gaze-xgaze", "emoca-v2", "flame",
                                              "flame-landmarks"}
    assert files_for("diffusionact", landmarks="mediapipe") == ("diffusionact-net",)  # irises, no gaze net
    assert files_for("personal") == ("ffhq", "lpips-alex", "e4e-ffhq")
    assert all(name in REGISTRY for backend in BACKENDS for name in files_for(backend))
    assert backends_using("deca") == ("hyperreenact", "directions")
    with pytest.raises(UserError, match="Known backends"):
        files_for("liveportrait")


def test_missing_drive_file_says_how_to_get_it_in_a_browser(weights_env):
    with pytest.raises(MissingWeightsError) as info:
        require_weights("deca")
    message = str(info.value)
    assert "studio-cli models fetch deca" in message
    assert "https://drive.google.com/file/d/1BHVJAEXscaXMj_p2rOsHYF_vaRRRHQbA/view" in message
    assert "data.tar.gz" in message and "studio-cli models import deca FILE" in message
    assert str(weights_env / "deca_model.tar") in message


def test_flame_cannot_be_fetched_and_says_where_to_register(weights_env, file_server):
    with pytest.raises(MissingWeightsError) as info:
        fetch_weights("flame", accept_licence=True)
    message = str(info.value)
    assert "https://flame.is.tue.mpg.de" in message and "models import flame FILE" in message
    assert "models fetch flame" not in message and "--landmarks mediapipe" in message
    assert file_server.state.requests == []


# ---------------------------------------------------------------------------- licences

def test_download_needs_the_licence_note_accepted_once(weights_env, drive, monkeypatch):
    data = torch_payload()
    drive.serve_drive("AAAAAAAAAAAAdirections", data, answer="direct")
    point_drive_entry(monkeypatch, "directions-a", "AAAAAAAAAAAAdirections")

    with pytest.raises(LicenceNotAcceptedError) as info:
        fetch_weights("directions-a")
    assert info.value.note == licence_note("directions-a") and info.value.note in str(info.value)
    assert "--accept-licence" in str(info.value)
    assert drive.state.requests == [] and not licence_accepted("directions-a")

    path = fetch_weights("directions-a", accept_licence=True)

    assert path.read_bytes() == data and licence_accepted("directions-a")
    record = json.loads((weights_env / "licences.json").read_text())["directions-a"]
    assert set(record) == {"note_sha256", "accepted_at"}
    path.unlink()
    assert fetch_weights("directions-a") == path  # accepted once: no second question


def test_a_changed_note_is_asked_again_and_pending_notes_are_grouped(weights_env, monkeypatch):
    names = ["stylegan2-voxceleb", "e4e-voxceleb", "deca", "ffhq"]
    pending = pending_licences(names)
    assert pending == {REGISTRY["stylegan2-voxceleb"].licence: ["stylegan2-voxceleb",
                                                                "e4e-voxceleb"],
                       REGISTRY["deca"].licence: ["deca"]}  # ffhq has no note
    accept_licence(*names)
    assert pending_licences(names) == {}
    monkeypatch.setitem(REGISTRY, "deca", replace(REGISTRY["deca"], licence="A new note."))
    assert pending_licences(names) == {"A new note.": ["deca"]}


def test_import_needs_no_acceptance_and_records_none(weights_env, tmp_path):
    source = tmp_path / "A_matrix.pt"
    source.write_bytes(torch_payload())
    assert import_weights("directions-a", source).read_bytes() == source.read_bytes()
    assert not licence_accepted("directions-a")
    assert not (weights_env / "licences.json").exists()


# ---------------------------------------------------------------------------- Google Drive

def test_drive_confirmation_page_is_followed_and_the_hash_pinned(weights_env, drive, monkeypatch):
    data = torch_payload()
    drive.serve_drive("BBBBBBBBBBBBgenerator", data)
    point_drive_entry(monkeypatch, "stylegan2-voxceleb", "BBBBBBBBBBBBgenerator")

    path = fetch_weights("stylegan2-voxceleb", accept_licence=True)

    assert path == weights_env / "stylegan-voxceleb.pt" and path.read_bytes() == data
    first, second = drive.state.requests
    assert first.page and "confirm" not in first.path and "export=download" in first.path
    assert not second.page and "confirm=t" in second.path and "uuid=" in second.path
    assert second.body_bytes == len(data)
    pin = read_pins()["stylegan2-voxceleb"]
    assert pin["sha256"] == sha256(data) and pin["size"] == len(data)
    assert "drive.google.com/file/d/BBBBBBBBBBBBgenerator" in pin["source"]
    row = next(r for r in list_weights() if r.name == "stylegan2-voxceleb")
    assert row.present and row.size == len(data) and row.source == "gdrive"


def test_drive_download_resumes_through_the_confirmation_page(weights_env, drive, monkeypatch):
    data = torch_payload()
    drive.serve_drive("CCCCCCCCCCCCencoder", data)
    point_drive_entry(monkeypatch, "e4e-voxceleb", "CCCCCCCCCCCCencoder")
    monkeypatch.setattr(download, "CHUNK_BYTES", 16 * 1024)
    target = weights_env / "e4e-voxceleb.pt"
    drive.state.cut_after = 100_000

    with pytest.raises(MissingWeightsError, match="interrupted"):
        fetch_weights("e4e-voxceleb", accept_licence=True)
    assert _part(target).read_bytes() == data[:100_000]  # no page bytes in the partial file

    fetch_weights("e4e-voxceleb")

    page, resumed = drive.state.requests[2:]
    assert page.page and page.range == "bytes=100000-"  # Drive asks again; nothing written
    assert (resumed.range, resumed.status) == ("bytes=100000-", 206)
    assert resumed.body_bytes == len(data) - 100_000
    assert target.read_bytes() == data and not _part(target).exists()


@pytest.mark.parametrize("answer, reason", [("quota", "quota"), ("quota403", "quota"),
                                            ("access", "refused access")])
def test_drive_quota_and_access_pages_are_never_saved(weights_env, drive, monkeypatch, answer,
                                                      reason):
    drive.serve_drive("DDDDDDDDDDDDhypernet", torch_payload(), answer=answer)
    point_drive_entry(monkeypatch, "hyperreenact-net", "DDDDDDDDDDDDhypernet")
    target = weights_env / "hypernetwork.pt"
    _part(target).parent.mkdir(parents=True)
    _part(target).write_bytes(b"earlier bytes")

    with pytest.raises(MissingWeightsError) as info:
        fetch_weights("hyperreenact-net", accept_licence=True)

    message = str(info.value)
    assert reason in message and "Nothing was saved" in message and "Traceback" not in message
    assert "https://drive.google.com/file/d/DDDDDDDDDDDDhypernet/view" in message
    assert "in a web browser" in message and "studio-cli models import hyperreenact-net FILE" in message
    assert _part(target).read_bytes() == b"earlier bytes"  # the partial download is untouched
    assert not target.exists() and "hyperreenact-net" not in read_pins()


def test_a_plain_server_answering_a_web_page_is_refused(weights_env, file_server, monkeypatch):
    page = b"<!DOCTYPE html><html><body>Hotel Wi-Fi: please log in</body></html>"
    url = file_server.serve("A_matrix.pt", page)
    point_entry_at(monkeypatch, "directions-a", url, page, source="http", sha256=None, size=None)

    with pytest.raises(MissingWeightsError, match="web page instead of the file"):
        fetch_weights("directions-a", accept_licence=True)
    assert not (weights_env / "A_matrix.pt").exists()
    assert not _part(weights_env / "A_matrix.pt").exists()


def test_a_truncated_checkpoint_is_not_installed_or_pinned(weights_env, drive, monkeypatch):
    data = torch_payload()[:-200]  # the zip's central directory is gone
    drive.serve_drive("EEEEEEEEEEEEgaze", data, answer="direct")
    point_drive_entry(monkeypatch, "gaze-xgaze", "EEEEEEEEEEEEgaze")

    with pytest.raises(UserError, match="truncated"):
        fetch_weights("gaze-xgaze", accept_licence=True)
    assert not (weights_env / "gaze_estimation_model.tar").exists()
    assert "gaze-xgaze" not in read_pins()


def test_read_drive_page_builds_the_confirmed_url_and_stays_on_allowed_hosts():
    page = ('<form id="download-form" action="https://drive.usercontent.google.com/download">'
            '<input type="hidden" name="id" value="XYZXYZXYZXYZ"><input type="hidden" '
            'name="export" value="download"><input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="u-1"></form>')
    answer = read_drive_page(page, "https://drive.usercontent.google.com/download?id=XYZXYZXYZXYZ")
    assert answer.kind == "confirm" and answer.next_url == (
        "https://drive.usercontent.google.com/download?id=XYZXYZXYZXYZ&export=download"
        "&confirm=t&uuid=u-1")
    evil = page.replace("https://drive.usercontent.google.com", "https://evil.example")
    assert read_drive_page(evil, "https://drive.usercontent.google.com/x").kind == "unknown"
    legacy = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbCd&amp;id=XYZ">'
    answer = read_drive_page(legacy, "https://drive.google.com/uc?export=download&id=XYZ")
    assert answer.next_url == "https://drive.google.com/uc?export=download&confirm=AbCd&id=XYZ"


def test_file_id_from_drive_links():
    file_id = "1cBwIFwq6cYIA5iR8tEvj6BIL7Ji7azIH"
    for url in (f"https://drive.google.com/file/d/{file_id}/view?usp=sharing",
                f"https://drive.google.com/uc?export=download&id={file_id}",
                f"https://drive.usercontent.google.com/download?id={file_id}&export=download"):
        assert file_id_from_url(url) == file_id
    assert file_id_from_url(f"https://example.com/file/d/{file_id}/view") is None


# ---------------------------------------------------------------------------- archives

def test_deca_comes_out_of_data_tar_gz_which_is_then_deleted(weights_env, drive, monkeypatch):
    member = torch_payload(seed=1)
    archive = tar_gz_bytes({"data/deca_model.tar": member, "data/head_template.obj": b"v 0 0 0\n",
                       "../../escaped.txt": b"x"}, links={"data/generic_model.pkl": "/etc/passwd"})
    drive.serve_drive("FFFFFFFFFFFFdecadata", archive)
    point_drive_entry(monkeypatch, "deca", "FFFFFFFFFFFFdecadata")

    path = fetch_weights("deca", accept_licence=True)

    assert path == weights_env / "deca_model.tar" and path.read_bytes() == member
    assert sorted(p.name for p in weights_env.rglob("*") if p.is_file()) == [
        "deca_model.tar", "licences.json", "pins.json"]  # archive gone; nothing else extracted
    assert not (weights_env.parent / "escaped.txt").exists()
    assert read_pins()["deca"]["sha256"] == sha256(member)
    assert "data/deca_model.tar in the archive data.tar.gz" in read_pins()["deca"]["source"]


def test_two_files_from_one_archive_are_downloaded_once(weights_env, drive, monkeypatch):
    ckpt, cfg = torch_payload(seed=2), torch_payload(n_floats=100, seed=3)
    drive.serve_drive("GGGGGGGGGGGGemoca", zip_bytes({
        "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/deca-epoch=10-val_loss/"
        "dataloader_idx_0=3.25521111.ckpt": ckpt,
        "EMOCA/models/EMOCA_v2_lr_mse_20/detail/checkpoints/last.ckpt": b"not this one",
        "EMOCA/extra/companion.pt": cfg}))
    point_drive_entry(monkeypatch, "emoca-v2", "GGGGGGGGGGGGemoca")
    companion = WeightsFile(name="emoca-companion", description="test", purpose="test",
                            url=REGISTRY["emoca-v2"].url, filename="companion.pt", size=None,
                            sha256=None, provenance="test", source="gdrive",
                            gdrive_id="GGGGGGGGGGGGemoca", archive="EMOCA.zip",
                            members=("*/companion.pt",), file_format="torch",
                            licence=REGISTRY["emoca-v2"].licence)
    monkeypatch.setitem(REGISTRY, companion.name, companion)

    assert fetch_weights("emoca-v2", accept_licence=True).read_bytes() == ckpt
    assert is_present("emoca-companion") and require_weights("emoca-companion").read_bytes() == cfg
    downloads = [r for r in drive.state.requests if not r.page]
    assert len(downloads) == 1
    assert fetch_weights("emoca-companion").read_bytes() == cfg
    assert len([r for r in drive.state.requests if not r.page]) == 1  # no second download
    assert not (weights_env / "archives" / "EMOCA.zip").exists()


def test_an_archive_download_resumes_then_extracts(weights_env, drive, monkeypatch):
    member = torch_payload(seed=4)
    archive = zip_bytes({"ffhq256_autoenc/last.ckpt": member, "ffhq256_autoenc/latent.pkl": b"z"})
    drive.serve_drive("HHHHHHHHHHHHdiffae", archive)
    point_drive_entry(monkeypatch, "diffae-ffhq256", "HHHHHHHHHHHHdiffae")
    monkeypatch.setattr(download, "CHUNK_BYTES", 16 * 1024)
    drive.state.cut_after = 50_000

    with pytest.raises(MissingWeightsError, match="interrupted"):
        fetch_weights("diffae-ffhq256", accept_licence=True)
    assert _part(weights_env / "archives" / "ffhq256_autoenc.zip").stat().st_size == 50_000

    assert fetch_weights("diffae-ffhq256").read_bytes() == member
    assert drive.state.requests[-1].range == "bytes=50000-"
    assert not (weights_env / "archives" / "ffhq256_autoenc.zip").exists()


def test_an_archive_without_the_member_is_deleted_and_nothing_installed(weights_env, drive,
                                                                         monkeypatch):
    drive.serve_drive("IIIIIIIIIIIIdeca", tar_gz_bytes({"data/other.bin": b"1234"}))
    point_drive_entry(monkeypatch, "deca", "IIIIIIIIIIIIdeca")

    with pytest.raises(UserError, match="no member matching .*it holds: data/other.bin"):
        fetch_weights("deca", accept_licence=True)
    assert not (weights_env / "deca_model.tar").exists()
    assert not (weights_env / "archives" / "data.tar.gz").exists()
    assert "deca" not in read_pins()


def test_a_member_larger_than_allowed_is_refused(weights_env, drive, monkeypatch):
    drive.serve_drive("JJJJJJJJJJJJdeca", tar_gz_bytes({"data/deca_model.tar": torch_payload()}))
    point_drive_entry(monkeypatch, "deca", "JJJJJJJJJJJJdeca")
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1000)

    with pytest.raises(UserError, match="far more than any weights file"):
        fetch_weights("deca", accept_licence=True)
    assert not (weights_env / "deca_model.tar").exists()


def test_cancelling_the_extraction_keeps_the_archive_for_the_next_run(weights_env, drive,
                                                                      monkeypatch):
    member = torch_payload(n_floats=600_000, seed=5)  # 2.4 MB: several 1 MiB copy chunks
    drive.serve_drive("KKKKKKKKKKKKdeca", tar_gz_bytes({"data/deca_model.tar": member}))
    point_drive_entry(monkeypatch, "deca", "KKKKKKKKKKKKdeca")
    token = CancelToken()

    def cancel_while_extracting(done: int, total: int, message: str = "") -> None:
        if message == "extracting":
            token.cancel()

    with pytest.raises(Cancelled):
        fetch_weights("deca", progress=cancel_while_extracting, cancel=token,
                      accept_licence=True)
    assert (weights_env / "archives" / "data.tar.gz").is_file()
    assert not (weights_env / "deca_model.tar").exists()
    served = len(drive.state.requests)

    assert fetch_weights("deca").read_bytes() == member
    assert len(drive.state.requests) == served  # extracted from the kept archive


# ---------------------------------------------------------------------------- import

def test_import_accepts_the_archive_or_the_member_itself(weights_env, tmp_path):
    member = torch_payload(seed=6)  # a torch zip checkpoint is itself a zip file
    archive = tmp_path / "data.tar.gz"
    archive.write_bytes(tar_gz_bytes({"data/deca_model.tar": member}))
    assert import_weights("deca", archive).read_bytes() == member

    (weights_env / "deca_model.tar").unlink()
    plain = tmp_path / "deca_model.tar"
    plain.write_bytes(member)
    assert import_weights("deca", plain).read_bytes() == member  # same bytes: the pin agrees


def test_import_refuses_an_archive_without_the_member_a_web_page_and_a_truncated_file(
        weights_env, tmp_path):
    wrong_zip = tmp_path / "EMOCA.zip"
    wrong_zip.write_bytes(zip_bytes({"EMOCA/readme.txt": b"hello"}))
    with pytest.raises(UserError, match="no member matching"):
        import_weights("emoca-v2", wrong_zip)

    page = tmp_path / "uc.html"
    page.write_bytes(b"\n<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title>")
    with pytest.raises(UserError, match="is a web page"):
        import_weights("arcface-irse50", page)

    truncated = tmp_path / "insight_face.pth"
    truncated.write_bytes(torch_payload()[:-500])
    with pytest.raises(UserError, match="truncated"):
        import_weights("arcface-irse50", truncated)
    assert read_pins() == {} and not any(weights_env.glob("*.pth"))


def test_flame_is_imported_from_the_flame_zip_and_a_truncated_pickle_is_refused(weights_env,
                                                                               tmp_path):
    model = b"\x80\x02}q\x00(X\x01\x00\x00\x00vq\x01K\x01u."  # a tiny complete protocol-2 pickle
    truncated = tmp_path / "generic_model.pkl"
    truncated.write_bytes(model[:-3])
    with pytest.raises(UserError, match="truncated"):
        import_weights("flame", truncated)

    flame_zip = tmp_path / "FLAME2020.zip"
    flame_zip.write_bytes(zip_bytes({"FLAME2020/generic_model.pkl": model,
                                "FLAME2020/female_model.pkl": b"\x80\x02N.", "Readme.pdf": b"%"}))
    assert import_weights("flame", flame_zip).read_bytes() == model
    assert require_weights("flame") == weights_env / "generic_model.pkl"


def test_the_pinned_size_makes_a_later_truncated_copy_count_as_missing(weights_env, tmp_path):
    data = torch_payload()
    source = tmp_path / "hypernetwork.pt"
    source.write_bytes(data)
    path = import_weights("hyperreenact-net", source)
    assert is_present("hyperreenact-net")
    row = next(r for r in list_weights() if r.name == "hyperreenact-net")
    assert row.size == len(data)

    path.write_bytes(data[: len(data) // 2])  # e.g. a copy interrupted by hand
    assert not is_present("hyperreenact-net")
    with pytest.raises(MissingWeightsError):
        require_weights("hyperreenact-net")


def test_a_file_put_in_place_by_hand_is_checked_and_pinned_by_fetch(weights_env, file_server):
    target = weights_env / "insight_face.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\0" * 5000)  # not a checkpoint: replaced, so fetch must download
    with pytest.raises(LicenceNotAcceptedError):
        fetch_weights("arcface-irse50")
    assert not target.exists()

    data = torch_payload()
    target.write_bytes(data)
    assert fetch_weights("arcface-irse50") == target  # present and sound: no licence question
    assert read_pins()["arcface-irse50"]["sha256"] == sha256(data)
    assert file_server.state.requests == []


def test_not_enough_disk_space_is_a_clear_error(weights_env, tmp_path, monkeypatch):
    import shutil
    from types import SimpleNamespace

    source = tmp_path / "A_matrix.pt"
    source.write_bytes(torch_payload())
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(UserError, match="not enough free disk space") as info:
        import_weights("directions-a", source)
    assert "STUDIO_CACHE_DIR" in str(info.value)
    assert not (weights_env / "A_matrix.pt").exists()
