"""Render a latent track to frames and export them (MP4 with the driving audio, GIF, PNG sequence).

Used by re-enactment and by editing: any generator (the personalized one or a stylized copy)
renders any ws track (T, num_ws, w_dim), optionally through a ws-edit function (e.g. an
InterFaceGAN shift), so semantic edits and styles are post-processes of the same track.

Layouts: the aligned crops as generated; pasted back into the driving video's full frames through
the inverse of the recorded alignment transform with a feathered face mask; either of them side by
side with the driving input (driving | result).

Everything streams: one batch of generated crops and one driving frame are in memory at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch

from optimize.driving import tensor_to_uint8  # noqa: F401 - renderers and tests import it from here
from personalize.device import render_batch
from personalize.errors import MediaError, UserError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

WsEdit = Callable[[torch.Tensor], torch.Tensor]
"""ws (B, num_ws, w_dim) -> edited ws of the same shape (same device)."""

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")


@dataclass
class RenderResult:
    path: Path
    frames: int
    kind: str
    """'mp4', 'gif' or 'png'."""
    fps: float
    edit_report: str | None = None
    """What keeping the edits inside the person's space did (``editing.directions.HullReport``)."""


def output_kind(out: str | Path) -> str:
    """'mp4' for video suffixes, 'gif' for .gif, 'png' for a folder (no suffix or an existing dir)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if out.is_dir() or suffix == "":
        return "png"
    if suffix == ".gif":
        return "gif"
    if suffix in VIDEO_SUFFIXES:
        return "mp4"
    raise UserError(f"Cannot export to '{out.name}': unknown output type '{suffix}'.",
                    "Use a .mp4 or .gif file name, or a folder for a PNG sequence.")


def generate_crops(generator: torch.nn.Module, ws_track: np.ndarray | torch.Tensor, *,
                   edit_ws: WsEdit | None = None, device: torch.device | str = "cpu",
                   batch_size: int | None = None, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[np.ndarray]:
    """Yield the generated aligned crops (R, R, 3) uint8 for ws_track (T, num_ws, w_dim), in order.

    ``batch_size`` None: ``personalize.device.render_batch`` (4 on a GPU, 1 on a CPU)."""
    track = torch.as_tensor(np.asarray(ws_track) if not torch.is_tensor(ws_track) else ws_track,
                            dtype=torch.float32)
    num_ws = int(getattr(generator, "num_ws", track.shape[1]))
    if track.ndim != 3 or track.shape[1] != num_ws:
        raise UserError(f"The latent track has shape {tuple(track.shape)} but this generator needs "
                        f"(T, {num_ws}, w_dim).",
                        "Render with the generator the take was optimized for (or a style made from it).")
    generator = generator.to(device).eval()
    if batch_size is None:
        batch_size = render_batch(device, 4)
    with torch.no_grad():
        for start in range(0, track.shape[0], batch_size):
            cancel.check()
            ws = track[start:start + batch_size].to(device)
            if edit_ws is not None:
                ws = edit_ws(ws)
            images = generator.synthesis(ws, noise_mode="const")
            yield from tensor_to_uint8(images)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Concatenate two frames horizontally; the left one is resized to the right one's height."""
    if left.shape[0] != right.shape[0]:
        width = max(1, int(round(left.shape[1] * right.shape[0] / left.shape[0])))
        left = cv2.resize(left, (width, right.shape[0]), interpolation=cv2.INTER_AREA)
    return np.concatenate([left, right], axis=1)


def compose_frames(crops: Iterator[np.ndarray], n_frames: int, *, paste_back: bool = False,
                   side_by_side_with_driving: bool = False,
                   driving_frames: Iterator[np.ndarray] | None = None,
                   transforms: np.ndarray | None = None,
                   driving_crop: Callable[[int], np.ndarray] | None = None,
                   crop_size: int | None = None, feather: float = 0.08,
                   face_landmarks: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Turn generated crops into output frames.

    paste_back: needs ``driving_frames`` (full HWC uint8 frames, in order) and ``transforms``
    (T,3,3) source->crop at ``crop_size`` px; the pasted region is the fixed FFHQ face ellipse, or
    with ``face_landmarks`` (T,478,2+) crop pixels each frame's face oval (crops whose face does
    not sit where FFHQ puts it). side_by_side_with_driving: driving | result, using the full
    driving frame when pasting back, else ``driving_crop(t)``.
    """
    from personalize.faces import face_mask
    from personalize.faces import paste_back as paste

    for t in range(n_frames):
        try:
            crop = next(crops)
        except StopIteration:
            return
        if paste_back:
            if driving_frames is None or transforms is None:
                raise UserError("Pasting back needs the driving video and its alignment transforms.",
                                "Prepare the driving video again (its take folder lacks landmarks.npz).")
            try:
                full = next(driving_frames)
            except StopIteration:
                raise MediaError("The driving video has fewer frames than the take.",
                                 "Re-run the re-enactment for this driving video.") from None
            size = crop_size or crop.shape[0]
            if crop.shape[0] != size:
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size
                                  else cv2.INTER_CUBIC)
            mask = None if face_landmarks is None else face_mask(size, face_landmarks[t], feather=feather)
            result = paste(full, crop, transforms[t], feather=feather, mask=mask)
            yield side_by_side(full, result) if side_by_side_with_driving else result
        elif side_by_side_with_driving:
            if driving_crop is None:
                raise UserError("Side by side needs the driving take's aligned crops.",
                                "Prepare the driving video again.")
            yield side_by_side(driving_crop(t), crop)
        else:
            yield crop


MIN_OUTPUT_HEIGHT = 16
MAX_OUTPUT_HEIGHT = 4320


def check_output_height(height: int | None) -> int | None:
    """Validate an output height in pixels (None keeps the natural size)."""
    if height is None:
        return None
    if not MIN_OUTPUT_HEIGHT <= int(height) <= MAX_OUTPUT_HEIGHT:
        raise UserError(f"Output height {height} px is out of range.",
                        f"Choose a height between {MIN_OUTPUT_HEIGHT} and {MAX_OUTPUT_HEIGHT} px, "
                        "e.g. 1080 or 720.")
    return int(height)


def resize_to_height(frame: np.ndarray, height: int) -> np.ndarray:
    """HWC uint8 -> the same picture ``height`` px tall; the width keeps the aspect ratio, rounded
    to an even number (H.264 with yuv420p needs even sides). Area filter down, Lanczos up."""
    h, w = frame.shape[:2]
    width = max(2, int(round(w * height / h / 2)) * 2)
    if (h, w) == (height, width):
        return frame
    shrinking = height < h
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)


def export_frames(frames: Iterator[np.ndarray], out: str | Path, fps: float,
                  audio_from: str | Path | None = None) -> tuple[int, str]:
    """Write frames to ``out`` (MP4 with ``audio_from``'s audio, GIF, or a PNG folder)."""
    from personalize.video import write_gif, write_png_sequence, write_video

    kind = output_kind(out)
    if kind == "mp4":
        return write_video(out, frames, fps, audio_from=audio_from), kind
    if kind == "gif":
        return write_gif(out, frames, fps), kind
    return write_png_sequence(out, frames), kind


def render_take(generator: torch.nn.Module, ws_track: np.ndarray | torch.Tensor, out: str | Path, *,
                fps: float, edit_ws: WsEdit | None = None, paste_back: bool = False,
                side_by_side_with_driving: bool = False, driving_video: str | Path | None = None,
                transforms: np.ndarray | None = None, crop_size: int | None = None,
                driving_crops: Sequence[Path] | Callable[[int], np.ndarray] | None = None,
                audio_from: str | Path | None = None, frames: slice | None = None,
                height: int | None = None,
                device: torch.device | str = "cpu", batch_size: int | None = None, feather: float = 0.08,
                progress: ProgressFn = no_progress,
                cancel: CancelToken = NEVER_CANCELLED) -> RenderResult:
    """Render ``ws_track`` (T, num_ws, w_dim) with ``generator`` and export it to ``out``.

    ``edit_ws`` edits each batch of ws before synthesis (semantic edits); ``generator`` may be any
    generator with the same ``num_ws`` (personalized or stylized). The other arguments are
    ``render_crops``'.
    """
    track = np.asarray(ws_track.detach().cpu() if torch.is_tensor(ws_track) else ws_track, np.float32)
    indices = _frame_range(track.shape[0], frames)
    crops = generate_crops(generator, track[indices.start:indices.stop], edit_ws=edit_ws, device=device,
                           batch_size=batch_size, cancel=cancel)
    return render_crops(crops, track.shape[0], out, fps=fps, paste_back=paste_back,
                        side_by_side_with_driving=side_by_side_with_driving, driving_video=driving_video,
                        transforms=transforms, crop_size=crop_size, driving_crops=driving_crops,
                        audio_from=audio_from, frames=frames, height=height, feather=feather,
                        progress=progress, cancel=cancel)


def read_crops(paths: Sequence[Path], frames: slice | None = None) -> Iterator[np.ndarray]:
    """The stored output crops of an image take (``paths`` in frame order), for ``render_crops``."""
    indices = _frame_range(len(paths), frames)
    for path in list(paths)[indices.start:indices.stop]:
        yield _read_rgb(path)


def warped_driving_crops(driving_video: str | Path, transforms: np.ndarray, size: int,
                         start: int = 0) -> Callable[[int], np.ndarray]:
    """``t -> the driving frame t seen through transforms[t]`` (a ``size`` px crop), for side by
    side with a take whose crops were not stored (frames are read once, in order from ``start``)."""
    from personalize.faces import warp_crop
    from personalize.video import iter_frames

    frames = iter_frames(driving_video, start=start)
    position = [start]

    def crop(t: int) -> np.ndarray:
        if t != position[0]:
            raise ValueError(f"driving crops are read in order: asked for {t}, next is {position[0]}")
        position[0] += 1
        try:
            frame = next(frames)
        except StopIteration:
            raise MediaError("The driving video has fewer frames than the take.",
                             "Re-run the re-enactment for this driving video.") from None
        return warp_crop(frame, transforms[t], size)

    return crop


def _frame_range(n_frames: int, frames: slice | None) -> range:
    indices = range(n_frames)[frames] if frames is not None else range(n_frames)
    if indices.step != 1:
        raise ValueError("frames must be a contiguous slice")
    return indices


def render_crops(crops: Iterator[np.ndarray], n_frames: int, out: str | Path, *, fps: float,
                 paste_back: bool = False, side_by_side_with_driving: bool = False,
                 driving_video: str | Path | None = None, transforms: np.ndarray | None = None,
                 crop_size: int | None = None,
                 driving_crops: Sequence[Path] | Callable[[int], np.ndarray] | None = None,
                 audio_from: str | Path | None = None, frames: slice | None = None,
                 height: int | None = None, feather: float = 0.08, face_landmarks: np.ndarray | None = None,
                 progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> RenderResult:
    """Compose a take's crops (any backend's: generated from a latent track, or stored images)
    into output frames and export them to ``out``.

    ``crops`` yields the crops of frames ``frames`` (all ``n_frames`` when None) in order.
    ``audio_from`` (usually the driving video) gives the MP4 its sound. ``frames`` renders a
    sub-range (previews). ``transforms`` (T,3,3) frame->crop at ``crop_size`` for paste-back;
    ``driving_crops`` the driving crops (paths or ``t -> image``) for side by side;
    ``face_landmarks`` (T,478,2+) the face in each crop (paste-back masks, see ``compose_frames``). ``height``:
    output frames this many pixels tall (width by aspect ratio); None keeps the natural size (the
    crop's, or the driving video's when pasting back).
    """
    height = check_output_height(height)
    from personalize.video import iter_frames

    indices = _frame_range(n_frames, frames)
    start, n = (indices.start if len(indices) else 0), len(indices)
    if transforms is not None:
        transforms = transforms[start:start + n]
    if face_landmarks is not None:
        face_landmarks = face_landmarks[start:start + n]
    if n == 0:
        raise UserError("The take is empty: nothing to render.", "Re-run the re-enactment.")
    if fps <= 0:
        raise UserError(f"Invalid frame rate {fps}.", "Give a positive fps.")

    crop_loader: Callable[[int], np.ndarray] | None = None
    if callable(driving_crops):
        crop_loader = lambda t: driving_crops(start + t)  # noqa: E731
    elif driving_crops is not None:
        paths = list(driving_crops)
        crop_loader = lambda t: _read_rgb(paths[start + t])  # noqa: E731

    driving_iter = None
    if paste_back:
        if driving_video is None:
            raise UserError("Pasting back needs the driving video.", "Keep driving.* in the take folder.")
        driving_iter = iter_frames(driving_video, start=start, stop=start + n)

    def counted(it: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for i, frame in enumerate(it):
            cancel.check()
            yield frame if height is None else resize_to_height(frame, height)
            progress(i + 1, n, "rendering")

    composed = compose_frames(crops, n, paste_back=paste_back,
                              side_by_side_with_driving=side_by_side_with_driving,
                              driving_frames=driving_iter, transforms=transforms,
                              driving_crop=crop_loader, crop_size=crop_size, feather=feather,
                              face_landmarks=face_landmarks)
    count, kind = export_frames(counted(composed), out, fps, audio_from=audio_from)
    return RenderResult(Path(out), count, kind, float(fps))


def _read_rgb(path: Path) -> np.ndarray:
    from personalize.video import read_image

    return read_image(path)
