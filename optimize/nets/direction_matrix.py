"""The latent-directions re-enactment's direction matrix A and its 15-entry shift vector.

Bounareli et al. learn a linear map A from a vector of pose/expression *differences* between the
driving (target) frame and the source to a shift of the first 8 W+ layers: ``A`` is
Linear(15 -> 8 * 512) (``linear.weight``, ``linear.bias``; ``A_matrix.pt['A_matrix']``), output
viewed (B, 8, 512).

The shift vector (official ``make_shift``) from DECA parameters of source and target:
* [0..2] yaw, pitch, roll (DECA's Euler angles in degrees): ``angle * 6 / scale`` differences with
  scales (40, 20, 20);
* [3] jaw opening (DECA pose[3]) and [4..14] expression coefficients 0..10: ``a * value + b``
  differences, a and b the line fits shipped in ``assets/directions_voxceleb.json`` (facts of the
  official ranges file, with provenance).
The arithmetic follows the official precision (angle x 6 in float32, the rest in float64, the
result stored as float32), which reproduces the reference shift vector bit for bit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch
from torch import nn

N_DIRECTIONS = 15
N_LAYERS = 8
SHIFT_DIM = 512


class DirectionMatrix(nn.Module):
    """shift vector (B, 15) -> W+ shift of the first 8 layers (B, 8, 512)."""

    def __init__(self, input_dim: int = N_DIRECTIONS, num_layers: int = N_LAYERS, shift_dim: int = SHIFT_DIM) -> None:
        super().__init__()
        self.input_dim, self.num_layers, self.shift_dim = input_dim, num_layers, shift_dim
        self.linear = nn.Linear(input_dim, num_layers * shift_dim)
        nn.init.normal_(self.linear.weight, 0.0, 0.03)

    def forward(self, shift: torch.Tensor) -> torch.Tensor:
        return self.linear(shift.reshape(-1, self.input_dim)).view(-1, self.num_layers, self.shift_dim)


@dataclass(frozen=True)
class ShiftCoefficients:
    shift_scale: float
    angle_scales: tuple[float, float, float]
    a_jaw: float
    b_jaw: float
    exp_components: tuple[int, ...]
    a_exp: tuple[float, ...]
    b_exp: tuple[float, ...]


@lru_cache(maxsize=1)
def voxceleb_coefficients() -> ShiftCoefficients:
    """The official VoxCeleb coefficients (``assets/directions_voxceleb.json``)."""
    data = json.loads(resources.files("assets").joinpath("directions_voxceleb.json").read_text(encoding="utf-8"))
    exps = sorted(data["expressions"], key=lambda e: e["direction"])
    return ShiftCoefficients(float(data["shift_scale"]), tuple(data["angle_scales"]), data["jaw"]["a"],
                             data["jaw"]["b"], tuple(e["exp_component"] for e in exps),
                             tuple(e["a"] for e in exps), tuple(e["b"] for e in exps))


def shift_vector(angles_src: torch.Tensor, angles_tgt: torch.Tensor, jaw_src: torch.Tensor, jaw_tgt: torch.Tensor,
                 exp_src: torch.Tensor, exp_tgt: torch.Tensor,
                 coefficients: ShiftCoefficients | None = None) -> torch.Tensor:
    """(B, 15) float32 shift vectors; angles (B, 3) degrees, jaw (B,), exp (B, 50). Source tensors
    may have batch 1 (one source for a batch of driving frames)."""
    c = coefficients or voxceleb_coefficients()
    scale6 = torch.tensor(c.shift_scale, dtype=torch.float32)
    scales = torch.tensor(c.angle_scales, dtype=torch.float64, device=angles_tgt.device)

    def pose_term(angles: torch.Tensor) -> torch.Tensor:
        return (angles.float() * scale6.to(angles.device)).double() / scales

    def line(value: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * value.double() + b

    a_exp = torch.tensor(c.a_exp, dtype=torch.float64, device=angles_tgt.device)
    b_exp = torch.tensor(c.b_exp, dtype=torch.float64, device=angles_tgt.device)
    cols = list(c.exp_components)
    a_jaw = torch.tensor(c.a_jaw, dtype=torch.float64)
    b_jaw = torch.tensor(c.b_jaw, dtype=torch.float64)
    pose = pose_term(angles_tgt) - pose_term(angles_src)
    jaw = line(jaw_tgt, a_jaw, b_jaw) - line(jaw_src, a_jaw, b_jaw)
    exp = line(exp_tgt[:, cols], a_exp, b_exp) - line(exp_src[:, cols], a_exp, b_exp)
    b = max(pose.shape[0], jaw.shape[0], exp.shape[0])
    return torch.cat([pose.expand(b, -1), jaw.reshape(-1, 1).expand(b, -1), exp.expand(b, -1)], dim=1).float()


def add_layer_shift(w_plus: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """W+ (B, L, 512) with ``shift`` (B, K, 512) added to its first K layers (official: before
    truncation, so the shift is effectively scaled by the truncation psi)."""
    k = shift.shape[1]
    return torch.cat([w_plus[:, :k] + shift, w_plus[:, k:]], dim=1)
