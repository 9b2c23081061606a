"""The driving descriptor p of fast re-enactment: head pose and expression coefficients.

Why (directions paper, Sec. 3.1): a latent shift ``A (p_t - p_s)`` only works when p separates
head pose from expression and leaves identity out. That paper gets such a p from a 3D morphable
model; we build the same kind of linear shape model from MediaPipe landmarks and the person's own
self-scan, so no external face model or weights are needed:

* **Head pose** (yaw, pitch, roll, and where the head sits in the aligned crop: x, y, log-scale).
  A similarity (Umeyama) fit of landmarks that move with the skull (``RIGID_POINTS``: forehead,
  temples, nose, eye corners) to the person's *frontal mean shape* (``fit_reference``: the
  Procrustes mean of the most frontal self-scan frames). MediaPipe's z is in the units of x, so the
  fit is a true 3D rotation; its angles follow ``personalize.faces.quality.head_pose`` (yaw > 0
  when the face turns towards image right, pitch > 0 when it looks down; roll is the in-plane
  rotation of the image). Position and scale are
  part of p because the paper's 66 keypoints keep four absolute head-frame points: the exact
  optimizer matches where the head sits in the crop, so the fast one must too.
* **Expression**: the paper's 66 normalized keypoints (``optimize.keypoints.normalized_keypoints``;
  eyes with their irises, mouth, head frame) of the *frontalized* landmarks (the fitted rotation,
  scale and translation removed), projected on a PCA basis fitted on this person's selected
  self-scan frames (``fit_descriptor``; k components). Frontalizing first is what the 3DMM's
  "frontalized reference frame" does: a head turn then no longer reads as an expression.
* **Rescaling** (directions paper, "Training details"): every element is mapped from its range
  (estimated on the generator's own samples) to a common range [-a, a] (``Descriptor.rescale``).

The same model runs backwards (``Descriptor.synthesize_keypoints``): the 66 keypoints of the
source's face with another p — the ground truth of the self-supervised training, as the paper
reconstructs a ground-truth 3D shape from the source's identity and the target's pose/expression.

Units: landmarks are divided by the crop's side first (crop-width units), so a descriptor fitted on
256 px crops reads 1024 px crops the same way. Everything here is torch (batched, any device),
float64 inside the fits.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from optimize.keypoints import keypoint_indices, normalized_keypoints
from personalize.errors import ProjectError
from personalize.fileio import atomic_write_bytes

RIGID_POINTS: tuple[int, ...] = (
    10, 338, 297, 332, 284, 109, 67, 103, 54, 151, 9, 108, 337,   # forehead
    162, 127, 234, 389, 356, 454, 21, 251,                       # temples, face sides at the cheekbones
    168, 6, 197, 195, 5, 4, 1,                                   # nose bridge to tip
    33, 133, 263, 362,                                           # eye corners (canthi)
)
"""MediaPipe landmarks that move with the skull, not with expressions: the rigid fit uses them."""

POSE_NAMES = ("yaw", "pitch", "roll", "x", "y", "log_scale")
N_POSE = len(POSE_NAMES)
FRONTAL_DEGREES = 12.0
"""Self-scan frames within this yaw and pitch (``head_pose``) make the frontal reference."""
DEFAULT_COMPONENTS = 12
"""The directions paper's m_e = 12 expression coefficients (fewer when the scan explains less)."""
EXPLAINED_VARIANCE = 0.98
"""Keep the components that explain this much of the scan's expression variance (at most k)."""
DESCRIPTOR_FORMAT = 1


# ------------------------------------------------------------------------------ rigid geometry
@dataclass
class RigidFit:
    """``landmarks ~ scale * rotation @ reference + translation`` per frame.

    rotation (T,3,3), scale (T,), translation (T,3); float64.
    """

    rotation: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor


def fit_similarity(points: torch.Tensor, reference: torch.Tensor) -> RigidFit:
    """Umeyama's least-squares similarity from a centered ``reference`` (M,3) to ``points`` (T,M,3)."""
    x = points.to(torch.float64)
    y = reference.to(x)
    mu_x = x.mean(dim=1, keepdim=True)
    xc = x - mu_x
    cov = xc.transpose(1, 2) @ y / y.shape[0]                    # (T,3,3) = E[x y^T]
    u, s, vh = torch.linalg.svd(cov)
    d = torch.ones_like(s)
    d[:, 2] = torch.sign(torch.linalg.det(u @ vh))
    d[d == 0] = 1.0
    rotation = u @ torch.diag_embed(d) @ vh
    var_y = (y ** 2).sum(dim=1).mean()
    scale = (s * d).sum(dim=1) / var_y
    return RigidFit(rotation, scale, mu_x[:, 0])


def euler_from_rotation(rotation: torch.Tensor) -> torch.Tensor:
    """(T,3,3) rotations -> (T,3) degrees (yaw, pitch, roll), ``R = R_z(roll) R_y(-yaw) R_x(-pitch)``.

    Image axes: x right, y down, z away from the camera. Roll is applied last, i.e. it is the
    in-plane rotation of the image: turning the crop changes roll and nothing else. Signs as
    ``quality.head_pose``: yaw > 0 when the face turns towards image right (its nose moves to +x,
    a rotation of -yaw about y in these axes), pitch > 0 when it looks down.
    """
    r = rotation
    yaw = -torch.asin((-r[:, 2, 0]).clamp(-1.0, 1.0))
    pitch = -torch.atan2(r[:, 2, 1], r[:, 2, 2])
    roll = torch.atan2(r[:, 1, 0], r[:, 0, 0])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=1))


def rotation_from_euler(angles: torch.Tensor) -> torch.Tensor:
    """Inverse of ``euler_from_rotation``: (T,3) degrees -> (T,3,3)."""
    rad = torch.deg2rad(angles.to(torch.float64))
    yaw, pitch, roll = -rad[:, 0], -rad[:, 1], rad[:, 2]
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def mat(rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    ry = mat([[torch.cos(yaw), zero, torch.sin(yaw)], [zero, one, zero],
              [-torch.sin(yaw), zero, torch.cos(yaw)]])
    rx = mat([[one, zero, zero], [zero, torch.cos(pitch), -torch.sin(pitch)],
              [zero, torch.sin(pitch), torch.cos(pitch)]])
    rz = mat([[torch.cos(roll), -torch.sin(roll), zero], [torch.sin(roll), torch.cos(roll), zero],
              [zero, zero, one]])
    return rz @ ry @ rx


def fit_reference(landmarks: torch.Tensor, iterations: int = 4) -> torch.Tensor:
    """The frontal mean shape (M,3) of the rigid points of frames (T,478,3) (crop-width units).

    Generalized Procrustes: every frame's rigid points are aligned (rotation, scale) to the running
    mean and averaged. The mean is then rotated back to the frames' own average orientation, so
    pose 0 is the average of the frames given (pass near-frontal frames), and scaled to their mean
    size (scale 1 = the person's usual size in the crop).
    """
    pts = landmarks[:, list(RIGID_POINTS)].to(torch.float64)
    centered = pts - pts.mean(dim=1, keepdim=True)
    size = centered.pow(2).sum(dim=2).mean(dim=1).sqrt()        # (T,) rms radius
    mean = centered[0]
    for _ in range(iterations):
        fit = fit_similarity(centered, mean)
        # the inverse similarity maps each frame onto the mean's pose and size
        aligned = (centered @ fit.rotation) / fit.scale[:, None, None]
        mean = aligned.mean(dim=0)
        mean = mean / mean.pow(2).sum(dim=1).mean().sqrt()
    plain = centered.mean(dim=0)                                # the frames' average orientation
    back = fit_similarity(plain[None], mean)
    return (mean @ back.rotation[0].T) * size.mean()


# ------------------------------------------------------------------------------ the descriptor
@dataclass
class Measurement:
    """What ``Descriptor.measure`` reads from landmarks (T frames).

    pose (T,6): yaw, pitch, roll (degrees), x, y (crop-width units), log scale; expression (T,k);
    frontal (T,478,3): the landmarks with the fitted similarity removed (reference units);
    fit: the similarity itself.
    """

    pose: torch.Tensor
    expression: torch.Tensor
    frontal: torch.Tensor
    fit: RigidFit

    @property
    def p(self) -> torch.Tensor:
        """(T, 6 + k) float32: the raw descriptor."""
        return torch.cat([self.pose, self.expression], dim=1).float()


@dataclass
class Descriptor:
    """The person's descriptor model: frontal reference, expression PCA and rescaling.

    reference (M,3) centered rigid-point shape; mean (198,) and components (k,198): PCA of the
    frontalized 66 keypoints (x, y, z flattened); center, half_range (6+k,): the rescaling
    ``p_hat = a (p - center) / half_range`` (identity until ``set_range``); a: the common range.
    """

    reference: torch.Tensor
    mean: torch.Tensor
    components: torch.Tensor
    explained: torch.Tensor
    center: torch.Tensor
    half_range: torch.Tensor
    a: float = 1.0
    definition: str = field(default="")

    @property
    def n_expression(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        """Length of p: 6 pose elements + k expression coefficients."""
        return N_POSE + self.n_expression

    def names(self) -> list[str]:
        return list(POSE_NAMES) + [f"expression_{i}" for i in range(self.n_expression)]

    def to(self, device: torch.device | str) -> "Descriptor":
        moved = {k: getattr(self, k).to(device) for k in
                 ("reference", "mean", "components", "explained", "center", "half_range")}
        return Descriptor(**moved, a=self.a, definition=self.definition)

    # -------------------------------------------------------------- measuring
    def measure(self, landmarks: torch.Tensor | np.ndarray, image_size: float) -> Measurement:
        """landmarks (T,478,3) in pixels of square crops of side ``image_size``."""
        lm = torch.as_tensor(np.asarray(landmarks) if not torch.is_tensor(landmarks) else landmarks)
        lm = lm.to(self.reference.device, torch.float64) / float(image_size)
        fit = fit_similarity(lm[:, list(RIGID_POINTS)], self.reference)
        frontal = ((lm - fit.translation[:, None]) @ fit.rotation) / fit.scale[:, None, None]
        angles = euler_from_rotation(fit.rotation)
        pose = torch.cat([angles, fit.translation[:, :2], torch.log(fit.scale)[:, None]], dim=1)
        flat = normalized_keypoints(frontal).reshape(lm.shape[0], -1)
        expression = (flat - self.mean.to(flat)) @ self.components.to(flat).T
        return Measurement(pose.float(), expression.float(), frontal, fit)

    def describe(self, landmarks: torch.Tensor | np.ndarray, image_size: float) -> torch.Tensor:
        """(T,478,3) crop-pixel landmarks -> raw p (T, 6 + k) float32."""
        return self.measure(landmarks, image_size).p

    def rescale(self, p: torch.Tensor) -> torch.Tensor:
        """Raw p -> p_hat in the common range (about [-a, a] over the generator's samples)."""
        return self.a * (p - self.center.to(p)) / self.half_range.to(p)

    def unscale(self, p_hat: torch.Tensor) -> torch.Tensor:
        return p_hat * self.half_range.to(p_hat) / self.a + self.center.to(p_hat)

    def set_range(self, samples: torch.Tensor, low: float = 0.01, high: float = 0.99) -> None:
        """Estimate every element's range from raw descriptors (S, 6+k) of generated samples.

        The ``low``/``high`` quantiles (not min/max: one odd sample must not set the scale) map to
        -a and +a. A flat element (no spread in the samples) keeps unit scale, so it cannot blow up.
        """
        samples = samples.to(torch.float64)
        lo = torch.quantile(samples, low, dim=0)
        hi = torch.quantile(samples, high, dim=0)
        half = (hi - lo) / 2
        self.center = ((hi + lo) / 2).float()
        self.half_range = torch.where(half > 1e-6, half, torch.ones_like(half)).float()

    # -------------------------------------------------------------- the shape model backwards
    def synthesize_keypoints(self, source: Measurement, p: torch.Tensor) -> torch.Tensor:
        """The 66 normalized keypoints (T,66,3) (crop-width units) of the source faces with raw
        descriptors ``p`` (T, 6+k): the source's frontal landmarks with the expression changed by
        the PCA components, then posed by p's rotation, position and scale (depth and everything
        p does not describe stay the source's)."""
        p = p.to(source.frontal.device, torch.float64)
        delta = (p[:, N_POSE:] - source.expression.to(p)) @ self.components.to(p)
        frontal = source.frontal.clone()
        rows = keypoint_indices()
        frontal[:, rows] = frontal[:, rows] + delta.reshape(p.shape[0], len(rows), 3)
        rotation = rotation_from_euler(p[:, :3])
        translation = torch.cat([p[:, 3:5], source.fit.translation[:, 2:]], dim=1)
        scale = torch.exp(p[:, 5])
        posed = scale[:, None, None] * (frontal @ rotation.transpose(1, 2)) + translation[:, None]
        return normalized_keypoints(posed).float()

    # -------------------------------------------------------------- files
    def state(self) -> dict[str, np.ndarray]:
        return {"format": np.array(DESCRIPTOR_FORMAT),
                **{k: getattr(self, k).detach().cpu().numpy() for k in
                   ("reference", "mean", "components", "explained", "center", "half_range")},
                "a": np.array(self.a), "definition": np.array(self.definition)}

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, **self.state())
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def from_state(cls, data) -> "Descriptor":  # noqa: ANN001 - an npz file or a dict of arrays
        if int(data["format"]) != DESCRIPTOR_FORMAT:
            raise ValueError("descriptor written by another studio version")
        tensors = {k: torch.from_numpy(np.asarray(data[k])) for k in
                   ("reference", "mean", "components", "explained", "center", "half_range")}
        return cls(**tensors, a=float(data["a"]), definition=str(data["definition"]))

    @classmethod
    def load(cls, path: Path) -> "Descriptor":
        try:
            with np.load(path, allow_pickle=False) as data:
                descriptor = cls.from_state(data)
        except (OSError, KeyError, ValueError) as exc:
            raise ProjectError(f"The descriptor file {path} is unreadable ({exc}).",
                               "Train the motion model again.") from exc
        if descriptor.definition != keypoint_definition():
            raise ProjectError("The motion model was made for another definition of the 66 keypoints "
                               "(an older studio).", "Train the motion model again.")
        return descriptor


def keypoint_definition() -> str:
    """Identifies what ``normalized_keypoints`` computes, by running it on fixed landmarks.

    Why a probe and not a version constant: the keypoints' definition is data owned by
    ``optimize.keypoints``; a descriptor fitted for one definition is meaningless for another,
    whatever changed it.
    """
    probe = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (1, 478, 3)))
    out = normalized_keypoints(probe).numpy().round(9)
    return hashlib.sha256(out.tobytes()).hexdigest()[:16]


def frontal_frames(landmarks: np.ndarray, limit: float = FRONTAL_DEGREES, minimum: int = 5) -> np.ndarray:
    """Indices of the most frontal frames of (T,478,3) landmarks (``quality.head_pose``): those
    within ``limit`` degrees of yaw and pitch, or at least the ``minimum`` most frontal ones."""
    from personalize.faces.quality import head_pose

    angles = np.array([head_pose(lm)[:2] for lm in np.asarray(landmarks)])
    off = np.abs(angles).max(axis=1)
    inside = np.flatnonzero(off <= limit)
    if len(inside) >= minimum:
        return inside
    return np.argsort(off)[:min(minimum, len(off))]


def fit_descriptor(landmarks: np.ndarray | torch.Tensor, image_size: float,
                   n_components: int = DEFAULT_COMPONENTS, explained: float = EXPLAINED_VARIANCE,
                   a: float = 1.0) -> Descriptor:
    """Fit the person's descriptor on their self-scan frames' landmarks (T,478,3) (crop pixels).

    The frontal reference comes from the most frontal frames; the expression PCA from every frame
    (frontalized): k = the fewest components explaining ``explained`` of the variance, at most
    ``n_components``. The rescaling stays the identity until ``Descriptor.set_range``.
    """
    lm = torch.as_tensor(np.asarray(landmarks, np.float64)) / float(image_size)
    if lm.ndim != 3 or lm.shape[0] < 3:
        raise ValueError("the descriptor needs the landmarks of at least 3 frames")
    reference = fit_reference(lm[torch.from_numpy(frontal_frames(lm.numpy()))])
    width = len(keypoint_indices()) * 3
    unit = Descriptor(reference, torch.zeros(width), torch.zeros(0, width), torch.zeros(0),
                      torch.zeros(N_POSE), torch.ones(N_POSE), a, keypoint_definition())
    frontal = unit.measure(lm, 1.0).frontal
    flat = normalized_keypoints(frontal).reshape(lm.shape[0], -1)
    mean = flat.mean(dim=0)
    _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    variance = s ** 2
    ratio = torch.cumsum(variance, 0) / variance.sum().clamp_min(1e-30)
    k = int(min(n_components, int((ratio < explained).sum()) + 1, vh.shape[0]))
    return Descriptor(reference.float(), mean.float(), vh[:k].float(), (variance[:k] / variance.sum()).float(),
                      torch.zeros(N_POSE + k), torch.ones(N_POSE + k), a, keypoint_definition())


__all__ = ["RIGID_POINTS", "POSE_NAMES", "Descriptor", "Measurement", "RigidFit", "fit_similarity",
           "fit_reference", "fit_descriptor", "euler_from_rotation", "rotation_from_euler",
           "frontal_frames", "keypoint_definition"]
