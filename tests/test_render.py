"""Rendering a latent track: any generator, ws edits, paste-back, side by side, MP4/GIF/PNG export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing.render import (compose_frames, generate_crops, output_kind, render_take, side_by_side,
                            tensor_to_uint8)
from personalize.errors import UserError
from tests._reenact_helpers import cut_clip, stream_info, warp_face_generator
from tests.conftest import MEDIA


@pytest.fixture(scope="module")
def generator():
    return warp_face_generator(64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return cut_clip(MEDIA / "driving_speech_audio_8s.mp4", tmp_path_factory.mktemp("c") / "c.mp4", 0.4, size=128)


def _track(generator, n: int) -> np.ndarray:
    t = np.linspace(-1, 1, n, dtype=np.float32)
    ws = np.zeros((n, generator.num_ws, generator.w_dim), np.float32)
    ws[:, :, 0] = t[:, None]
    return ws


def test_output_kind(tmp_path) -> None:
    assert output_kind(tmp_path / "a.mp4") == "mp4" and output_kind(tmp_path / "a.GIF") == "gif"
    assert output_kind(tmp_path / "frames") == "png" and output_kind(tmp_path) == "png"
    with pytest.raises(UserError, match="unknown output type"):
        output_kind(tmp_path / "a.docx")


def test_generate_crops_uses_the_track_and_the_edit(generator) -> None:
    ws = _track(generator, 5)
    plain = list(generate_crops(generator, ws, batch_size=2))
    assert len(plain) == 5 and plain[0].shape == (64, 64, 3) and plain[0].dtype == np.uint8
    with torch.no_grad():
        expected = tensor_to_uint8(generator.synthesis(torch.from_numpy(ws[3:4])))[0]
    np.testing.assert_array_equal(plain[3], expected)
    assert not np.array_equal(plain[0], plain[4])  # the track moves the face
    edited = list(generate_crops(generator, ws, edit_ws=lambda w: w + 0.5))
    assert not np.array_equal(edited[2], plain[2])
    with pytest.raises(UserError, match="needs"):
        list(generate_crops(generator, np.zeros((2, generator.num_ws + 1, generator.w_dim), np.float32)))


def test_a_cpu_renders_one_code_a_pass_and_a_gpu_a_batch() -> None:
    from personalize.device import render_batch

    assert render_batch("cpu", 4) == 1 and render_batch(torch.device("cpu"), 3) == 1
    assert render_batch("cuda", 4) == 4 and render_batch("cuda:1", 0) == 1


def test_paste_back_puts_the_face_where_the_alignment_took_it(clip) -> None:
    from personalize.faces import align_face, detect_landmarks
    from personalize.video import iter_frames

    frame = next(iter(iter_frames(clip)))
    landmarks = detect_landmarks(frame)
    assert landmarks is not None
    crop, transform = align_face(frame, landmarks, size=64)
    # pasting the unchanged crop back changes little; pasting a black face darkens only the face
    same = next(compose_frames(iter([crop]), 1, paste_back=True, driving_frames=iter([frame]),
                               transforms=transform[None], crop_size=64))
    assert same.shape == frame.shape
    assert np.abs(same.astype(int) - frame.astype(int)).mean() < 3
    black = next(compose_frames(iter([np.zeros_like(crop)]), 1, paste_back=True,
                                driving_frames=iter([frame]), transforms=transform[None], crop_size=64))
    face_xy = landmarks[:, :2].mean(axis=0).astype(int)
    assert black[face_xy[1], face_xy[0]].sum() < frame[face_xy[1], face_xy[0]].sum() / 3
    np.testing.assert_array_equal(black[:4, :4], frame[:4, :4])  # far corner untouched
    both = next(compose_frames(iter([crop]), 1, paste_back=True, side_by_side_with_driving=True,
                               driving_frames=iter([frame]), transforms=transform[None], crop_size=64))
    assert both.shape == (frame.shape[0], 2 * frame.shape[1], 3)


def test_side_by_side_resizes_the_left_to_the_right_height() -> None:
    out = side_by_side(np.zeros((128, 100, 3), np.uint8), np.ones((64, 64, 3), np.uint8))
    assert out.shape == (64, 50 + 64, 3)


def test_render_take_exports_mp4_with_audio_gif_and_pngs(generator, clip, tmp_path) -> None:
    from personalize.video import probe_video

    n = probe_video(clip).n_frames
    ws = _track(generator, n)
    mp4 = render_take(generator, ws, tmp_path / "out.mp4", fps=25.0, audio_from=clip)
    info = stream_info(mp4.path)
    assert (mp4.frames, info["frames"], info["audio"]) == (n, n, True)
    assert info["fps"] == pytest.approx(25.0)
    gif = render_take(generator, ws, tmp_path / "out.gif", fps=25.0)
    assert gif.kind == "gif" and gif.path.stat().st_size > 0
    seen = []
    pngs = render_take(generator, ws, tmp_path / "frames", fps=25.0, frames=slice(2, 5),
                       progress=lambda d, t, m="": seen.append((d, t)))
    assert pngs.frames == 3 and len(list((tmp_path / "frames").glob("*.png"))) == 3
    assert seen[-1] == (3, 3)
    with pytest.raises(UserError, match="driving video"):
        render_take(generator, ws, tmp_path / "x.mp4", fps=25.0, paste_back=True)


def test_output_height_resizes_every_frame_keeping_the_aspect(generator, clip, tmp_path) -> None:
    from personalize.video import probe_video, read_image

    ws = _track(generator, 3)
    crops = render_take(generator, ws, tmp_path / "tall", fps=25.0, height=150)
    pictures = sorted((tmp_path / "tall").glob("*.png"))
    assert crops.frames == 3 and [read_image(p).shape for p in pictures] == [(150, 150, 3)] * 3
    driving = [read_image(p) for p in pictures]  # stands in for driving crops (150 px)
    wide = render_take(generator, ws, tmp_path / "wide.mp4", fps=25.0, height=90,
                       side_by_side_with_driving=True, driving_crops=lambda t: driving[t])
    info = probe_video(wide.path)
    assert (info.height, info.width) == (90, 180)  # (150 | 64->150) side by side, scaled to 90 tall
    for bad in (0, 10, 100000):
        with pytest.raises(UserError, match="height"):
            render_take(generator, ws, tmp_path / "bad.mp4", fps=25.0, height=bad)


def test_resize_to_height_keeps_even_sides() -> None:
    from editing.render import resize_to_height

    frame = np.zeros((480, 854, 3), np.uint8)
    out = resize_to_height(frame, 720)
    assert out.shape == (720, 1280, 3)
    assert resize_to_height(frame, 101).shape[1] % 2 == 0
