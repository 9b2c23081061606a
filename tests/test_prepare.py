"""prepare_video end to end on short real clips: outputs, reuse, resume, bad input, odd paths."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from personalize.errors import Cancelled, MediaError
from personalize.faces import detect_landmarks, load_prepared, prepare_video
from personalize.faces.prepare import CROPS_PASS, LANDMARKS_PASS, MARKER, WORK_DIR
from personalize.progress import CancelToken
from personalize.video import iter_frames
from tests._faces_helpers import DRIVING_SMILE, SELFSCAN2, cut_clip, truncated_copy, write_raw_video

SIZE = 256


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> object:
    return cut_clip(SELFSCAN2, tmp_path_factory.mktemp("clips") / "scan clip é.mp4", 24, start=100)


@pytest.fixture(scope="module")
def prepared(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "out dir ü"
    calls: list[tuple[int, int, str]] = []
    result = prepare_video(clip, out, size=SIZE, smooth_sigma=2.0,
                           progress=lambda d, t, m="": calls.append((d, t, m)))
    return result, out, calls


def test_outputs_have_the_agreed_layout(prepared) -> None:
    result, out, calls = prepared
    T = 24
    assert len(result) == T and result.size == SIZE and result.fps == pytest.approx(30.0)
    with np.load(out / "landmarks.npz") as data:
        assert data["landmarks"].shape == (T, 478, 3)
        assert data["valid"].shape == (T,) and data["valid"].dtype == bool and data["valid"].all()
        assert data["transforms"].shape == (T, 3, 3) and data["transforms"].dtype == np.float64
        assert data["crop_landmarks"].shape == (T, 478, 3)
        assert float(data["fps"]) == pytest.approx(30.0) and int(data["size"]) == SIZE
    assert sorted(p.name for p in (out / "crops").iterdir()) == [f"{t:06d}.png" for t in range(T)]
    crop = result.read_crop(5)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
    quality = json.loads((out / "quality.json").read_text())
    assert quality["summary"]["n_frames"] == T and len(quality["frames"]) == T
    assert quality["summary"]["n_valid"] == T
    assert (out / MARKER).is_file()
    assert not list(out.rglob("*.tmp"))
    # progress counts frames per named pass and goes forward to the end of each
    assert calls[-1][0] == calls[-1][1] == T
    for name in (LANDMARKS_PASS, CROPS_PASS):
        passed = [(d, t) for d, t, m in calls if m == name]
        assert passed and {t for _, t in passed} == {T} and passed[-1][0] == T
        assert [d for d, _ in passed] == sorted(d for d, _ in passed)


def test_crop_landmarks_match_mediapipe_on_the_crop(prepared) -> None:
    result, _, _ = prepared
    for t in (0, 17):
        found = detect_landmarks(result.read_crop(t))
        err = np.linalg.norm(found[:, :2] - result.crop_landmarks[t, :, :2], axis=1).mean()
        assert err < 0.006 * SIZE, (t, err)
    # and the crops are FFHQ-aligned: eyes level, at the FFHQ height
    eyes = result.crop_landmarks[:, [468, 473], :2]
    assert np.abs(eyes[:, 0, 1] - eyes[:, 1, 1]).max() < 0.05 * SIZE
    assert 0.38 < eyes[..., 1].mean() / SIZE < 0.52


def test_rerun_reuses_everything(prepared, clip) -> None:
    result, out, _ = prepared
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "crops").iterdir()}
    again = prepare_video(clip, out, size=SIZE, smooth_sigma=2.0)
    assert again.reused
    assert {p.name: p.stat().st_mtime_ns for p in (out / "crops").iterdir()} == mtimes
    np.testing.assert_array_equal(again.transforms, result.transforms)
    loaded = load_prepared(out)
    np.testing.assert_array_equal(loaded.crop_landmarks, result.crop_landmarks)


def test_other_settings_reuse_landmarks_and_replace_outputs(clip, tmp_path) -> None:
    out = tmp_path / "o"
    prepare_video(clip, out, size=128, smooth_sigma=0)
    tracking = out / WORK_DIR / "tracking.npz"
    stamp = tracking.stat().st_mtime_ns
    second = prepare_video(clip, out, size=SIZE, smooth_sigma=3.0)
    assert tracking.stat().st_mtime_ns == stamp  # landmarks pass not repeated
    assert second.read_crop(0).shape == (SIZE, SIZE, 3) and not second.reused
    assert second.settings["smooth_sigma"] == 3.0
    assert [p.name for p in (out / WORK_DIR).iterdir()] == ["tracking.npz"]  # no leftovers


def test_cancel_then_resume(clip, tmp_path) -> None:
    out = tmp_path / "resume"
    token = CancelToken()

    def cancel_during_crops(done: int, total: int, message: str = "") -> None:
        if message == CROPS_PASS and done >= 10:
            token.cancel()

    with pytest.raises(Cancelled):
        prepare_video(clip, out, size=SIZE, progress=cancel_during_crops, cancel=token)
    assert not (out / MARKER).exists()
    with pytest.raises(MediaError):
        load_prepared(out)  # a half-finished folder is never mistaken for a result
    partial = list((out / WORK_DIR).glob("crops-*/*.png"))
    assert 0 < len(partial) < 24
    stamps = {p.name: p.stat().st_mtime_ns for p in partial}
    result = prepare_video(clip, out, size=SIZE)
    assert len(result) == 24
    for name, stamp in stamps.items():  # finished crops were kept, not redone
        assert (out / "crops" / name).stat().st_mtime_ns == stamp


def _assert_nothing_left(out) -> None:
    assert not out.exists(), sorted(os.listdir(out)) if out.exists() else None


def test_bad_inputs_leave_nothing(tmp_path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    truncated = truncated_copy(DRIVING_SMILE, tmp_path / "cut.mp4", 0.4, faststart=True)
    blank = write_raw_video(tmp_path / "blank.mp4", [np.full((128, 128, 3), v, np.uint8)
                                                     for v in range(60, 100, 4)])
    one = cut_clip(DRIVING_SMILE, tmp_path / "one.mp4", 1)
    for bad, phrase in ((text, "not a readable video"), (truncated, "truncated"),
                        (blank, "No face"), (one, "only 1 frame"),
                        (tmp_path / "missing.mp4", "not found")):
        out = tmp_path / f"out_{bad.stem}"
        with pytest.raises(MediaError) as err:
            prepare_video(bad, out, size=64)
        assert phrase in str(err.value), str(err.value)
        assert err.value.hint
        _assert_nothing_left(out)


def test_failed_run_keeps_the_previous_result(prepared, tmp_path) -> None:
    result, out, _ = prepared
    blank = write_raw_video(tmp_path / "blank.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 4)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(MediaError):
        prepare_video(blank, out, size=SIZE)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert load_prepared(out).source_sha256 == result.source_sha256


def test_frames_without_face_keep_the_timeline(tmp_path) -> None:
    """A driving clip where the face leaves for a few frames: every frame gets a crop."""
    frames = list(iter_frames(DRIVING_SMILE, 0, 14))
    for t in (5, 6, 7):
        frames[t] = np.full_like(frames[t], 40)
    video = write_raw_video(tmp_path / "gap.mp4", frames)
    result = prepare_video(video, tmp_path / "gap", size=128)
    np.testing.assert_array_equal(result.valid, [t not in (5, 6, 7) for t in range(14)])
    assert np.isnan(result.landmarks[6]).all()
    assert np.isfinite(result.transforms).all()
    flags = [rec["flags"] for rec in result.quality["frames"]]
    assert flags[6] == ["no_face"] and result.summary["counts"]["no_face"] == 3
    assert not result.usable[6] and result.usable[0]
    # the gap's crop windows are interpolated between its neighbours
    centre = np.linalg.inv(result.transforms)[:, :2, :2] @ np.array([64.0, 64.0]) \
        + np.linalg.inv(result.transforms)[:, :2, 2]
    assert np.linalg.norm(centre[6] - (centre[4] + centre[8]) / 2) < 5.0
