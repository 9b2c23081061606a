"""Learn an InterFaceGAN direction for *this* personalized generator.

Why learn instead of import: published FFHQ directions were found on the pretrained generator's
whole W space; after personalization only P (the anchors' convex hull) renders the person, and a
generic direction may leave P (see ``directions.project_direction``'s reliability). Learning on
samples drawn from P gives a direction that lives in the person's space by construction.

Recipe (InterFaceGAN, Shen et al. 2020, adapted): sample codes in P (convex combinations of the
anchors), render them, score each image with an attribute measure (``editing.attributes``: landmark
geometry, or CLIP zero-shot for age), keep the top and bottom ``quantile`` as positive/negative
examples, fit a linear classifier (L2-regularized logistic regression) and take its unit normal as
the direction, oriented so that moving along it increases the attribute. Accuracy is measured on a
held-out split that the classifier never saw.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from editing.attributes import ATTRIBUTES, ImageLandmarker, LANDMARK_ATTRIBUTES, clip_age_scores, measure
from editing.directions import Direction, reliability
from personalize.errors import Action, MissingWeightsError, UserError
from personalize.fileio import atomic_save_npz
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.pspace import sample_convex

Scorer = Callable[[torch.Tensor], np.ndarray]
"""(N, 3, H, W) images in [-1, 1] -> (N,) float scores, NaN where an image cannot be scored."""


@dataclass
class LearnedDirection:
    direction: Direction
    accuracy: float          # held-out accuracy on top/bottom-quantile samples
    n_samples: int
    n_scored: int            # samples with a finite score (a face was found)
    n_train: int
    n_test: int
    seconds: float


# --------------------------------------------------------------------------- scorers
def landmark_scorer(attribute: str, landmarker: Callable[[torch.Tensor], np.ndarray] | None = None,
                    score_size: int = 256) -> tuple[Scorer, Callable[[], None]]:
    """A scorer from MediaPipe landmarks (images are downsampled to ``score_size`` first: enough for
    the face mesh and much faster than 1024 px). Returns (scorer, close)."""
    if attribute not in LANDMARK_ATTRIBUTES:
        raise UserError(f"'{attribute}' has no landmark measure.", f"Choose one of {', '.join(LANDMARK_ATTRIBUTES)}.")
    owned = landmarker is None
    detector = ImageLandmarker() if owned else landmarker

    def score(images: torch.Tensor) -> np.ndarray:
        if images.shape[-1] > score_size:
            images = F.interpolate(images.float(), size=(score_size, score_size), mode="area")
        return measure(attribute, detector(images))

    def close() -> None:
        if owned:
            detector.close()

    return score, close


def clip_age_scorer(clip_model) -> Scorer:
    """Age score P("old") from CLIP zero-shot; ``clip_model`` must be real CLIP weights."""
    return lambda images: clip_age_scores(clip_model, images)


# --------------------------------------------------------------------------- sampling and rendering
def sample_codes(anchors: torch.Tensor | np.ndarray, n: int, seed: int = 0,
                 concentration: float = 0.3) -> torch.Tensor:
    """(n, w_dim) random codes in P. Dirichlet concentration < 1 favours points near single anchors
    and along the hull's edges; with 1 and hundreds of anchors nearly every sample would sit at the
    hull's center and the attribute would barely vary."""
    generator = torch.Generator().manual_seed(int(seed))
    return sample_convex(torch.as_tensor(np.asarray(anchors), dtype=torch.float32), n, generator=generator,
                         concentration=concentration)


@torch.no_grad()
def render_codes(G: torch.nn.Module, codes: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, w_dim) W codes -> (B, 3, R, R) images in [-1, 1] (every layer gets the same code)."""
    ws = codes.to(device).unsqueeze(1).repeat(1, int(G.num_ws), 1)
    return G.synthesis(ws, noise_mode="const").float().clamp(-1, 1).cpu()


def score_codes(G: torch.nn.Module, codes: torch.Tensor, scorer: Scorer, batch_size: int = 8,
                device: torch.device | str = "cpu", done_scores: np.ndarray | None = None,
                checkpoint: Callable[[np.ndarray, int], None] | None = None,
                progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> np.ndarray:
    """Render and score every code; (n,) float64 with NaN where no score. Resumes after the first
    ``len(done_scores)`` codes; ``checkpoint(scores, n_done)`` is called after each batch."""
    n = codes.shape[0]
    scores = np.full(n, np.nan)
    start = 0
    if done_scores is not None and len(done_scores):
        start = min(n, len(done_scores))
        scores[:start] = done_scores[:start]
    for i in range(start, n, batch_size):
        cancel.check()
        batch = codes[i:i + batch_size]
        scores[i:i + len(batch)] = scorer(render_codes(G, batch, device))
        done = i + len(batch)
        if checkpoint is not None:
            checkpoint(scores, done)
        progress(done, n, "rendering and scoring samples")
    return scores


# --------------------------------------------------------------------------- the linear boundary
def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, max_iter: int = 50
                 ) -> tuple[torch.Tensor, float, torch.Tensor, float]:
    """L2-regularized logistic regression fitted by Newton's method (IRLS), float64.

    ``x`` (n, d) features, ``y`` (n,) in {0, 1}. Features are centered and divided by one global
    scale (isotropic, so the boundary's normal keeps its direction in W). The penalty
    ``l2 * |w|^2`` keeps the fit finite on separable data and keeps the normal in the span of the
    samples (so a direction learned in P stays in P). Newton steps on d <= 512 unknowns are cheap
    and converge in a few iterations, with no optimizer state.
    Returns (unit normal (d,) in W, bias in standardized units, center (d,), scale).
    """
    x = x.double()
    y = y.double()
    center = x.mean(dim=0)
    scale = float((x - center).pow(2).sum(dim=1).mean().sqrt()) or 1.0
    z = torch.cat([(x - center) / scale, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)  # bias column
    n, d1 = z.shape
    reg = torch.full((d1,), 2.0 * l2, dtype=torch.float64)
    reg[-1] = 1e-9  # the bias is not penalized (tiny ridge for a well-posed Hessian)
    theta = torch.zeros(d1, dtype=torch.float64)
    for _ in range(max_iter):
        p = torch.sigmoid(z @ theta)
        grad = z.T @ (p - y) / n + reg * theta
        hess = (z.T * (p * (1 - p))) @ z / n + torch.diag(reg)
        step = torch.linalg.solve(hess, grad)
        theta = theta - step
        if float(step.abs().max()) < 1e-10:
            break
    w, b = theta[:-1], float(theta[-1])
    norm = float(w.norm())
    if not np.isfinite(norm) or norm == 0.0:
        raise UserError("The classifier found no boundary between high and low scores.",
                        "Use more samples (--samples), or check that the generator's images vary in this attribute.")
    return w / norm, b / norm, center, scale


def _accuracy(normal: torch.Tensor, bias: float, center: torch.Tensor, scale: float,
              x: torch.Tensor, y: torch.Tensor) -> float:
    margin = ((x.double() - center) / scale) @ normal + bias
    return float(((margin > 0).double() == y.double()).double().mean())


# --------------------------------------------------------------------------- the whole recipe
def learn_direction(G: torch.nn.Module, anchors: torch.Tensor | np.ndarray, attribute: str, *,
                    scorer: Scorer | None = None, clip_model=None, n_samples: int = 2000,
                    quantile: float = 0.3, holdout: float = 0.2, seed: int = 0, batch_size: int = 8,
                    device: torch.device | str = "cpu", name: str | None = None,
                    cache_path: str | os.PathLike[str] | None = None,
                    progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> LearnedDirection:
    """Learn a unit direction in W along which ``attribute`` increases, for generator ``G``.

    ``anchors`` (N, w_dim): the person's anchors (P). ``scorer`` overrides the default measure
    (landmarks via MediaPipe; for 'age' pass ``clip_model`` with real CLIP weights).
    ``cache_path``: an .npz where sample scores are checkpointed, so an interrupted run resumes.
    Returns the direction (``meta``: source, attribute, accuracy, reliability, counts) and stats.
    """
    started = time.perf_counter()
    if attribute not in ATTRIBUTES:
        raise UserError(f"Unknown attribute '{attribute}'.", f"Choose one of: {', '.join(ATTRIBUTES)}.")
    if not 0.0 < quantile <= 0.5:
        raise UserError(f"quantile {quantile} must be in (0, 0.5].", "InterFaceGAN-style labels use e.g. 0.3.")
    if n_samples < 20:
        raise UserError(f"{n_samples} samples are too few to learn a direction.", "Use --samples 500 or more.")
    anchors_t = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
    if anchors_t.ndim != 2 or anchors_t.shape[1] != int(G.w_dim):
        raise UserError(f"Anchors of shape {tuple(anchors_t.shape)} do not match the generator (w_dim={G.w_dim}).",
                        "Re-run the select stage for this generator.")
    close: Callable[[], None] = lambda: None
    if scorer is None:
        if attribute == "age":
            if clip_model is None:
                raise MissingWeightsError("Learning 'age' needs the CLIP weights (age has no landmark measure).",
                                          "Get the 'clip-vit-b32' weights first.", Action("models", "clip-vit-b32"))
            if getattr(clip_model, "random_weights", False):
                raise UserError("Learning 'age' needs real CLIP weights, not a randomly initialised CLIP.",
                                "Get the 'clip-vit-b32' weights first.", Action("models", "clip-vit-b32"))
            scorer = clip_age_scorer(clip_model)
        else:
            scorer, close = landmark_scorer(attribute)

    codes = sample_codes(anchors_t, n_samples, seed=seed)
    done_scores, save = _score_cache(cache_path, codes, attribute, seed)
    try:
        scores = score_codes(G, codes, scorer, batch_size=batch_size, device=device, done_scores=done_scores,
                             checkpoint=save, progress=progress, cancel=cancel)
    finally:
        close()

    valid = np.isfinite(scores)
    if valid.sum() < 20:
        raise UserError(f"Only {int(valid.sum())} of {n_samples} rendered samples could be scored for '{attribute}' "
                        "(no face found).", "Check the personalized generator's previews; its images must show a face.")
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(valid)
    rng.shuffle(idx)
    n_test = max(2, int(round(holdout * len(idx))))
    test_idx, train_idx = idx[:n_test], idx[n_test:]
    lo, hi = np.quantile(scores[train_idx], [quantile, 1.0 - quantile])
    if not hi > lo:
        raise UserError(f"The '{attribute}' scores barely vary across P ({lo:.4g}..{hi:.4g}), so there is no "
                        "direction to learn.", "The self-scan may not show this attribute changing; import a "
                        "published direction instead.", Action("import-direction", attribute))

    def labelled(sel: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        s = scores[sel]
        keep = sel[(s <= lo) | (s >= hi)]
        return codes[keep], torch.as_tensor((scores[keep] >= hi).astype(np.float64))

    x_train, y_train = labelled(train_idx)
    x_test, y_test = labelled(test_idx)
    normal, bias, center, scale = fit_logistic(x_train, y_train)
    accuracy = _accuracy(normal, bias, center, scale, x_test, y_test) if len(y_test) else float("nan")
    vector = normal.float()[None]
    rel = reliability(vector, anchors_t) if anchors_t.shape[0] >= 2 else None
    meta = {
        "source": "learned", "attribute": attribute, "accuracy": accuracy, "reliability": rel,
        "samples": int(n_samples), "scored": int(valid.sum()), "train": int(len(y_train)), "test": int(len(y_test)),
        "quantile": quantile, "seed": seed,
        "scorer": "clip zero-shot" if attribute == "age" else "mediapipe landmarks",
        "score_range": [float(np.nanmin(scores)), float(np.nanmax(scores))],
    }
    direction = Direction(name=name or attribute, vector=vector, meta=meta)
    return LearnedDirection(direction, accuracy, n_samples, int(valid.sum()), len(y_train), len(y_test),
                            time.perf_counter() - started)


def _score_cache(cache_path: str | os.PathLike[str] | None, codes: torch.Tensor, attribute: str, seed: int
                 ) -> tuple[np.ndarray | None, Callable[[np.ndarray, int], None] | None]:
    """Resume support: scores of a previous interrupted run with the same codes are reused."""
    if cache_path is None:
        return None, None
    path = Path(cache_path)
    done: np.ndarray | None = None
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if (str(data["attribute"]) == attribute and int(data["seed"]) == seed
                        and data["codes"].shape == tuple(codes.shape) and np.array_equal(data["codes"], codes.numpy())):
                    done = data["scores"][: int(data["n_done"])]
        except (OSError, ValueError, KeyError):
            done = None
    last_save = [time.monotonic()]

    def save(scores: np.ndarray, n_done: int) -> None:
        if n_done < len(scores) and time.monotonic() - last_save[0] < 10.0:
            return
        last_save[0] = time.monotonic()
        atomic_save_npz(path, codes=codes.numpy(), scores=scores, n_done=np.int64(n_done),
                        attribute=np.str_(attribute), seed=np.int64(seed))

    return done, save
