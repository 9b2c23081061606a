"""InterFaceGAN-style latent directions: import, validate, project into P, save, load, apply.

Why this module: the paper (Sec. 4.2) edits a re-enacted video by shifting every latent code of the
track by a constant step along a semantic direction (smile, pose, age) before rendering. Published
directions for StyleGAN2-FFHQ come as torch tensors or numpy arrays in a few shapes; learned ones
(``editing.learn_direction``) are saved the same way, so everything downstream sees one type,
``Direction``, whose ``vector`` is ``(L, w_dim)`` float32 with ``L == 1`` (one W direction, applied
to every layer) or ``L == num_ws`` (a per-layer W+ direction).

Edits stay in the person's space (MyStyle; main paper Sec. 4.2 edits within P): a published
direction is FFHQ-wide, so importing projects it onto the anchors' span by default (its
reliability, the cosine to that projection, is kept), and ``make_ws_edit`` given the anchors
shortens an edit wherever it would carry a code out of the dilated convex hull P_beta
(``edit_fraction_inside_hull``), reporting how often and how much (``HullReport``).

Storage: a folder (the studio gives its project's ``directions/``) holding ``<name>.npy`` (the
vector, ``(L, w_dim)`` float32) and ``<name>.json`` (metadata: source, attribute, accuracy,
reliability, ...). This module knows nothing about projects: it takes that folder's path.
"""
from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from optimize.latent_space import DILATION_BETA, PersonalizedSpace
from personalize.errors import Action, UserError
from personalize.fileio import atomic_path, atomic_write_json, read_json

DIRECTION_SUFFIXES = (".pt", ".pth", ".npy")
LayerRange = slice | range | Sequence[int] | tuple[int, int] | None


@dataclass
class Direction:
    """A latent direction. ``vector``: (L, w_dim) float32, L = 1 (W) or num_ws (W+)."""

    name: str
    vector: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def w_dim(self) -> int:
        return int(self.vector.shape[-1])

    @property
    def per_layer(self) -> bool:
        return int(self.vector.shape[0]) > 1

    @property
    def reliability(self) -> float | None:
        """Cosine between the direction and its projection into P's span (None if unknown)."""
        value = self.meta.get("reliability")
        return None if value is None else float(value)


# --------------------------------------------------------------------------- reading files
def read_direction_file(path: str | os.PathLike[str], w_dim: int | None = None,
                        num_ws: int | None = None) -> torch.Tensor:
    """Read a published direction (``.pt``/``.pth`` torch tensor or ``.npy``) -> (L, w_dim) float32.

    Accepted shapes: (w_dim,), (1, w_dim), (1, num_ws, w_dim), (num_ws, w_dim). Loading never runs
    code from the file (``torch.load(weights_only=True)``, ``np.load(allow_pickle=False)``).
    Raises ``UserError`` for an unreadable file, a wrong shape/dimension, or NaN/inf/zero vectors.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Direction file {path} does not exist.", "Check the path and try again.")
    suffix = path.suffix.lower()
    if suffix not in DIRECTION_SUFFIXES:
        raise UserError(f"{path.name}: unsupported direction format '{suffix}'.",
                        "Use a .pt/.pth torch tensor or a .npy array (InterFaceGAN W direction).")
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
            tensor = torch.from_numpy(np.asarray(raw, dtype=np.float32))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            tensor = _tensor_from_torch_object(raw, path)
    except UserError:
        raise
    except Exception as exc:  # corrupt file, pickled code, wrong dtype ...
        raise UserError(f"{path.name} could not be read as a direction ({exc}).",
                        "Use a .pt file holding one tensor, or a .npy float array.") from exc
    return validate_direction(tensor, w_dim=w_dim, num_ws=num_ws, what=path.name)


def _tensor_from_torch_object(raw: Any, path: Path) -> torch.Tensor:
    """A .pt may hold the tensor itself or a one-entry dict {'direction': tensor} (common in repos)."""
    if isinstance(raw, torch.Tensor):
        return raw.detach().float().cpu()
    if isinstance(raw, dict):
        tensors = [v for v in raw.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0].detach().float().cpu()
    raise UserError(f"{path.name} holds a {type(raw).__name__}, not one direction tensor.",
                    "Export the direction as a single tensor of shape (512,), (1, 512) or (1, 18, 512).")


def validate_direction(tensor: torch.Tensor | np.ndarray, w_dim: int | None = None,
                       num_ws: int | None = None, what: str = "direction") -> torch.Tensor:
    """Normalize a direction's shape to (L, w_dim) float32 and reject unusable values.

    ``w_dim``/``num_ws``: the generator's, when known; a W+ direction must have exactly num_ws rows.
    """
    t = torch.as_tensor(tensor).detach().float().cpu()
    if t.ndim == 1:
        t = t[None]
    elif t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    elif t.ndim != 2:
        raise UserError(f"{what} has shape {tuple(t.shape)}; expected (w_dim,), (1, w_dim) or (1, num_ws, w_dim).",
                        "Use an InterFaceGAN W / W+ direction for StyleGAN2.")
    if t.numel() == 0:
        raise UserError(f"{what} is empty.", "Use a direction of shape (1, 512).")
    if not bool(torch.isfinite(t).all()):
        raise UserError(f"{what} contains NaN or infinite values.",
                        "The file is corrupt or was saved from a failed fit; re-export or re-learn it.")
    if float(t.norm()) == 0.0:
        raise UserError(f"{what} is all zeros, so it cannot edit anything.", "Use a real direction.")
    if w_dim is not None and t.shape[-1] != w_dim:
        raise UserError(f"{what} has dimension {t.shape[-1]}, but this generator's latent codes have {w_dim}.",
                        f"Use a direction made for a StyleGAN2 generator with w_dim={w_dim} "
                        "(FFHQ directions have 512).")
    if num_ws is not None and t.shape[0] not in (1, num_ws):
        raise UserError(f"{what} has {t.shape[0]} layers, but this generator uses {num_ws} latent layers.",
                        f"Use a W direction (1, {t.shape[-1]}) or a W+ direction (1, {num_ws}, {t.shape[-1]}).")
    return t.contiguous()


# --------------------------------------------------------------------------- applying
def layer_mask(num_ws: int, layers: LayerRange) -> torch.Tensor:
    """(num_ws,) bool mask of the latent layers an edit touches. ``layers``: None (all), a slice,
    a range, a (start, stop) tuple (stop exclusive), or explicit indices."""
    mask = torch.zeros(num_ws, dtype=torch.bool)
    if layers is None:
        mask[:] = True
        return mask
    if isinstance(layers, tuple) and len(layers) == 2 and all(isinstance(v, int) for v in layers):
        layers = range(layers[0], layers[1])
    if isinstance(layers, slice):
        mask[layers] = True
        return mask
    indices = list(layers)
    bad = [i for i in indices if not -num_ws <= int(i) < num_ws]
    if bad:
        raise UserError(f"Layer indices {bad} are outside 0..{num_ws - 1}.",
                        f"This generator has {num_ws} latent layers; choose a range inside it.")
    if not indices:
        raise UserError("The layer range is empty.", f"Choose layers between 0 and {num_ws - 1}.")
    mask[torch.as_tensor(indices, dtype=torch.long)] = True
    return mask


def direction_delta(direction: Direction | torch.Tensor, strength: float, num_ws: int,
                    layers: LayerRange = None) -> torch.Tensor:
    """The shift ``strength * direction`` as a (num_ws, w_dim) float32 tensor (zero outside ``layers``)."""
    vec = direction.vector if isinstance(direction, Direction) else validate_direction(direction)
    if not math.isfinite(float(strength)):
        raise UserError(f"Edit strength {strength} is not a finite number.", "Use e.g. 1.5 or -2.")
    if vec.shape[0] not in (1, num_ws):
        raise UserError(f"The direction has {vec.shape[0]} layers but the track has {num_ws}.",
                        "Use a direction made for this generator.")
    delta = (float(strength) * vec).expand(num_ws, vec.shape[-1]).clone()
    delta[~layer_mask(num_ws, layers)] = 0.0
    return delta


def apply_edits(ws: torch.Tensor, edits: Iterable[tuple[Direction | torch.Tensor, float]],
                layers: LayerRange = None) -> torch.Tensor:
    """Shift a latent track by the sum of several edits; returns a new tensor, ``ws`` is untouched.

    ``ws``: (T, num_ws, w_dim) or (num_ws, w_dim) W+ codes (the re-enactment track).
    ``edits``: (direction, strength) pairs; each direction may carry its own ``meta['layers']``
    ([start, stop)), overridden by ``layers`` when given.

    Why the deltas are summed first: the track is shifted once, so opposite edits (+s and -s of the
    same direction) cancel exactly (``s*d + (-s)*d == 0`` in floating point) and strength 0 returns
    the original values bit for bit. Keep the original track and call this with the current slider
    values, instead of editing an already edited track.
    """
    ws = _check_track(ws)
    num_ws, w_dim = ws.shape[-2], ws.shape[-1]
    total = torch.zeros(num_ws, w_dim, dtype=torch.float32)
    any_edit = False
    for direction, strength in edits:
        if float(strength) == 0.0:
            continue
        vec = direction.vector if isinstance(direction, Direction) else validate_direction(direction)
        if vec.shape[-1] != w_dim:
            raise UserError(f"A direction has dimension {vec.shape[-1]}, the track has {w_dim}.",
                            "Use directions made for this generator.")
        own = direction.meta.get("layers") if isinstance(direction, Direction) else None
        chosen = layers if layers is not None else (tuple(own) if own else None)
        total += direction_delta(vec, strength, num_ws, chosen)
        any_edit = True
    if not any_edit:
        return ws.clone()
    return ws + total.to(device=ws.device, dtype=ws.dtype)


def apply_direction(ws: torch.Tensor, direction: Direction | torch.Tensor, strength: float,
                    layers: LayerRange = None) -> torch.Tensor:
    """Shift every code of a track by ``strength * direction`` on ``layers`` (all by default).

    ``ws``: (T, num_ws, w_dim) or (num_ws, w_dim); returns a new tensor of the same shape/dtype.
    Strength 0 returns an exact copy. Applying +s and then -s to the *result* returns the track to
    within float32 rounding (one ulp of the edited value); for bit-exact undo use ``apply_edits``
    on the original track.
    """
    return apply_edits(ws, [(direction, strength)], layers=layers)


def _check_track(ws: torch.Tensor) -> torch.Tensor:
    if not isinstance(ws, torch.Tensor):
        ws = torch.as_tensor(ws)
    if ws.ndim not in (2, 3):
        raise UserError(f"A latent track must be (T, num_ws, w_dim) or (num_ws, w_dim), got {tuple(ws.shape)}.",
                        "Pass the W+ codes of the take (latents.npz 'ws').")
    return ws


# --------------------------------------------------------------------------- projection into P
def anchor_basis(anchors: torch.Tensor | np.ndarray, rel_tol: float = 1e-6) -> torch.Tensor:
    """Orthonormal basis (w_dim, r) of the linear space V = span{w_i - w_mean} of the anchors.

    Why differences from the mean: P is (a slight dilation of) the anchors' convex hull, which lies
    in the affine hull  {sum_i a_i w_i : sum_i a_i = 1}. Moving a code by a step d keeps it in that
    affine hull iff d lies in V, the span of the anchor differences. Computed by SVD (float64);
    singular values below ``rel_tol * max`` are dropped, so duplicated anchors are harmless.
    """
    a = torch.as_tensor(anchors).double()
    if a.ndim != 2 or a.shape[0] < 2:
        raise UserError("Projecting a direction needs at least two anchors.",
                        "Personalize the generator first (it makes the anchors).",
                        Action("personalize"))
    diffs = (a - a.mean(dim=0, keepdim=True)).T  # (w_dim, N)
    u, s, _ = torch.linalg.svd(diffs, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        raise UserError("All anchors are identical, so P has no extent to edit in.",
                        "Re-run the select stage with a more varied self-scan.")
    keep = s > rel_tol * s[0]
    return u[:, keep]


def project_direction(vector: torch.Tensor, anchors: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, float]:
    """Project a direction onto V = span{w_i - w_mean} (see ``anchor_basis``).

    ``vector``: (L, w_dim); each row is projected orthogonally: d_V = U U^T d (the least-squares
    solution of min_x |D x - d| with D the anchor differences, written through D's orthonormal
    basis U). Returns (projected (L, w_dim) float32 rescaled to the original norm, reliability),
    reliability = cos(d, d_V) = |d_V| / |d| over the flattened vector, in [0, 1]: 1 means the
    direction already lies in the person's space, 0 means it leaves it entirely.
    Rescaling keeps edit strengths comparable before and after projection.
    """
    vec = validate_direction(vector)
    basis = anchor_basis(anchors)
    if basis.shape[0] != vec.shape[-1]:
        raise UserError(f"The direction has dimension {vec.shape[-1]}, the anchors {basis.shape[0]}.",
                        "Use a direction made for this generator.")
    d = vec.double()
    projected = (d @ basis) @ basis.T
    norm_d, norm_p = float(d.norm()), float(projected.norm())
    reliability = min(1.0, norm_p / norm_d)
    if reliability < 1e-6:
        raise UserError("The direction is orthogonal to this person's latent space, so projecting it "
                        "leaves nothing to edit with.",
                        "Import it without projection, or learn a direction for this person.",
                        Action("learn-direction"))
    projected = projected * (norm_d / norm_p)
    return projected.float(), reliability


def reliability(vector: torch.Tensor, anchors: torch.Tensor | np.ndarray) -> float:
    """cos(direction, its projection onto the anchors' span); see ``project_direction``."""
    vec = validate_direction(vector)
    basis = anchor_basis(anchors)
    d = vec.double()
    return float(min(1.0, float(((d @ basis) @ basis.T).norm()) / float(d.norm())))


# --------------------------------------------------------------------------- staying inside P_beta
def edit_fraction_inside_hull(ws: torch.Tensor, delta: torch.Tensor, anchors: torch.Tensor | np.ndarray,
                              beta: float = DILATION_BETA) -> torch.Tensor:
    """Per code, the largest t in [0, 1] for which ``ws + t * delta`` stays in P_beta.

    ``ws`` (T, num_ws, w_dim) codes, ``delta`` (num_ws, w_dim) one shift for all of them ->
    (T,) float32 on ``ws``'s device. P_beta (paper Eq. 6, MyStyle): codes sum_i a_i w_i with
    sum_i a_i = 1 and every a_i >= -beta. The coefficients of a code and of the shift are their
    least-squares coefficients over the anchors (``PersonalizedSpace.ws_to_coefficients``: exact
    when the anchors are linearly independent, as 250 anchors in 512-d W are; the minimum-norm
    ones otherwise); a shift along anchor differences keeps the sum, so only ``a_i >= -beta``
    can break. Each coefficient the edit lowers may fall to -beta and no further; one already
    below -beta (P+ offsets, the temporal filter) may not fall at all. The limit is taken over
    every layer, so a code's layers are shortened together. The part of an unprojected
    direction outside the anchors' span has no coefficients and is not judged.
    """
    if ws.ndim != 3 or delta.shape != ws.shape[1:]:
        raise ValueError(f"ws (T, L, D) and delta (L, D) expected, got {tuple(ws.shape)} and {tuple(delta.shape)}")
    space = PersonalizedSpace(torch.as_tensor(anchors, dtype=torch.float32).cpu(), int(ws.shape[1]))
    a = space.ws_to_coefficients(ws.detach().float().cpu()).double()           # (T, L, N)
    c = space.ws_to_coefficients(delta.detach().float().cpu()[None]).double()[0]  # (L, N)
    tiny = 1e-6 * float(c.abs().max())  # least-squares round-off is not a shift
    room = (a + beta).clamp_min(0.0)
    falling = c < -tiny
    limits = torch.where(falling, room / (-c).clamp_min(tiny if tiny > 0 else 1.0),
                         torch.full_like(room, math.inf))
    return limits.flatten(1).min(dim=1).values.clamp(0.0, 1.0).float().to(ws.device)


@dataclass
class HullReport:
    """What keeping an edit inside P_beta did over the codes an edit function has seen so far."""

    codes: int = 0
    shortened: int = 0
    """Codes whose shift was shortened (t < 1)."""
    min_kept: float = 1.0
    """The smallest fraction t of the requested shift any code kept (1.0: none was shortened)."""

    def add(self, kept: torch.Tensor) -> None:
        self.codes += int(kept.numel())
        self.shortened += int((kept < 1.0).sum())
        if kept.numel():
            self.min_kept = min(self.min_kept, float(kept.min()))

    def summary(self) -> str:
        if not self.shortened:
            return f"all {self.codes} codes stayed inside the person's space"
        return (f"{self.shortened} of {self.codes} codes were shortened to stay inside the person's space "
                f"(down to {100 * self.min_kept:.0f}% of the requested edit)")


# --------------------------------------------------------------------------- project storage
def _checked_name(name: str) -> str:
    cleaned = str(name).strip()
    if not cleaned or cleaned in {".", ".."} or any(c in cleaned for c in '/\\:*?"<>|\0') or "=" in cleaned:
        raise UserError(f"'{name}' is not a valid direction name.",
                        "Use letters, digits, '-' or '_' (no slashes, spaces at the ends or '=').")
    return cleaned


def direction_exists(folder: str | os.PathLike[str], name: str) -> bool:
    """True when ``folder`` holds a direction ``name`` (its vector or its metadata)."""
    folder, name = Path(folder), _checked_name(name)
    return (folder / f"{name}.npy").exists() or (folder / f"{name}.json").exists()


def save_direction(folder: str | os.PathLike[str], direction: Direction, force: bool = False) -> Path:
    """Write ``<name>.npy`` + ``<name>.json`` into ``folder`` atomically; refuse to overwrite
    unless ``force``. The .npy is written first and the .json last, so a listed direction always
    has its vector.
    """
    folder = Path(folder)
    name = _checked_name(direction.name)
    npy, meta_path = folder / f"{name}.npy", folder / f"{name}.json"
    if not force and direction_exists(folder, name):
        raise UserError(f"A direction named '{name}' already exists in {folder}.",
                        "Choose another name, or replace it.", Action("force"))
    vec = validate_direction(direction.vector)
    meta = dict(direction.meta)
    meta.update(name=name, shape=list(vec.shape), norm=float(vec.norm()),
                saved=time.strftime("%Y-%m-%dT%H:%M:%S"))
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, vec.numpy().astype(np.float32), allow_pickle=False)
    with atomic_path(npy) as tmp:
        tmp.write_bytes(buf.getvalue())
    atomic_write_json(meta_path, meta)
    return npy


def direction_names(folder: str | os.PathLike[str]) -> list[str]:
    """Names of the directions saved in ``folder``, sorted (without reading them)."""
    folder = Path(folder)
    return sorted(p.stem for p in folder.glob("*.npy")) if folder.is_dir() else []


def list_directions(folder: str | os.PathLike[str]) -> list[Direction]:
    """All directions saved in ``folder``, sorted by name (vector + metadata)."""
    return [load_direction(folder, name) for name in direction_names(folder)]


def load_direction(folder: str | os.PathLike[str], name: str, w_dim: int | None = None,
                   num_ws: int | None = None) -> Direction:
    """Load ``<folder>/<name>.npy`` (+ metadata). Raises ``UserError`` naming the available ones."""
    folder = Path(folder)
    name = _checked_name(name)
    npy = folder / f"{name}.npy"
    if not npy.is_file():
        raise UserError(f"No direction named '{name}' in {folder}.",
                        f"Available: {', '.join(direction_names(folder)) or 'none'}. Import a direction file, or "
                        "learn one for this person.", Action("import-direction", name))
    vector = read_direction_file(npy, w_dim=w_dim, num_ws=num_ws)
    meta_path = folder / f"{name}.json"
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            loaded = read_json(meta_path)
            meta = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            meta = {"warning": f"{meta_path.name} is unreadable; metadata ignored"}
    return Direction(name=name, vector=vector, meta=meta)


def parse_edit(spec: str) -> tuple[str, float]:
    """Parse a CLI ``--edit NAME=STRENGTH`` (e.g. ``smile=1.5``, ``age=-1``) -> (name, strength)."""
    name, sep, value = spec.partition("=")
    if not sep or not name.strip():
        raise UserError(f"--edit '{spec}' is not NAME=STRENGTH.", "Example: --edit smile=1.5 --edit age=-1")
    try:
        strength = float(value)
    except ValueError:
        raise UserError(f"--edit '{spec}': '{value}' is not a number.", "Example: --edit smile=1.5") from None
    if not math.isfinite(strength):
        raise UserError(f"--edit '{spec}': the strength must be finite.", "Example: --edit smile=1.5")
    return name.strip(), strength


class TrackEdit:
    """A ``ws -> ws`` function applying summed edits (``editing.render``'s ``edit_ws``).

    With ``anchors`` (N, w_dim) every code's shift is shortened just enough to keep it inside
    P_beta (``edit_fraction_inside_hull``) and ``report`` counts how often that happened. Why
    shorten rather than project the edited code back (MyStyle's other choice): the result stays
    on the line the user asked for, only less far along it, and the step is one closed-form
    bound per code instead of a quadratic program per frame. The track is smooth, so the bound
    changes smoothly from frame to frame.
    """

    def __init__(self, edits: Sequence[tuple[Direction | torch.Tensor, float]], layers: LayerRange = None,
                 anchors: torch.Tensor | np.ndarray | None = None, beta: float = DILATION_BETA) -> None:
        self.edits = [(d if isinstance(d, Direction) else Direction("edit", validate_direction(d)), float(s))
                      for d, s in edits]
        for _, strength in self.edits:
            if not math.isfinite(strength):
                raise UserError(f"Edit strength {strength} is not a finite number.", "Use e.g. 1.5 or -2.")
        self.layers = layers
        self.anchors = None if anchors is None else torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
        self.beta = float(beta)
        self.report = HullReport()

    def __call__(self, ws: torch.Tensor) -> torch.Tensor:
        edited = apply_edits(ws, self.edits, layers=self.layers)
        if self.anchors is None or self.anchors.shape[0] < 2:
            return edited
        track = _check_track(ws)
        codes = track if track.ndim == 3 else track[None]
        shift = apply_edits(torch.zeros_like(codes[0]), self.edits, layers=self.layers)  # the same for every code
        if not bool(shift.any()):
            return edited
        kept = edit_fraction_inside_hull(codes, shift, self.anchors, self.beta)
        self.report.add(kept)
        if bool((kept >= 1.0).all()):
            return edited
        shortened = codes + kept[:, None, None].to(codes.dtype) * shift
        return shortened if track.ndim == 3 else shortened[0]


def make_ws_edit(edits: Sequence[tuple[Direction | torch.Tensor, float]], layers: LayerRange = None,
                 anchors: torch.Tensor | np.ndarray | None = None, beta: float = DILATION_BETA) -> TrackEdit:
    """A ``ws -> ws`` function applying ``edits`` (for ``editing.render``'s ``edit_ws``).

    Each call shifts the batch it gets by the summed edits (see ``apply_edits``); the deltas are
    validated once here, so a bad direction fails before rendering starts. Given the person's
    ``anchors``, codes are kept inside P_beta (see ``TrackEdit``).
    """
    return TrackEdit(edits, layers, anchors, beta)
