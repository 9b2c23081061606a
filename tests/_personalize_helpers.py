"""Helpers for the personalize tests: small real face crops and a tiny generator.

Crops: a fixed square crop of the shared self-scan video around the face, resized down. Not an
FFHQ alignment, but real faces with real pose/expression changes, which is what selection and
tuning tests need.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from tests.conftest import MEDIA

SELFSCAN = MEDIA / "selfscan_woman2_12s.mp4"


def read_face_frames(count: int, size: int = 64, step: int = 9, video: Path = SELFSCAN) -> np.ndarray:
    """(count, size, size, 3) uint8 RGB: every ``step``-th frame, centre-square crop, resized."""
    cap = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    index = 0
    try:
        while len(frames) < count:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % step == 0:
                h, w = bgr.shape[:2]
                side = int(min(h, w) * 0.8)
                y0, x0 = (h - side) // 2, (w - side) // 2
                crop = bgr[y0:y0 + side, x0:x0 + side]
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
                frames.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()
    assert len(frames) == count, f"video too short for {count} frames at step {step}"
    return np.stack(frames)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N,H,W,3) uint8 -> (N,3,H,W) float32 in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def write_scan(scan_dir: Path, frames: np.ndarray, invalid: tuple[int, ...] = ()) -> None:
    """Write a minimal prepared scan (crops + landmarks.npz) as ``prepare_video`` lays it out."""
    crops = scan_dir / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    t = len(frames)
    valid = np.ones(t, dtype=bool)
    valid[list(invalid)] = False
    for i, frame in enumerate(frames):
        if valid[i]:
            cv2.imwrite(str(crops / f"{i:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    size = frames.shape[1]
    lm = rng.uniform(0.2 * size, 0.8 * size, size=(t, 478, 3)).astype(np.float32)
    np.savez(scan_dir / "landmarks.npz", landmarks=lm, valid=valid, crop_landmarks=lm,
             transforms=np.tile(np.eye(3), (t, 1, 1)), fps=np.float64(30.0), size=np.int64(size))


class _StandInMapping(torch.nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_ws: int) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.fc = torch.nn.Sequential(torch.nn.Linear(z_dim, w_dim), torch.nn.LeakyReLU(0.2),
                                      torch.nn.Linear(w_dim, w_dim))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None):
        w = self.fc(z)
        return w[:, None, :].repeat(1, self.num_ws, 1)


class _StandInLayer(torch.nn.Module):
    def __init__(self, w_dim: int, cin: int, cout: int, res: int, up: bool) -> None:
        super().__init__()
        self.affine = torch.nn.Linear(w_dim, cin)
        self.affine.bias.data.fill_(1.0)
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, 3, 3) / (cin * 9) ** 0.5)
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        self.up = up
        self.register_buffer("noise_const", torch.randn(res, res))
        self.noise_strength = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, w, noise_mode="const"):
        if self.up:
            x = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = x * self.affine(w)[:, :, None, None]
        x = torch.nn.functional.conv2d(x, self.weight, self.bias, padding=1)
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return torch.nn.functional.leaky_relu(x, 0.2)


class _StandInSynthesis(torch.nn.Module):
    def __init__(self, w_dim: int, res: int, ch: int = 32) -> None:
        super().__init__()
        self.const = torch.nn.Parameter(torch.randn(ch, 4, 4))
        layers, r = [], 4
        layers.append(_StandInLayer(w_dim, ch, ch, 4, False))
        while r < res:
            r *= 2
            layers.append(_StandInLayer(w_dim, ch, ch, r, True))
        self.layers = torch.nn.ModuleList(layers)
        self.torgb = torch.nn.Conv2d(ch, 3, 1)
        self.num_ws = len(layers) + 1

    def forward(self, ws, noise_mode="const", **_):
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise_mode)
        return torch.tanh(self.torgb(x))


class StandInGenerator(torch.nn.Module):
    """Used only while ``personalize.stylegan2`` is not importable: same attributes/API subset."""

    def __init__(self, seed: int = 0, res: int = 64, w_dim: int = 64) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.synthesis = _StandInSynthesis(w_dim, res)
            self.num_ws = self.synthesis.num_ws
            self.mapping = _StandInMapping(w_dim, w_dim, self.num_ws)
        self.z_dim = self.w_dim = w_dim
        self.c_dim, self.img_resolution, self.img_channels = 0, res, 3

    def forward(self, z, c=None, noise_mode="const", **kw):
        return self.synthesis(self.mapping(z, c), noise_mode=noise_mode)


def make_generator(seed: int = 0):
    """The real ``tiny_generator`` (64 px) when the stylegan2 package exists, else the stand-in."""
    try:
        from personalize.stylegan2 import tiny_generator as make
    except ImportError:
        return StandInGenerator(seed)
    return make(seed=seed)
