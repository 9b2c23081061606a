"""The re-enactment loss, main paper Eq. 10 (Sec. 3.3.2, Appendices B-C).

    L_full = L_key + l_mouth L_mouth + l_eyes L_eyes + l_delta L_delta + l_sum L_sum

* ``L_key`` (Eq. 2): sum over the 66 normalized keypoints of the L2 distance between the driving
  frame's keypoints (MediaPipe on the aligned driving crop, computed once per frame) and the
  generated image's keypoints (the differentiable FaceMesh). Landmarks are divided by the image
  width first, i.e. MediaPipe's own normalized units, so the loss does not depend on resolution.
* ``L_mouth`` (Eq. 3): the L2 norm of the difference between the mouth crops of the driving and
  the generated image; ``L_eyes`` (Eq. 4): the same between the iris crops of the generated image
  and of the identity reference (generated once from the center of P). Crops follow Appendix C
  (``optimize.keypoints.part_crops``), resized to ``LossWeights.crop_size``.
* ``L_delta``, ``L_sum``: Appendix B regularizers (``optimize.latent_space``).

The crop distance is a setting (``LossWeights.crop_norm``): "l2", the paper's norm, or "mse",
the per-pixel mean squared error (default). They weigh Eq. 10 differently: the norm of a 64 x 64
crop is ~110 x the root of its per-pixel error, and its gradient has the same size however close
the crops are. ``bench/reenact.py`` compares both on the known-answer take; docs/ARCHITECTURE.md
records the choice and the figures.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from optimize.latent_space import PersonalizedSpace, PPlusCode

LandmarkFn = Callable[[torch.Tensor], torch.Tensor]
"""images (B,3,H,W) in [-1,1] -> landmarks (B,478,3) in pixels of those images (x, y; z alike).
A landmark function may also offer ``placement(images)`` and accept ``placement=`` (see
``MeshLandmarks``): the loss then holds the landmark detector's region fixed for a frame."""

IRIS_PARTS = ("left_iris", "right_iris")
CROP_NORMS = ("l2", "mse")


@dataclass
class LossWeights:
    """The lambdas of Eq. 10; defaults are the paper's (Appendix C.3: l_crop = 1, l_delta = l_sum = 10)."""

    key: float = 1.0
    mouth: float = 1.0
    eyes: float = 1.0
    delta: float = 10.0
    sum: float = 10.0
    crop_size: int = 64
    """Side of the resized mouth / iris crops compared pixel by pixel."""
    crop_norm: str = "mse"
    """How two crops are compared: "mse" (per-pixel mean squared error, the default) or "l2"
    (Eq. 3-4 literally: the L2 norm of the difference). Why not the paper's norm by default: with
    keypoints in crop-width units and 64 px crops in [-1, 1] (the paper states neither), the norm
    at l_crop = 1 outweighs L_key by ~100x and tracking fails (bench/reenact.py, ARCHITECTURE)."""
    use_z: bool = True
    """Whether the keypoints' relative depth takes part in L_key."""

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class FrameTarget:
    """What one driving frame asks for. image (1,3,R,R) in [-1,1]; landmarks (1,478,3) in its
    pixels; keypoints (1,66,3) normalized keypoints (image-width units)."""

    image: torch.Tensor
    landmarks: torch.Tensor
    keypoints: torch.Tensor
    placement: torch.Tensor | None = None
    """(1,4) landmark-detector region for the generated images of this frame (``MeshLandmarks``)."""

    def measure(self, landmarks: LandmarkFn, generated: torch.Tensor) -> torch.Tensor:
        """Landmarks (B,478,3) of images generated for this frame (B,3,R,R in [-1,1]), in their
        pixels, with this frame's detector region held fixed when there is one."""
        if self.placement is not None:
            return landmarks(generated, placement=self.placement)  # type: ignore[call-arg]
        return landmarks(generated)


@dataclass
class IdentityReference:
    """I_c, generated from the center of P, with its landmarks (computed once per take)."""

    image: torch.Tensor
    landmarks: torch.Tensor


@dataclass
class LossTerms:
    """Each term (B,); ``total`` is the weighted sum the optimizer minimizes."""

    total: torch.Tensor
    key: torch.Tensor
    mouth: torch.Tensor
    eyes: torch.Tensor
    delta: torch.Tensor
    sum: torch.Tensor
    generated_keypoints: torch.Tensor = field(repr=False)

    def scalars(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach().mean()) for name in
                ("total", "key", "mouth", "eyes", "delta", "sum")}


class MeshLandmarks:
    """Runs a differentiable FaceMesh on a downsampled copy of the image.

    Why downsample: the face-landmark network looks at a 192 px region anyway; resizing a 1024
    image first (with antialiasing) costs little and keeps the backward pass small.

    Why a fixed *placement* (the FaceMesh's region of interest) during one frame's optimization:
    the landmark network is not exactly equivariant, so its landmarks move by ~0.3 px when the
    region moves, and the detector that places the region moves it by several pixels for a
    sub-pixel change of the face. With a region found afresh at every step the loss is a
    different, jittery function of the code whose true slope near the answer is dominated by
    those jumps, while autograd (regions are placement decisions, never differentiated) follows
    the smooth fixed-region function: measured on a real face, the autograd gradient pointed
    against the finite-difference one and Adam climbed away from the exact answer. A fixed
    region makes the loss smooth and its gradient exact. The region taken is the one MediaPipe
    itself would use on the driving frame (``placement``), so when the generated image equals
    the driving frame the landmarks are exactly MediaPipe's and the optimum is not biased.

    Returned landmarks (B,478,3) are in pixels of the input image.
    """

    def __init__(self, face_mesh: torch.nn.Module, input_size: int = 256) -> None:
        self.face_mesh = face_mesh
        self.input_size = int(input_size)

    def _small(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[-1]
        if size == self.input_size:
            return images
        return F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                             align_corners=False, antialias=size > self.input_size)

    @torch.no_grad()
    def placement(self, images: torch.Tensor) -> torch.Tensor:
        """images (B,3,H,W) in [-1,1] -> (B,4) FaceMesh regions, as MediaPipe would place them
        (detector, else the landmark rule), in this object's internal pixel units."""
        return self.face_mesh.find_roi((self._small(images).float() + 1.0) * 0.5)

    def __call__(self, images: torch.Tensor, placement: torch.Tensor | None = None) -> torch.Tensor:
        """images (B,3,H,W) in [-1,1] -> (B,478,3) landmarks in their pixels.

        placement: (1 or B, 4) from ``placement``; found afresh for every image when None.
        """
        if placement is not None:
            placement = placement.expand(images.shape[0], -1)
        return self.face_mesh(self._small(images), roi=placement) * (images.shape[-1] / self.input_size)


def keypoints_from_landmarks(landmarks: torch.Tensor, image_size: int) -> torch.Tensor:
    """landmarks (B,478,3) in pixels of a square image -> normalized keypoints (B,66,3), width units."""
    from optimize.keypoints import normalized_keypoints

    return normalized_keypoints(landmarks / float(image_size))


def keypoint_loss(driving_kp: torch.Tensor, generated_kp: torch.Tensor, use_z: bool = True) -> torch.Tensor:
    """Eq. 2: sum over keypoints of the L2 distance; (B,66,3) x (B,66,3) -> (B,)."""
    diff = generated_kp - driving_kp
    if not use_z:
        diff = diff[..., :2]
    # sqrt has an infinite gradient at 0: a tiny epsilon keeps identical keypoints finite.
    return torch.sqrt((diff ** 2).sum(dim=-1) + 1e-12).sum(dim=-1)


def crop_l2(crop_a: torch.Tensor, crop_b: torch.Tensor) -> torch.Tensor:
    """Eq. 3-4: the L2 norm of the difference of two crop batches (B,3,s,s) -> (B,).

    (Its gradient at identical crops is 0, not NaN: torch's norm backward masks a zero norm.)
    """
    return torch.linalg.vector_norm((crop_a - crop_b).flatten(1), dim=1)


def crop_mse(crop_a: torch.Tensor, crop_b: torch.Tensor) -> torch.Tensor:
    """Per-pixel mean squared error between two crop batches (B,3,s,s) -> (B,)."""
    return ((crop_a - crop_b) ** 2).flatten(1).mean(dim=1)


def crop_distance(crop_a: torch.Tensor, crop_b: torch.Tensor, norm: str) -> torch.Tensor:
    """The crop term named by ``LossWeights.crop_norm``: "l2" (``crop_l2``) or "mse" (``crop_mse``)."""
    if norm == "l2":
        return crop_l2(crop_a, crop_b)
    if norm == "mse":
        return crop_mse(crop_a, crop_b)
    raise ValueError(f"crop_norm must be one of {CROP_NORMS}, got {norm!r}")


class ReenactLoss:
    """Eq. 10 for a batch of generated images against one driving frame and the identity reference."""

    def __init__(self, landmarks: LandmarkFn, weights: LossWeights | None = None) -> None:
        self.landmarks = landmarks
        self.weights = weights or LossWeights()

    def driving_target(self, image: torch.Tensor, landmarks: torch.Tensor) -> FrameTarget:
        """Build a frame target from a driving crop (1,3,R,R) and its MediaPipe landmarks (1,478,3).

        The generated images of this frame will be measured with the landmark region the
        detector places on the driving crop (see ``MeshLandmarks``), when the landmark function
        supports placements.
        """
        placement_fn = getattr(self.landmarks, "placement", None)
        return FrameTarget(image=image, landmarks=landmarks,
                           keypoints=keypoints_from_landmarks(landmarks, image.shape[-1]),
                           placement=placement_fn(image) if placement_fn is not None else None)

    def __call__(self, generated: torch.Tensor, target: FrameTarget, reference: IdentityReference | None,
                 space: PersonalizedSpace | None = None, code: PPlusCode | None = None) -> LossTerms:
        """generated (B,3,R,R) in [-1,1]; target/reference hold (1,...) tensors (broadcast)."""
        from optimize.keypoints import part_crops

        w = self.weights
        batch = generated.shape[0]
        size = generated.shape[-1]
        zero = generated.new_zeros(batch)
        gen_landmarks = target.measure(self.landmarks, generated)
        gen_kp = keypoints_from_landmarks(gen_landmarks, size)
        key = keypoint_loss(target.keypoints.expand_as(gen_kp), gen_kp, w.use_z)

        mouth = zero
        if w.mouth:
            target_image = _resized(target.image, size).expand(batch, -1, -1, -1)
            target_lm = (target.landmarks * (size / target.image.shape[-1])).expand(batch, -1, -1)
            crop_d, crop_g = part_crops(target_image, target_lm, generated, gen_landmarks, "mouth", w.crop_size)
            mouth = crop_distance(crop_d, crop_g, w.crop_norm)

        eyes = zero
        if w.eyes and reference is not None:
            ref_image = _resized(reference.image, size).expand(batch, -1, -1, -1)
            ref_lm = (reference.landmarks * (size / reference.image.shape[-1])).expand(batch, -1, -1)
            eyes = zero
            for part in IRIS_PARTS:
                crop_c, crop_g = part_crops(ref_image, ref_lm, generated, gen_landmarks, part, w.crop_size)
                eyes = eyes + crop_distance(crop_c, crop_g, w.crop_norm)

        l_sum, l_delta = (zero, zero) if space is None or code is None else space.regularizers(code)
        total = key * w.key + w.mouth * mouth + w.eyes * eyes + w.delta * l_delta + w.sum * l_sum
        return LossTerms(total=total, key=key, mouth=mouth, eyes=eyes, delta=l_delta, sum=l_sum,
                         generated_keypoints=gen_kp)


def _resized(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-1] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=image.shape[-1] > size)
