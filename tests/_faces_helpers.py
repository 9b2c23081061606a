"""Helpers for the face/video tests: short real clips cut with ffmpeg, synthetic bad inputs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from personalize.video import ffmpeg_exe
from tests.conftest import MEDIA

SELFSCAN2 = MEDIA / "selfscan_woman2_12s.mp4"     # 512x512, 30 fps, 354 frames, aac
DRIVING_SMILE = MEDIA / "driving_man_smile_wink_3s.mp4"  # 512x512, 25 fps, 78 frames, no audio
DRIVING_SPEECH = MEDIA / "driving_speech_audio_8s.mp4"   # 512x512, 25 fps, 200 frames, aac
ALIGNED = sorted((MEDIA / "aligned").glob("*.jpg"))


def cut_clip(source: Path, target: Path, n_frames: int, start: int = 0,
             audio: bool = False) -> Path:
    """Re-encode frames [start, start + n_frames) of ``source`` into ``target`` (H.264)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    vf = f"select=gte(n\\,{start}),setpts=PTS-STARTPTS"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-vf", vf,
           "-frames:v", str(n_frames), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12",
           "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
    subprocess.run(cmd + [str(target)], check=True, capture_output=True)
    return target


def write_raw_video(target: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Encode (H, W, 3) uint8 RGB frames losslessly-enough (crf 0) without personalize.video."""
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset",
           "ultrafast", "-crf", "0", "-pix_fmt", "yuv444p", str(target)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True,
                   capture_output=True)
    return target


def truncated_copy(source: Path, target: Path, keep_fraction: float = 0.5,
                   faststart: bool = False) -> Path:
    """A download cut short: the first part of ``source``'s bytes. With ``faststart`` the index
    (moov) comes first, so ffmpeg can open the file but runs out of packets."""
    if faststart:
        moved = target.with_name("faststart_" + target.name)
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-c", "copy",
                        "-movflags", "+faststart", str(moved)], check=True, capture_output=True)
        source = moved
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep_fraction)])
    return target
