"""Video and image-sequence I/O through the ffmpeg binary that ships with ``imageio-ffmpeg``.

Why imageio-ffmpeg: it bundles a static ffmpeg (no system install on Windows/macOS) and streams raw
frames through a pipe, so a 30 s 1080p self-scan is never held in memory as a whole. Every problem a
user can cause (missing file, not a video, a truncated download, a video without frames) becomes a
``MediaError`` that says what to do, instead of an ffmpeg log.

Frames are HWC ``uint8`` RGB arrays throughout.
"""
from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import imageio_ffmpeg
import numpy as np

from personalize.errors import MediaError
from personalize.fileio import atomic_path

# imageio-ffmpeg warns on every open of a rotated (portrait phone) video that the decoded size
# differs from the stored one; that is the rotation being applied, as intended.
logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)

_VIDEO_HINT = ("Use a video file ffmpeg can read (e.g. .mp4/.mov/.mkv/.webm recorded by a phone or "
               "webcam); if it was downloaded or copied, download/copy it again.")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. ``n_frames`` counts the container's video packets (no decoding)."""

    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    duration: float
    codec: str = ""


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"Video not found: {path}", "Check the path (quote it if it has spaces).")
    if not path.is_file():
        raise MediaError(f"{path} is not a file.", "Give the path of a video file, not a folder.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is empty (0 bytes).", _VIDEO_HINT)


def _read_meta(path: Path) -> dict:
    """ffmpeg's header summary (fps, size, codec, audio_codec, duration), or MediaError."""
    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        return next(gen)
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError, IndexError) as exc:
        raise MediaError(f"{path} is not a readable video (ffmpeg could not open it).",
                         _VIDEO_HINT) from exc
    finally:
        gen.close()


# Phrases ffmpeg prints when a file ends early or its packets are damaged.
_CORRUPT_PATTERNS = ("corrupt input packet", "partial file", "invalid nal unit",
                     "error while decoding", "truncat", "moov atom not found")


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video without decoding it; raise ``MediaError`` if it is not a usable video.

    Two cheap ffmpeg calls: the header (via imageio-ffmpeg) and a stream copy to ``null`` that
    counts packets and reveals truncation (a file cut short keeps its header's duration but loses
    packets, and ffmpeg reports "corrupt input packet"/"partial file").
    """
    path = Path(path)
    _check_file(path)
    meta = _read_meta(path)
    if "size" not in meta or "fps" not in meta:
        raise MediaError(f"{path} has no video stream.", _VIDEO_HINT)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
           "-c", "copy", "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=600)
    log = proc.stderr.decode("utf-8", errors="replace")
    frames = re.findall(r"frame=\s*(\d+)", log)
    if proc.returncode != 0 or not frames:
        raise MediaError(f"{path} is not a readable video (ffmpeg failed to read its stream).",
                         _VIDEO_HINT)
    n_frames = int(frames[-1])
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    lower = log.lower()
    expected = duration * fps if (math.isfinite(duration) and fps > 0) else 0.0
    if any(p in lower for p in _CORRUPT_PATTERNS) or (expected > 4 and n_frames < 0.5 * expected):
        raise MediaError(f"{path} looks truncated or corrupt ({n_frames} of about "
                         f"{int(round(expected))} frames are readable).", _VIDEO_HINT)
    if n_frames == 0:
        raise MediaError(f"{path} holds no video frames.", _VIDEO_HINT)
    width, height = (int(v) for v in meta["size"])
    return VideoInfo(fps=fps if fps > 0 else 25.0, n_frames=n_frames, width=width, height=height,
                     has_audio=bool(meta.get("audio_codec")), duration=duration,
                     codec=str(meta.get("codec", "")))


def iter_frames(path: str | os.PathLike[str], start: int = 0,
                stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames ``start <= t < stop`` of a video, or of a folder of its frames
    (``_iter_frame_folder``), as (H, W, 3) uint8 RGB, decoding one at a time.

    Why decode-and-skip instead of seeking: ``-ss`` seeking lands on key frames and time stamps,
    and frame ``t`` must be exactly the ``t``-th decoded frame so that landmarks, crops and renders
    of the same index always agree. Closing the generator early stops ffmpeg.
    """
    path = Path(path)
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"bad frame range [{start}, {stop})")
    if path.is_dir():
        yield from _iter_frame_folder(path, start, stop)
        return
    _check_file(path)
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration, ValueError, KeyError, IndexError) as exc:
            raise MediaError(f"{path} is not a readable video.", _VIDEO_HINT) from exc
        width, height = meta["size"]
        t = 0
        while stop is None or t < stop:
            try:
                raw = next(gen)
            except StopIteration:
                return
            except RuntimeError as exc:  # imageio-ffmpeg: a frame ended early (truncated file)
                raise MediaError(f"{path} is truncated or corrupt: frame {t} cannot be decoded.",
                                 _VIDEO_HINT) from exc
            if t >= start:
                # A writable copy: callers may draw on frames; the cost is tiny next to decoding.
                yield np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()
            t += 1
    finally:
        gen.close()


FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def _iter_frame_folder(folder: Path, start: int, stop: int | None) -> Iterator[np.ndarray]:
    """The frames in ``folder`` (PNG or JPEG) in name order, as ``write_png_sequence`` writes them
    or ``ffmpeg -i clip.mp4 %05d.png`` exports them. Why: a machine without an ffmpeg binary still
    reads a clip's frames: ``bench/gpu_bundle.sh`` carries the shared self-scan to the GPU machine
    that way, as the ffmpeg that imageio-ffmpeg bundles is too large to carry."""
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not names:
        raise MediaError(f"{folder} holds no frames (.png or .jpg files).",
                         "Give a video file, or a folder of its frames.")
    for name in names[start:stop]:
        yield read_image(name)


def _even_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column instead of rescaling."""
    frame = np.ascontiguousarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be HxWx3 uint8 RGB, got {frame.shape} {frame.dtype}")
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    if size is not None and (frame.shape[1], frame.shape[0]) != size:
        raise ValueError(f"all frames must have the same size; got {frame.shape[1]}x"
                         f"{frame.shape[0]} after {size[0]}x{size[1]}")
    return frame


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float,
                audio_from: str | os.PathLike[str] | None = None, crf: int = 18) -> int:
    """Encode (H, W, 3) uint8 RGB frames to an H.264 yuv420p MP4, atomically; return the count.

    If ``audio_from`` is a file with an audio stream, that stream is encoded (AAC) into the output,
    cut or silence-padded to exactly the frames' duration (count / fps), so an exported
    re-enactment keeps the driving video's sound and all its frames. Odd sizes are padded by one
    replicated row/column (yuv420p needs even sizes).

    Why two passes when there is audio: frames arrive one by one (a renderer), so their count is
    known only at the end; ffmpeg's ``-shortest`` cut the audio at a packet boundary of its
    muxing queue instead (measured: up to tenths of a second off). The frames are encoded once;
    the second pass copies them and encodes only the audio, trimmed to the sample.
    """
    path = Path(path)
    audio_path: str | None = None
    if audio_from is not None:
        info = probe_video(audio_from)
        audio_path = str(audio_from) if info.has_audio else None
    iterator = iter(frames)
    try:
        first = _even_frame(next(iterator), None)
    except StopIteration:
        raise ValueError("write_video needs at least one frame") from None
    size = (first.shape[1], first.shape[0])
    output_params = ["-crf", str(int(crf)), "-preset", "medium", "-movflags", "+faststart",
                     "-f", "mp4"]
    count = 0
    with atomic_path(path, suffix=".mp4") as tmp:
        video_file = tmp if audio_path is None else tmp.with_name(tmp.name + ".video.mp4")
        try:
            writer = imageio_ffmpeg.write_frames(
                str(video_file), size, fps=float(fps), codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
                output_params=output_params)
            writer.send(None)  # start ffmpeg
            try:
                writer.send(first)
                count = 1
                for frame in iterator:
                    writer.send(_even_frame(frame, size))
                    count += 1
            finally:
                writer.close()
            if audio_path is not None:
                _add_audio(video_file, audio_path, tmp, count / float(fps))
        finally:
            if video_file != tmp and video_file.exists():
                video_file.unlink()
    return count


def _add_audio(video: Path, audio_from: str, out: Path, seconds: float) -> None:
    """``video``'s stream (copied) plus ``audio_from``'s first audio stream (AAC), padded with
    silence and cut to ``seconds``, into ``out`` (MP4)."""
    cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-nostdin", "-v", "error", "-i", str(video),
           "-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
           "-af", f"apad,atrim=end={seconds:.6f}", "-c:a", "aac", "-movflags", "+faststart",
           "-f", "mp4", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"ffmpeg could not add the audio of {audio_from}: {run.stderr[-800:]}")


def write_gif(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float,
              width: int | None = None) -> int:
    """Write an animated GIF (palette computed by ffmpeg from all frames), atomically.

    For previews in the GUI and for sharing; ``width`` rescales (aspect kept). Frames stream into
    ffmpeg; ffmpeg buffers them itself for its two-pass palette.
    """
    path = Path(path)
    iterator = iter(frames)
    try:
        first = np.ascontiguousarray(next(iterator))
    except StopIteration:
        raise ValueError("write_gif needs at least one frame") from None
    h, w = first.shape[:2]
    scale = f"scale={int(width)}:-1:flags=lanczos," if width else ""
    graph = f"{scale}split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer"
    count = 0
    with atomic_path(path, suffix=".gif") as tmp:
        cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", f"{float(fps):.6f}", "-i", "-", "-filter_complex", graph,
               "-loop", "0", "-f", "gif", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            for frame in _chain(first, iterator):
                frame = np.ascontiguousarray(frame)
                if frame.shape != first.shape or frame.dtype != np.uint8:
                    raise ValueError("all GIF frames must be uint8 RGB of the same size")
                proc.stdin.write(frame.tobytes())
                count += 1
        finally:
            proc.stdin.close()
            err = proc.stderr.read().decode("utf-8", errors="replace") if proc.stderr else ""
            code = proc.wait()
        if code != 0:
            raise MediaError(f"Writing the GIF {path} failed: {err.strip()[-300:]}",
                             "Check the disk space and that the folder is writable.")
    return count


def write_png_sequence(folder: str | os.PathLike[str], frames: Iterable[np.ndarray],
                       start: int = 0, pattern: str = "{t:06d}.png", compression: int = 1) -> int:
    """Write frames as ``folder/{t:06d}.png`` (each file atomic); return the count.

    PNG compression 1 is ~5x faster than OpenCV's default 3 for ~10 % larger files: crops are
    written once per frame and read a few times, so speed wins.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, frame in enumerate(frames):
        write_png(folder / pattern.format(t=start + i), frame, compression)
        count += 1
    return count


def write_png(path: str | os.PathLike[str], image_rgb: np.ndarray, compression: int = 1) -> None:
    """Write one (H, W, 3) uint8 RGB image as PNG atomically."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise MediaError(f"Could not encode {path} as PNG.", "Check the image data.")
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(buf.tobytes())


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; MediaError if it is missing or unreadable.

    Reads bytes with Python and decodes from memory because ``cv2.imread`` cannot open non-ASCII
    paths on Windows.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"Image not found: {path}", "Check the path.")
    data = np.frombuffer(path.read_bytes(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(f"{path} is not a readable image.", "Use a PNG or JPEG file.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
