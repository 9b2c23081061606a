"""personalize.video on real media: probing, streaming, writing (with audio), clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from personalize.errors import MediaError
from personalize.video import (iter_frames, probe_video, read_image, write_gif, write_png_sequence,
                               write_video)
from tests._faces_helpers import (DRIVING_SMILE, DRIVING_SPEECH, SELFSCAN2, cut_clip,
                                  truncated_copy)


def test_probe_real_media() -> None:
    info = probe_video(SELFSCAN2)
    assert (info.width, info.height, info.n_frames) == (512, 512, 354)
    assert info.fps == pytest.approx(30.0) and info.has_audio
    assert info.duration == pytest.approx(354 / 30, abs=0.2)
    smile = probe_video(DRIVING_SMILE)
    assert (smile.n_frames, smile.fps, smile.has_audio) == (78, 25.0, False)


def test_iter_frames_range_is_exact() -> None:
    all_first = list(iter_frames(DRIVING_SMILE, 0, 12))
    middle = list(iter_frames(DRIVING_SMILE, 5, 9))
    assert len(all_first) == 12 and len(middle) == 4
    for a, b in zip(all_first[5:9], middle):
        assert a.shape == (512, 512, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(all_first[0], all_first[11])  # real motion, not one frame repeated
    tail = list(iter_frames(DRIVING_SMILE, 76))
    assert len(tail) == 2


def test_write_video_roundtrip_with_audio(tmp_path) -> None:
    frames = list(iter_frames(DRIVING_SPEECH, 0, 30))
    out = tmp_path / "out with space é.mp4"
    assert write_video(out, frames, fps=25, audio_from=DRIVING_SPEECH) == 30
    info = probe_video(out)
    assert (info.n_frames, info.width, info.height, info.fps) == (30, 512, 512, 25.0)
    assert info.has_audio
    assert info.duration == pytest.approx(30 / 25, abs=0.15)  # audio cut to the video (-shortest)
    back = list(iter_frames(out))
    err = np.abs(back[10].astype(float) - frames[10].astype(float)).mean()
    assert err < 4.0, err  # crf 18 H.264: visually lossless
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left


def _audio_seconds(path) -> float:
    """Length of a file's (first) audio stream, from its decoded samples."""
    import subprocess

    from personalize.video import ffmpeg_exe
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
                          "-f", "s16le", "-ac", "1", "-ar", "48000", "-"], capture_output=True, check=True).stdout
    return len(pcm) / 2 / 48000


@pytest.mark.parametrize("n_frames", [78, 250])   # audio cut (8 s source) and padded with silence
def test_the_audio_ends_with_the_last_frame(tmp_path, n_frames) -> None:
    """Issue 17: the exported MP4's audio ran past (or stopped short of) the last video frame."""
    frames = [np.full((32, 32, 3), i % 256, np.uint8) for i in range(n_frames)]
    out = tmp_path / "take.mp4"
    write_video(out, frames, fps=25, audio_from=DRIVING_SPEECH)
    video_seconds = n_frames / 25
    one_aac_frame = 1024 / 16000     # the source's sample rate: the encoder's granularity
    assert video_seconds - 1e-3 <= _audio_seconds(out) <= video_seconds + one_aac_frame
    assert probe_video(out).n_frames == n_frames


def test_write_video_without_audio_source_and_odd_size(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (33, 47, 3), dtype=np.uint8) for _ in range(5)]
    out = tmp_path / "odd.mp4"
    write_video(out, frames, fps=10, audio_from=DRIVING_SMILE)  # smile clip has no audio
    info = probe_video(out)
    assert (info.width, info.height, info.n_frames, info.has_audio) == (48, 34, 5, False)


def test_write_gif_and_png_sequence(tmp_path) -> None:
    frames = list(iter_frames(DRIVING_SMILE, 0, 6))
    write_gif(tmp_path / "a.gif", frames, fps=10, width=128)
    gif = probe_video(tmp_path / "a.gif")
    assert (gif.width, gif.n_frames) == (128, 6)
    assert write_png_sequence(tmp_path / "seq", frames, start=3) == 6
    np.testing.assert_array_equal(read_image(tmp_path / "seq" / "000005.png"), frames[2])
    # a folder of frames reads back as the clip (a machine without ffmpeg: bench/gpu_bundle.sh)
    back = list(iter_frames(tmp_path / "seq", 1, 4))
    assert len(back) == 3
    for got, want in zip(back, frames[1:4]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "text", "truncated_head",
                                  "truncated_faststart"])
def test_bad_inputs_raise_media_error(tmp_path, kind: str) -> None:
    path = tmp_path / f"{kind}.mp4"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "truncated_head":
        truncated_copy(DRIVING_SMILE, path, 0.5)
    elif kind == "truncated_faststart":
        truncated_copy(DRIVING_SMILE, path, 0.5, faststart=True)
    with pytest.raises(MediaError) as err:
        probe_video(path)
    assert err.value.hint  # every message says what to do
    if kind != "truncated_faststart":  # ffmpeg can stream the start of that one
        with pytest.raises(MediaError):
            list(iter_frames(path))


def test_clip_helper_cuts_exact_frames(tmp_path) -> None:
    clip = cut_clip(SELFSCAN2, tmp_path / "c.mp4", 7, start=20, audio=True)
    info = probe_video(clip)
    assert info.n_frames == 7 and info.has_audio
    ref = list(iter_frames(SELFSCAN2, 20, 21))[0].astype(float)
    got = list(iter_frames(clip, 0, 1))[0].astype(float)
    assert np.abs(ref - got).mean() < 3.0


def test_phone_rotation_metadata_is_applied(tmp_path) -> None:
    """Portrait phone videos store landscape pixels plus a rotation flag: frames come upright."""
    import subprocess

    from personalize.video import ffmpeg_exe
    wide = cut_clip(DRIVING_SMILE, tmp_path / "wide.mp4", 4)
    small = tmp_path / "small.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(wide), "-vf", "scale=256:128",
                    "-c:v", "libx264", str(small)], check=True)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-display_rotation:v", "90", "-i",
                    str(small), "-c", "copy", str(rotated)], check=True)
    info = probe_video(rotated)
    assert (info.width, info.height) == (128, 256)
    frames = list(iter_frames(rotated))
    assert len(frames) == 4 and frames[0].shape == (256, 128, 3)


def test_audio_shorter_than_video_keeps_every_frame(tmp_path) -> None:
    frames = [np.full((64, 64, 3), i, np.uint8) for i in range(250)]  # 10 s at 25 fps
    out = tmp_path / "long.mp4"
    write_video(out, frames, fps=25, audio_from=DRIVING_SPEECH)  # 8 s of audio
    info = probe_video(out)
    assert info.n_frames == 250 and info.has_audio
    assert info.duration == pytest.approx(10.0, abs=0.2)


def test_failed_write_leaves_no_file(tmp_path) -> None:
    def broken():
        for i in range(3):
            yield np.zeros((32, 32, 3), np.uint8)
        raise RuntimeError("renderer crashed")

    out = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError):
        write_video(out, broken(), fps=10)
    assert list(tmp_path.iterdir()) == []
