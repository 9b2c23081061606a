"""The person's motion model: latent directions A with ``shift = A (p_t - p_s)`` in P+ (fast mode).

Why (issue #14; directions paper Sec. 3.1, Fig. 2): the per-frame optimizer needs tens of
generator and FaceMesh passes per driving frame; a learned map from the driving descriptor
(``optimize.pose_expression``) to a latent shift needs none, so a take costs a generator pass
or two per frame (fast mode's feedback, then the render) and the avatar can be driven live.

What is learned, for *this* person's generator and space (main paper Appendix B):

* The shift acts on P+ coefficients: ``c_r = c_s + shift`` (B, num_ws, N), ws = c_r @ anchors, so
  every result stays in the span of the anchors (the person's identity). The shift is zero-sum
  over the anchors (the coefficients keep summing to 1) and touches only the first
  ``shift_layers`` style inputs (the paper shifts StyleGAN2's first 8 layers: pose and expression
  live there, texture and colour above).
* ``kind='linear'``: the paper's matrix A, ``shift = A dp`` (no bias: no motion, no shift).
  ``kind='mlp'`` (the default): A plus a small MLP of (dp, p_s) for what A misses -- a shift
  that saturates or depends on the start, as a generator's response to its code does.

Training (self-supervised, on the generator's own samples, no data or weights from outside):

1. a pool of codes in P (sparse convex mixtures of a few anchors, plus the center of P, which is
   fast mode's source) is rendered once and measured with MediaPipe (``pool.npz``, kept for resume);
   the descriptor's rescaling to [-a, a] is estimated on it (paper: "Training details");
2. A starts at the least-squares (ridge) regression of the pool's codes on their descriptors — the
   closed-form estimate of the same directions, which the loss then refines; the MLP (whose last
   layer starts at zero, so the model starts as A) is then fitted to pairs of pool samples, whose
   shifts are known exactly (``fit_to_pool``: thousands of steps without a generator pass);
3. each step takes source codes (``center_source`` of them the center of P, the rest from the
   pool) and targets: another pool sample's p, or for ``single_attribute`` of the batch a change
   of one element of p by eps ~ U[-a, a] (the paper's 50 % single-attribute samples). The
   ground-truth keypoints are the source's face with the target's p
   (``Descriptor.synthesize_keypoints``, as the paper reconstructs S_gt from source identity and
   target pose/expression). Loss: L_key (Eq. 2 of the main paper, differentiable FaceMesh on the
   reenacted image), eye and mouth opening distances (paper Eq. 5), LPIPS to the source image
   (keeps what p does not drive), and a hinge that keeps the coefficients in P_beta (>= -beta).
   These steps train A; the fitted MLP only at ``mlp_lr`` (default 0, see there).

At the end, ``reliable_projector`` measures on the pool which directions of the code the
descriptor determines (``reliable.npz``): refine mode keeps the previous frame's code along the
others (``optimize.fast_reenact``).

Progress, cancel and resume work like the tuning's: ``checkpoints/last.pt`` every
``checkpoint_every`` steps (read back with ``weights_only=True``), the pool in ``pool.npz``;
``motion.json`` is written last, so a folder without it holds no finished model.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optimize.keypoints import keypoint_indices
from optimize.latent_space import DILATION_BETA, PersonalizedSpace
from optimize.losses import LandmarkFn, keypoint_loss, keypoints_from_landmarks
from optimize.pose_expression import Descriptor, Measurement, RigidFit, fit_descriptor
from personalize.errors import Cancelled, CheckpointError, ProjectError, UserError
from personalize.fileio import atomic_path, atomic_save_npz, atomic_write_bytes, atomic_write_json, read_json
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

MODEL_KINDS = ("linear", "mlp")
# What the training writes into its folder (the studio's model/motion/).
WEIGHTS_FILE = "motion.safetensors"
DESCRIPTOR_FILE = "descriptor.npz"
INFO_FILE = "motion.json"
POOL_FILE = "pool.npz"
RELIABLE_FILE = "reliable.npz"
LOG_FILE = "log.csv"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAME = "last.pt"
MOTION_FORMAT = 1
RELIABLE_RATIO = 10.0
"""A direction of the code is *reliable* when its spread over the pool is at least this many
times (in variance) its leave-one-out error predicted from the descriptor (``reliable_projector``):
its held-out error is then under a third of its spread."""

# Eyelid and inner-lip point pairs (MediaPipe indices, lower, upper) whose distances measure how
# open an eye or the mouth is (the directions paper's Eq. 5 pairs of upper and lower eyelids).
EYE_PAIRS = ((7, 246), (163, 161), (144, 160), (145, 159), (153, 158), (154, 157), (155, 173),
             (249, 466), (390, 388), (373, 387), (374, 386), (380, 385), (381, 384), (382, 398))
MOUTH_PAIRS = ((95, 191), (88, 80), (178, 81), (87, 82), (14, 13), (317, 312), (402, 311),
               (318, 310), (324, 415))


@dataclass(frozen=True)
class MotionLossWeights:
    """Weights of the training loss (directions paper Eq. 3-5 with the main paper's L_key)."""

    key: float = 1.0
    eyes: float = 1.0
    mouth: float = 1.0
    perceptual: float = 0.1
    """LPIPS(reenacted, source): keeps what p does not drive (paper's L_per, Sec. 3.1)."""
    hull: float = 1.0
    """Hinge on shared coefficients below -beta (P_beta, main paper Eq. 6; see ``hull_loss``)."""


@dataclass(frozen=True)
class MotionSettings:
    """Everything that shapes a motion model (part of its fingerprint)."""

    kind: str = "mlp"
    steps: int = 1500
    """Training steps after the regression start (0: the regression alone). On the stand-in
    (``bench/fastmode.py --product-training --quality-device cuda``:
    seven MLP models, no perceptual term, one H200) the 1500 steps left the MLP's held-out
    keypoint error where its fit to the pool put it (0.167-0.224 px, -0.001 to +0.006 px); they
    train A alone there (``mlp_lr``). Yet they helped the takes: with them
    (``bench/fastmode.py --product-training``, seed 3, 2-core CPU) fast measured 1.27x of the exact
    mode's keypoint error and refine 0.86x, without them (``--train-steps 0``) 1.45x and 0.91x.
    Nothing has measured them on a real generator, whose training adds the perceptual term."""
    batch: int = 8
    lr: float = 1e-3
    """Adam step size on A in unit-scale coefficients (uniform coefficient = 1)."""
    mlp_lr: float = 0.0
    """Adam step size on the MLP in the keypoint training (it is fitted to the pool at ``lr``
    first). 0: the keypoint steps train A alone. Why: their ground truth is synthesized by the
    descriptor's shape model (k PCA components), coarser than the pool's exact codes; on
    ``bench/fastmode.py``'s clip, 100 keypoint steps on the fitted MLP took fast mode's error from
    1.4-1.7x the exact mode's to 1.8-2.2x at 1e-4, while training A alone kept it at 1.6x (ratios
    to the exact mode's 0.057-0.060 px, whose unconverged first frames flatter them 2x;
    ``ReenactSettings.first_steps``)."""
    pool: int = 512
    """Generated samples measured once (the paper estimates p's ranges on 10K; 512 on a CPU)."""
    max_mix: int = 3
    """A pool code mixes 1..max_mix anchors (a single anchor is a real self-scan pose/expression;
    mixing many would average them away)."""
    shift_layers: int = 8
    single_attribute: float = 0.5
    center_source: float = 0.25
    """Share of sources that are the center of P, fast mode's source. Why not all of them, though
    every mode predicts from the center: the other sources' pairs teach the model more of the
    generator's response (on ``bench/fastmode.py``'s clip, fast mode's keypoint error 0.126 px with
    every source the center, 0.0885 px at 0.25; the exact mode's 0.030 px)."""
    a: float = 1.0
    components: int = 12
    hidden: int = 256
    """MLP width (64 / 512 measured 0.108 / 0.095 px on that clip, 256 0.0885 px)."""
    fit_steps: int = 10000
    """MLP only: steps fitting it to the pool before the keypoint training (``fit_to_pool``);
    2 000 / 30 000 measured 0.131 / 0.112 px on that clip (seed-to-seed spread about +-0.02 px)."""
    fit_batch: int = 256
    mesh_input: int = 256
    ridge: float = 1e-3
    checkpoint_every: int = 50
    seed: int = 0
    """Draws the pool's codes, the MLP's start, its fit's and the training's batches: one seed, one model."""
    weights: MotionLossWeights = field(default_factory=MotionLossWeights)

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise UserError(f"Unknown motion model kind '{self.kind}'.", f"Use {' or '.join(MODEL_KINDS)}.")
        if self.steps < 0 or self.fit_steps < 0 or self.batch < 1 or self.fit_batch < 1:
            raise UserError("Steps must be 0 or more and the batch at least 1.")
        if self.pool < 16:
            raise UserError(f"The sample pool must hold at least 16 samples (got {self.pool}).")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"The learning rate must be a positive number (got {self.lr}).", "Try 0.001.")

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with its checkpoint (``steps`` may grow)."""
        d = asdict(self)
        d.pop("steps")
        d.pop("checkpoint_every")
        return d


# ------------------------------------------------------------------------------ the model
class MotionModel(nn.Module):
    """(dp_hat (B,d), p_hat_source (B,d)) -> P+ coefficient shift (B, layers, N), zero-sum over N.

    Weights are in unit scale (the shift times N), as the optimizer's codes (``latent_space``).
    """

    def __init__(self, dim: int, n_anchors: int, layers: int, kind: str = "linear", hidden: int = 256) -> None:
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.dim, self.n_anchors, self.layers, self.kind = int(dim), int(n_anchors), int(layers), kind
        self.directions = nn.Linear(dim, layers * n_anchors, bias=False)   # A
        nn.init.zeros_(self.directions.weight)
        self.mlp: nn.Module | None = None
        if kind == "mlp":
            last = nn.Linear(hidden, layers * n_anchors)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                     nn.SiLU(), last)

    def forward(self, dp_hat: torch.Tensor, p_hat_source: torch.Tensor) -> torch.Tensor:
        out = self.directions(dp_hat)
        if self.mlp is not None:
            # no motion, no shift: the MLP's share is scaled by how far the target is
            gate = dp_hat.abs().amax(dim=1, keepdim=True).clamp(max=1.0)
            out = out + gate * self.mlp(torch.cat([dp_hat, p_hat_source], dim=1))
        shift = out.view(-1, self.layers, self.n_anchors) / self.n_anchors
        return shift - shift.mean(dim=2, keepdim=True)

    def config(self) -> dict[str, Any]:
        hidden = self.mlp[0].out_features if self.mlp is not None else 0  # type: ignore[index]
        return {"dim": self.dim, "n_anchors": self.n_anchors, "layers": self.layers,
                "kind": self.kind, "hidden": hidden}


def apply_shift(source: torch.Tensor, shift: torch.Tensor, num_ws: int) -> torch.Tensor:
    """source coefficients (B,N) or (B,num_ws,N) + shift (B,layers,N) on the first layers -> (B,num_ws,N)."""
    if source.ndim == 2:
        source = source[:, None, :].expand(-1, num_ws, -1)
    layers = min(shift.shape[1], num_ws)
    pad = source.new_zeros(source.shape[0], num_ws - layers, source.shape[2])
    return source + torch.cat([shift[:, :layers], pad], dim=1)


# ------------------------------------------------------------------------------ losses
def _pair_rows(pairs: tuple[tuple[int, int], ...]) -> tuple[list[int], list[int]]:
    where = {index: row for row, index in enumerate(keypoint_indices())}
    return [where[a] for a, _ in pairs], [where[b] for _, b in pairs]


def opening_loss(target_kp: torch.Tensor, generated_kp: torch.Tensor,
                 pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Directions paper Eq. 5: L1 between the pairs' distances in two keypoint sets (B,66,3) -> (B,).

    Distances inside one part do not depend on how the part was normalized.
    """
    lower, upper = _pair_rows(pairs)

    def distances(kp: torch.Tensor) -> torch.Tensor:
        return (kp[:, lower, :2] - kp[:, upper, :2]).norm(dim=-1)

    return (distances(generated_kp) - distances(target_kp)).abs().sum(dim=1)


def hull_loss(coefficients: torch.Tensor, beta: float = DILATION_BETA) -> torch.Tensor:
    """(B, L, N) -> (B,): how far the coefficients shared by the layers (their mean, P+'s alpha~)
    fall below -beta, summed over the anchors.

    Why the mean and not every layer: in P+ only alpha~ is bounded (Eq. 6-7); the per-layer
    offsets Delta_l are free apart from their norm. A shift that leaves the dilated hull makes
    the generator extrapolate (artifacts, another identity); inside it the face stays the person's.
    """
    return F.relu(-beta - coefficients.mean(dim=1)).sum(dim=1)


# ------------------------------------------------------------------------------ the sample pool
@dataclass
class SamplePool:
    """Codes in P (S, N) rendered once; MediaPipe landmarks (S,478,3) in pixels of the
    ``image_size`` images; valid (S,) where a face was found. Row 0 is the center of P."""

    codes: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    image_size: int
    key: str

    def save(self, path: Path) -> None:
        atomic_save_npz(path, codes=self.codes, landmarks=self.landmarks, valid=self.valid,
                        image_size=np.array(self.image_size), key=np.array(self.key))

    @classmethod
    def load(cls, path: Path, key: str) -> "SamplePool | None":
        """The pool at ``path`` when it was made for ``key``; None otherwise (or unreadable)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                return cls(data["codes"], data["landmarks"], data["valid"], int(data["image_size"]), key)
        except (OSError, KeyError, ValueError):
            return None


def sample_codes(n_anchors: int, count: int, max_mix: int, generator: torch.Generator) -> torch.Tensor:
    """(count, N) coefficients in P: row 0 the center, the others mixtures of 1..max_mix anchors
    (random anchors, Dirichlet(1) weights)."""
    codes = torch.zeros(count, n_anchors)
    codes[0] = 1.0 / n_anchors
    for i in range(1, count):
        m = int(torch.randint(1, min(max_mix, n_anchors) + 1, (1,), generator=generator))
        chosen = torch.randperm(n_anchors, generator=generator)[:m]
        weights = -torch.log(torch.rand(m, generator=generator).clamp_min(1e-12))  # Exp(1) = Gamma(1)
        codes[i, chosen] = weights / weights.sum()
    return codes


def build_pool(generator: nn.Module, space: PersonalizedSpace, settings: MotionSettings, key: str,
               device: torch.device, progress: ProgressFn, cancel: CancelToken, batch: int = 8) -> SamplePool:
    """Render ``settings.pool`` codes and find their landmarks with MediaPipe (as driving crops are)."""
    from optimize.driving import detect_crop_landmarks, tensor_to_uint8

    codes = sample_codes(space.n_anchors, settings.pool, settings.max_mix,
                         torch.Generator().manual_seed(settings.seed))
    size = int(generator.img_resolution)
    landmarks = np.zeros((settings.pool, 478, 3), np.float32)
    valid = np.zeros(settings.pool, bool)
    with torch.no_grad():
        for start in range(0, settings.pool, batch):
            cancel.check()
            part = codes[start:start + batch].to(device)
            images = tensor_to_uint8(generator.synthesis(space.coefficients_to_ws(part), noise_mode="const"))
            lm, ok = detect_crop_landmarks(images.__getitem__, len(images))
            landmarks[start:start + len(images)] = lm
            valid[start:start + len(images)] = ok
            progress(min(start + batch, settings.pool), settings.pool, "motion model: measuring samples")
    return SamplePool(codes.numpy(), landmarks, valid, size, key)


def _select(measurement: Measurement, index: torch.Tensor) -> Measurement:
    fit = measurement.fit
    return Measurement(measurement.pose[index], measurement.expression[index], measurement.frontal[index],
                       RigidFit(fit.rotation[index], fit.scale[index], fit.translation[index]))


def ridge_directions(codes: torch.Tensor, p_hat: torch.Tensor, ridge: float) -> torch.Tensor:
    """Least squares ``codes - mean ~ (p_hat - mean) W``: (S,N), (S,d) -> W (d, N), zero-sum rows."""
    x = p_hat.double() - p_hat.double().mean(dim=0)
    y = codes.double() - codes.double().mean(dim=0)
    gram = x.T @ x
    lam = ridge * torch.trace(gram) / max(1, gram.shape[0])
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device), x.T @ y)
    return (w - w.mean(dim=1, keepdim=True)).float()


def _quadratic_features(p_hat: torch.Tensor) -> torch.Tensor:
    """(S,d) -> (S, 1 + d + d(d+1)/2): a constant, the centered descriptor and its products."""
    z = p_hat - p_hat.mean(dim=0)
    rows, cols = torch.triu_indices(z.shape[1], z.shape[1])
    return torch.cat([torch.ones_like(z[:, :1]), z, z[:, rows] * z[:, cols]], dim=1)


def reliable_projector(codes: torch.Tensor, p_hat: torch.Tensor, ratio: float = RELIABLE_RATIO,
                       ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Which directions of the code the descriptor determines: codes (S,N) and rescaled
    descriptors p_hat (S,d) of the pool -> (projector K (N,N), ratios (N-1,) ascending).

    Why (refine mode, ``optimize.fast_reenact``): some changes of the code barely show in the
    descriptor (on the stand-in, the blend towards the open-mouth face: a quadratic regression on
    p predicts it to 0.12 of a spread of 0.41, against 0.02-0.10 of 0.6-1.6 for head position,
    roll and mouth stretch). The motion model's guess along such a direction is mostly its bias,
    and the closed loop cannot correct it (the descriptor does not see the miss); a take does
    better keeping it from the previous frame, as the exact mode's warm start does.

    How: a ridge regression of the codes on quadratic features of p, its exact leave-one-out
    residuals (hat-matrix formula, no refits) give the error covariance E, the pool's code
    covariance is S; the generalized eigenvectors V of (S, E) in the zero-sum subspace (codes
    sum to 1; V^T E V = I) order directions by spread / held-out error. K = E V_r V_r^T with V_r
    those whose ratio is at least ``ratio``: the Kalman gain q S (q S + E)^-1 = E V diag(g) V^T
    with each g set to 1 or 0, so what K drops from a change lies along the descriptor's error
    (K @ K = K, zero-sum in and out). Float64 inside.
    """
    import scipy.linalg

    c = codes.double().cpu()
    x = _quadratic_features(p_hat.double().cpu())
    n_samples, n = c.shape
    penalty = ridge * n_samples * torch.eye(x.shape[1], dtype=torch.float64)
    penalty[0, 0] = 0.0                                         # the constant is not shrunk
    gram_inv = torch.linalg.inv(x.T @ x + penalty)
    leverage = ((x @ gram_inv) * x).sum(dim=1).clamp(max=1 - 1e-6)
    residual = (c - x @ (gram_inv @ (x.T @ c))) / (1 - leverage)[:, None]
    basis = torch.linalg.svd(torch.eye(n, dtype=torch.float64) - 1.0 / n).U[:, :n - 1]  # zero-sum
    spread = basis.T @ torch.cov(c.T).reshape(n, n) @ basis
    error = basis.T @ (residual.T @ residual / n_samples) @ basis
    error = error + 1e-9 * (float(torch.trace(error)) / max(1, n - 1) + 1e-12) * torch.eye(n - 1, dtype=torch.float64)
    ratios, vectors = scipy.linalg.eigh(spread.numpy(), error.numpy())   # V.T error V = I
    v = torch.from_numpy(vectors)[:, torch.from_numpy(ratios >= ratio)]
    projector = basis @ (error @ v @ v.T) @ basis.T
    return projector.float(), torch.from_numpy(ratios).float()


def fit_to_pool(model: MotionModel, codes: torch.Tensor, p_hat: torch.Tensor, settings: MotionSettings,
                rng: torch.Generator, center: bool = True, progress: ProgressFn = no_progress,
                cancel: CancelToken = NEVER_CANCELLED) -> None:
    """Fit ``model`` (A and the MLP) to pairs of pool samples: ``model(p_t - p_s, p_s) ~ c_t - c_s``.

    codes (S,N) and rescaled descriptors p_hat (S,d) of the pool's valid samples, row 0 the
    center of P when ``center``. Why: the MLP's counterpart of A's ridge start -- the same pairs
    the keypoint loss trains on, but with the answer known, so thousands of steps cost no
    generator pass. Started at zero, the MLP needs far more keypoint steps than the training
    gets to catch up with the linear start (on ``bench/fastmode.py``'s clip it stayed 1.5-1.6x
    worse after 100); fitted first, it learns the saturation A cannot (fast error 1.4-1.7x the
    exact mode's 0.057-0.060 px over five runs, against 2.15-2.25x for A; 2.9-3.9x its 0.030 px
    with a converged first frame, ``ReenactSettings.first_steps``). Sources are the center for ``center_source`` of the
    pairs, as in the keypoint training. Squared error in unit scale (uniform coefficient = 1).
    """
    s = settings
    n = codes.shape[1]
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    model.train()
    for step in range(s.fit_steps):
        if step % 100 == 0:
            cancel.check()
            progress(step, s.fit_steps, "motion model: fitting the MLP to the samples")
        source = torch.randint(len(codes), (s.fit_batch,), generator=rng)
        if center:
            source = torch.where(torch.rand(s.fit_batch, generator=rng) < s.center_source, 0, source)
        target = torch.randint(len(codes), (s.fit_batch,), generator=rng)
        source, target = source.to(codes.device), target.to(codes.device)
        shift = model(p_hat[target] - p_hat[source], p_hat[source])
        loss = ((shift - (codes[target] - codes[source])[:, None]) * n).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


# ------------------------------------------------------------------------------ the trained model
@dataclass
class MotionModelFiles:
    """A finished motion model as read back: network, descriptor, and its record (motion.json)."""

    model: MotionModel
    descriptor: Descriptor
    info: dict[str, Any]
    reliable: torch.Tensor | None = None
    """(N,N) projector onto the code directions the descriptor determines (``reliable_projector``);
    None for a model trained before it existed (refine then takes every direction from the model)."""

    @property
    def source_p(self) -> torch.Tensor:
        """(1, d) raw descriptor of the center of P (fast mode's source)."""
        return torch.tensor([self.info["source_p"]], dtype=torch.float32)

    @property
    def model_id(self) -> str:
        return str(self.info["model_id"])


def save_motion_model(folder: Path, model: MotionModel, descriptor: Descriptor, info: dict[str, Any],
                      reliable: torch.Tensor | None = None) -> None:
    """Write the network (safetensors), the descriptor, the reliable-direction projector and,
    last, ``motion.json``."""
    from safetensors.torch import save as save_tensors

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save_tensors(state)
    atomic_write_bytes(folder / WEIGHTS_FILE, data)
    descriptor.save(folder / DESCRIPTOR_FILE)
    digest = hashlib.sha256(data + json.dumps(info, sort_keys=True, default=str).encode())
    if reliable is not None:
        projector = reliable.detach().cpu().float().numpy()
        atomic_save_npz(folder / RELIABLE_FILE, projector=projector)
        digest.update(projector.tobytes())
    model_id = digest.hexdigest()[:16]
    atomic_write_json(folder / INFO_FILE, {**info, "format": MOTION_FORMAT, "model": model.config(),
                                           "model_id": model_id})


def load_motion_model(folder: Path, device: torch.device | str = "cpu") -> MotionModelFiles:
    """Read a finished motion model; ProjectError (train it again) when missing or damaged."""
    from safetensors.torch import load_file

    info_path = Path(folder) / INFO_FILE
    if not info_path.is_file():
        raise ProjectError("This project has no motion model yet (fast and refine modes and live "
                           "driving need it).", "Train the motion model first.")
    try:
        info = read_json(info_path)
        if int(info.get("format", -1)) != MOTION_FORMAT:
            raise ValueError("written by another studio version")
        cfg = info["model"]
        model = MotionModel(cfg["dim"], cfg["n_anchors"], cfg["layers"], cfg["kind"], cfg["hidden"] or 256)
        model.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ProjectError(f"The motion model in {folder} is unreadable ({exc}).",
                           "Train the motion model again.") from exc
    descriptor = Descriptor.load(Path(folder) / DESCRIPTOR_FILE)
    reliable = None
    if (Path(folder) / RELIABLE_FILE).is_file():
        try:
            with np.load(Path(folder) / RELIABLE_FILE, allow_pickle=False) as data:
                reliable = torch.from_numpy(data["projector"]).float().to(device)
        except (OSError, KeyError, ValueError) as exc:
            raise ProjectError(f"The motion model in {folder} is unreadable ({exc}).",
                               "Train the motion model again.") from exc
        if reliable.shape != (model.n_anchors, model.n_anchors):
            raise ProjectError(f"The motion model in {folder} is damaged (its {RELIABLE_FILE} does not fit).",
                               "Train the motion model again.")
    return MotionModelFiles(model.to(device).eval().requires_grad_(False), descriptor.to(device), info, reliable)


# ------------------------------------------------------------------------------ training
@dataclass
class MotionTrainingResult:
    files: MotionModelFiles
    steps_done: int
    resumed_from: int
    log: list[dict[str, float]]
    seconds: float


def _fingerprint(settings: MotionSettings, generator_id: str, anchors: np.ndarray,
                 scan_landmarks: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(settings.fingerprint(), sort_keys=True).encode())
    digest.update(generator_id.encode())
    digest.update(np.ascontiguousarray(anchors, np.float32).tobytes())
    digest.update(np.ascontiguousarray(scan_landmarks, np.float32).tobytes())
    return digest.hexdigest()


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    names = ["step", "loss", "key", "eyes", "mouth", "perceptual", "hull"]
    lines = [",".join(names)] + [",".join(f"{row.get(n, float('nan')):.6g}" for n in names) for row in rows]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


class _Trainer:
    """One training run's state (kept together so checkpoints and evaluation see the same things)."""

    def __init__(self, generator: nn.Module, space: PersonalizedSpace, descriptor: Descriptor,
                 pool: SamplePool, settings: MotionSettings, landmarks: LandmarkFn,
                 lpips_model: nn.Module | None, device: torch.device) -> None:
        self.generator, self.space, self.settings = generator, space, settings
        self.landmarks, self.lpips, self.device = landmarks, lpips_model, device
        self.valid = torch.from_numpy(np.flatnonzero(pool.valid))
        self.codes = torch.from_numpy(pool.codes).float().to(device)
        self.descriptor = descriptor.to(device)
        self.measurement = self.descriptor.measure(torch.from_numpy(pool.landmarks), pool.image_size)
        self.p = self.measurement.p
        self.p_hat = self.descriptor.rescale(self.p)
        self.size = int(generator.img_resolution)
        self.center_valid = bool(pool.valid[0])

    def sample(self, batch: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source indices (B,), target raw p (B,d), single-attribute mask (B,))."""
        s = self.settings
        pick = self.valid[torch.randint(len(self.valid), (batch,), generator=rng)]
        center = torch.rand(batch, generator=rng) < s.center_source
        source = torch.where(center & self.center_valid, torch.zeros_like(pick), pick)
        target = self.valid[torch.randint(len(self.valid), (batch,), generator=rng)]
        p_t_hat = self.p_hat[target.to(self.p_hat.device)].clone()
        single = torch.rand(batch, generator=rng) < s.single_attribute
        if bool(single.any()):
            element = torch.randint(self.descriptor.dim, (batch,), generator=rng)
            eps = (torch.rand(batch, generator=rng) * 2 - 1) * s.a
            delta = torch.zeros(batch, self.descriptor.dim)
            delta[torch.arange(batch), element] = eps
            single_t = self.p_hat[source.to(self.p_hat.device)] + delta.to(self.p_hat)
            p_t_hat = torch.where(single[:, None].to(p_t_hat.device), single_t, p_t_hat)
        return source, self.descriptor.unscale(p_t_hat), single

    def losses(self, model: MotionModel, source: torch.Tensor, p_target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term (B,) for reenacting ``source`` pool samples towards raw descriptors ``p_target``."""
        w = self.settings.weights
        src = source.to(self.device)
        p_s_hat = self.p_hat[src]
        dp_hat = self.descriptor.rescale(p_target) - p_s_hat
        coefficients = apply_shift(self.codes[src], model(dp_hat, p_s_hat), self.space.num_ws)
        image = self.generator.synthesis(self.space.coefficients_to_ws(coefficients), noise_mode="const")
        generated = keypoints_from_landmarks(self.landmarks(image), self.size)
        truth = self.descriptor.synthesize_keypoints(_select(self.measurement, src), p_target)
        zero = generated.new_zeros(generated.shape[0])
        terms = {"key": keypoint_loss(truth, generated),
                 "eyes": opening_loss(truth, generated, EYE_PAIRS) if w.eyes else zero,
                 "mouth": opening_loss(truth, generated, MOUTH_PAIRS) if w.mouth else zero,
                 "hull": hull_loss(coefficients) if w.hull else zero,
                 "perceptual": zero}
        if w.perceptual and self.lpips is not None:
            with torch.no_grad():
                source_image = self.generator.synthesis(
                    self.space.coefficients_to_ws(self.codes[src]), noise_mode="const")
            terms["perceptual"] = self.lpips(_lpips_size(image), _lpips_size(source_image)).reshape(-1)
        terms["loss"] = (w.key * terms["key"] + w.eyes * terms["eyes"] + w.mouth * terms["mouth"]
                         + w.perceptual * terms["perceptual"] + w.hull * terms["hull"])
        return terms

    @torch.no_grad()
    def evaluate(self, model: MotionModel, pairs: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Mean keypoint distance (crop-width units x crop size = pixels) on fixed held-out pairs."""
        source, p_target = pairs
        src = source.to(self.device)
        p_s_hat = self.p_hat[src]
        coefficients = apply_shift(self.codes[src], model(self.descriptor.rescale(p_target) - p_s_hat, p_s_hat),
                                   self.space.num_ws)
        image = self.generator.synthesis(self.space.coefficients_to_ws(coefficients), noise_mode="const")
        generated = keypoints_from_landmarks(self.landmarks(image), self.size)
        truth = self.descriptor.synthesize_keypoints(_select(self.measurement, src), p_target)
        return float((generated[..., :2] - truth[..., :2]).norm(dim=-1).mean()) * self.size


def _lpips_size(images: torch.Tensor, size: int = 256) -> torch.Tensor:
    if images.shape[-1] <= size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def train_motion_model(generator: nn.Module, anchors: np.ndarray, scan_landmarks: np.ndarray,
                       scan_size: int, work_dir: Path, settings: MotionSettings = MotionSettings(), *,
                       landmarks: LandmarkFn | None = None, lpips_model: nn.Module | None = None,
                       generator_id: str = "", device: torch.device | str = "cpu",
                       progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED
                       ) -> MotionTrainingResult:
    """Learn the person's motion model and write it into ``work_dir``; resumes from its checkpoint.

    generator: the personalized generator (``synthesis``, ``num_ws``, ``img_resolution``), frozen;
    anchors (N, w_dim); scan_landmarks (T,478,3): MediaPipe landmarks of the selected self-scan
    crops (side ``scan_size`` px), for the descriptor's frontal reference and expression PCA;
    landmarks: the differentiable landmark function (default the FaceMesh); lpips_model: the
    perceptual metric (None leaves the perceptual term out). ``Cancelled`` after saving.
    """
    settings.validate()
    started = time.perf_counter()
    device = torch.device(device)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    anchors = np.asarray(anchors, np.float32)
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    if landmarks is None:
        from optimize.reenact import mesh_landmarks
        from optimize.reenact_settings import ReenactSettings

        landmarks = mesh_landmarks(device, int(generator.img_resolution),
                                   replace(ReenactSettings(), mesh_input=settings.mesh_input))
    key = _fingerprint(settings, generator_id, anchors, scan_landmarks)

    pool = SamplePool.load(work_dir / POOL_FILE, key)
    if pool is None:
        pool = build_pool(generator, space, settings, key, device, progress, cancel)
        pool.save(work_dir / POOL_FILE)
    if int(pool.valid.sum()) < 8:
        raise UserError(f"MediaPipe found a face in only {int(pool.valid.sum())} of {settings.pool} samples "
                        "of the personalized generator.",
                        "Check the generator's previews; personalize it again if they show no face.")
    descriptor = fit_descriptor(scan_landmarks, scan_size, settings.components, a=settings.a)
    raw = descriptor.measure(torch.from_numpy(pool.landmarks[pool.valid]), pool.image_size).p
    descriptor.set_range(raw)

    trainer = _Trainer(generator, space, descriptor, pool, settings, landmarks, lpips_model, device)
    # The MLP's hidden layers start from torch's default random init: drawn from the seed, not from
    # the process's global state, so a seed gives one model (a bench's seeds compare models, not runs).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed + 4)
        model = MotionModel(descriptor.dim, space.n_anchors, min(settings.shift_layers, space.num_ws),
                            settings.kind, settings.hidden).to(device)
    with torch.no_grad():
        valid = trainer.valid.to(device)
        w0 = ridge_directions(trainer.codes[valid], trainer.p_hat[valid], settings.ridge)  # (d, N)
        model.directions.weight.copy_((w0 * space.n_anchors).T.repeat(model.layers, 1))
    groups = [{"params": model.directions.parameters(), "lr": settings.lr}]
    if model.mlp is not None:
        groups.append({"params": model.mlp.parameters(), "lr": settings.mlp_lr})
    optimizer = torch.optim.Adam(groups)
    rng = torch.Generator().manual_seed(settings.seed + 1)
    held_out = trainer.sample(min(32, 4 * settings.batch), torch.Generator().manual_seed(settings.seed + 2))[:2]

    ckpt = work_dir / CHECKPOINTS_DIR / CHECKPOINT_NAME
    step, rows = 0, []
    state = _load_checkpoint(ckpt) if ckpt.is_file() else {}
    if state.get("key") != key:
        if model.mlp is not None and settings.fit_steps:
            fit_to_pool(model, trainer.codes[valid], trainer.p_hat[valid], settings,
                        torch.Generator().manual_seed(settings.seed + 3), trainer.center_valid, progress, cancel)
        start_error = trainer.evaluate(model, held_out)
    else:
        start_error = float(state.get("start_error", float("nan")))
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"The motion checkpoint {ckpt} does not fit ({exc}).",
                                  "Delete it to train the motion model from the start.") from exc
        rng.set_state(state["rng"])
        step = int(state["step"])
        rows = [dict(zip(("step", "loss", "key", "eyes", "mouth", "perceptual", "hull"), r)) for r in state["log"]]
    resumed_from = step

    def checkpoint_now() -> None:
        payload = {"key": key, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "rng": rng.get_state(), "start_error": start_error,
                   "log": [[r[n] for n in ("step", "loss", "key", "eyes", "mouth", "perceptual", "hull")]
                           for r in rows]}
        with atomic_path(ckpt) as tmp:
            torch.save(payload, tmp)
        _write_log(work_dir / LOG_FILE, rows)

    model.train()
    try:
        while step < settings.steps:
            cancel.check()
            source, p_target, _ = trainer.sample(settings.batch, rng)
            terms = trainer.losses(model, source, p_target)
            loss = terms["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            rows.append({"step": float(step), **{k: float(v.detach().mean()) for k, v in terms.items()}})
            if step % settings.checkpoint_every == 0:
                checkpoint_now()
            progress(step, settings.steps, f"motion model: loss {rows[-1]['loss']:.4f}")
    except Cancelled:
        checkpoint_now()
        raise
    except torch.cuda.OutOfMemoryError as exc:
        raise UserError(f"The GPU ran out of memory training the motion model with a batch of {settings.batch}.",
                        f"Use a smaller batch, e.g. {max(1, settings.batch // 2)}; progress so far is kept.") from exc
    if step > resumed_from or not ckpt.is_file():
        checkpoint_now()
    model.eval()
    trained_error = trainer.evaluate(model, held_out)
    source_p = trainer.p[0] if bool(pool.valid[0]) else descriptor.unscale(torch.zeros(descriptor.dim))
    reliable, ratios = reliable_projector(trainer.codes[valid], trainer.p_hat[valid])
    info = {"settings": asdict(settings), "key": key, "generator_id": generator_id,
            "n_anchors": space.n_anchors, "num_ws": space.num_ws, "resolution": int(generator.img_resolution),
            "descriptor": {"names": descriptor.names(), "explained": descriptor.explained.tolist()},
            "source": "center", "source_p": [float(v) for v in source_p.cpu()],
            "pool_valid": int(pool.valid.sum()), "steps": step,
            "reliable_directions": {"kept": int((ratios >= RELIABLE_RATIO).sum()), "of": int(len(ratios)),
                                    "ratios": [round(float(r), 2) for r in ratios]},
            "held_out_keypoint_px": {"regression": round(start_error, 4), "trained": round(trained_error, 4)},
            "perceptual": lpips_model is not None and settings.weights.perceptual > 0,
            "seconds": round(time.perf_counter() - started, 1)}
    save_motion_model(work_dir, model.cpu(), descriptor, info, reliable)
    files = load_motion_model(work_dir, device)
    return MotionTrainingResult(files, step, resumed_from, rows, time.perf_counter() - started)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise CheckpointError(f"The motion checkpoint {path} is unreadable ({exc}).",
                              "Delete it to train the motion model from the start.") from exc


__all__ = ["MODEL_KINDS", "MotionSettings", "MotionLossWeights", "MotionModel", "MotionModelFiles",
           "MotionTrainingResult", "SamplePool", "apply_shift", "train_motion_model", "load_motion_model",
           "save_motion_model", "opening_loss", "hull_loss", "ridge_directions", "reliable_projector",
           "sample_codes", "RELIABLE_RATIO", "RELIABLE_FILE", "WEIGHTS_FILE", "DESCRIPTOR_FILE", "INFO_FILE", "POOL_FILE", "LOG_FILE", "CHECKPOINTS_DIR"]
