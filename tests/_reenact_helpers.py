"""Test helpers for re-enactment: the known-answer stand-in (``optimize.standin``) on the shared
media's real faces, short clips cut with ffmpeg, and keypoint distances."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import torch

from optimize.driving import image_to_tensor
from optimize.standin import (GAZE_CONTROLS, GAZE_DIRECTIONS, N_CONTROLS, WarpFaceGenerator, aligned_image,
                              gaze_anchors, keypoint_gradient_cosine, warp_anchors)
from tests.conftest import MEDIA


def load_aligned(name: str, size: int) -> torch.Tensor:
    """An aligned portrait from the shared media as (1,3,size,size) float32 in [-1,1]."""
    return image_to_tensor(aligned_image(MEDIA / "aligned" / name, size), size, "cpu")


def warp_face_generator(size: int = 256, **kwargs: int | bool) -> WarpFaceGenerator:
    """The stand-in on the shared self-scan at ``size`` px."""
    return WarpFaceGenerator.from_media(MEDIA, size, **kwargs)


def cut_clip(source: Path, target: Path, seconds: float, size: int | None = None) -> Path:
    """Cut the first ``seconds`` of ``source`` (with its audio) using the imageio-ffmpeg binary."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(source), "-t", f"{seconds}"]
    if size:
        cmd += ["-vf", f"scale={size}:{size}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(target)]
    subprocess.run(cmd, check=True, capture_output=True)
    return target


def stream_info(path: Path) -> dict[str, object]:
    """Frame count, fps and whether an audio stream exists, read by ffmpeg itself (not our code)."""
    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    frames = [int(n) for n in re.findall(r"frame=\s*(\d+)", out)]
    fps = None
    for line in out.splitlines():
        if "Video:" in line and " fps" in line:
            fps = float(line.split(" fps")[0].split(",")[-1].strip())
    return {"frames": frames[-1] if frames else 0, "fps": fps,
            "audio": any("Audio:" in line for line in out.splitlines())}


def mean_keypoint_error(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Mean L2 distance between two (…,66,3) keypoint sets (x, y only)."""
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a)
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b)
    return float((a[..., :2] - b[..., :2]).norm(dim=-1).mean())


__all__ = ["keypoint_gradient_cosine", "warp_face_generator", "warp_anchors", "load_aligned", "cut_clip",
           "stream_info", "mean_keypoint_error"]
