"""``studio-cli prepare`` and the prepare jobs, end to end on a short real clip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from personalize.errors import MediaError
from studio.cli import main
from studio.jobs.prepare import prepare_driving, prepare_scan
from studio.project import DONE, Project
from tests._faces_helpers import DRIVING_SMILE, SELFSCAN2, cut_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli clips")
    return (cut_clip(SELFSCAN2, folder / "my scan ñ.mp4", 16, start=200, audio=True),
            cut_clip(DRIVING_SMILE, folder / "other.mov", 12))


def test_cli_prepare_end_to_end(clips, tmp_path, capsys) -> None:
    scan_clip, other = clips
    root = tmp_path / "Anna project"
    Project.create(root)
    code = main(["prepare", str(root), "--video", str(scan_clip), "--size", "128",
                 "--smooth", "1.5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "16 frames, 16 with a face" in out
    assert "prepare" in err  # the progress bar is drawn on stderr
    project = Project.open(root)
    assert project.status("capture") == DONE and project.status("prepare") == DONE
    source = project.manifest["sources"]["scan"]
    assert source["original"] == str(scan_clip.resolve()) and len(source["sha256"]) == 64
    assert (root / source["copy"]).is_file() and source["copy"] == "scan/source.mp4"
    info = project.stage_info("prepare")
    assert info["n_frames"] == 16 and info["settings"]["size"] == 128
    assert len(list((root / "scan" / "crops").glob("*.png"))) == 16
    assert json.loads((root / "scan" / "quality.json").read_text())["summary"]["n_valid"] == 16
    prepare_fp = project.fingerprint("prepare")

    # re-run without --video: re-uses the project's copy and everything prepared
    assert main(["prepare", str(root), "--size", "128", "--smooth", "1.5"]) == 0
    out, err = capsys.readouterr()
    assert "nothing recomputed" in err
    assert Project.open(root).fingerprint("prepare") == prepare_fp  # downstream not made stale

    # a bad video: clear error, exit 2, the project is unchanged
    bad = tmp_path / "broken video.mp4"
    bad.write_bytes(b"\x00" * 5000)
    before = (root / "project.json").read_text()
    assert main(["prepare", str(root), "--video", str(bad), "--size", "128"]) == 2
    _, err = capsys.readouterr()
    assert "error:" in err and "Traceback" not in err
    assert json.loads((root / "project.json").read_text())["stages"] == json.loads(before)["stages"]

    # a different video replaces the scan (new extension, old copy removed)
    assert main(["prepare", str(root), "--video", str(other), "--size", "128"]) == 0
    capsys.readouterr()
    project = Project.open(root)
    assert project.fingerprint("prepare") != prepare_fp
    assert sorted(p.name for p in (root / "scan").glob("source.*")) == ["source.mov"]
    assert len(list((root / "scan" / "crops").glob("*.png"))) == 12


def test_cli_needs_a_project(tmp_path, capsys) -> None:
    assert main(["prepare", str(tmp_path / "nope"), "--video", "x.mp4"]) == 2
    assert "studio-cli new" in capsys.readouterr().err


def test_prepare_scan_without_video_asks_for_one(tmp_path) -> None:
    project = Project.create(tmp_path / "p")
    with pytest.raises(MediaError, match="no self-scan video"):
        prepare_scan(project, None, size=64)


def test_prepare_driving_into_a_take(clips, tmp_path) -> None:
    _, other = clips
    project = Project.create(tmp_path / "p")
    result = prepare_driving(project, "wink", other, size=96, smooth=2.0)
    assert project.driving_copy("wink") == project.take_dir("wink") / "driving.mov"
    assert result.transforms.shape == (12, 3, 3) and result.valid.all()
    assert result.read_crop(11).shape == (96, 96, 3)
    assert np.isfinite(result.crop_landmarks).all()


def test_the_progress_bar_starts_again_for_a_jobs_next_pass(capsys):
    """Prepare counts frames per pass (issue 17: "0/150" for a 75-frame clip): the second pass
    starts again at 0 and gets its own bar instead of running the first one backwards."""
    from studio.cli.common import ProgressBar

    bar = ProgressBar("prepare")
    bar(0, 75, "finding landmarks (pass 1 of 2)")
    first = bar._bar
    bar(75, 75, "finding landmarks (pass 1 of 2)")
    assert bar._bar is first and first.n == 75
    bar(5, 75, "writing crops (pass 2 of 2)")
    assert bar._bar is not first and bar._bar.n == 5 and bar._bar.total == 75
    bar.close()
    assert "writing crops (pass 2 of 2)" in capsys.readouterr().err
