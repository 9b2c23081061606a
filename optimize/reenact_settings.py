"""The settings of a per-frame re-enactment take (``ReenactSettings``).

Why a frozen dataclass: one settings object goes into a take and is part of the take's
fingerprint, so nobody may change it on the way (a caller that wants other values builds a new
one with ``adjusted`` or ``dataclasses.replace``); a mutated object would make the fingerprint
lie about what made the codes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from optimize.keypoints import KEYPOINT_DEFINITION
from optimize.latent_space import NOISE_UNITS
from optimize.losses import LossWeights
from personalize.errors import UserError

FIRST_FRAME_STARTS = ("nearest-anchor", "keypoint-mix", "center")


@dataclass(frozen=True)
class ReenactSettings:
    """Everything that shapes a latent track (part of the track's fingerprint)."""

    steps: int = 40
    """Adam steps per frame at most (early stopping may end a frame sooner)."""
    lr: float = 0.05
    """Adam step size for alpha on warm-started frames, in unit-scale coefficients (uniform
    coefficient = 1). Why this small: the start lies within the warm-start noise (0.05) of the
    previous answer, and Adam moves every coefficient by about its step size whatever the
    gradient's size; at 0.2 the first steps threw a start that was already at the answer 4x
    further away than the noise did (measured on the known-answer test)."""
    first_lr: float = 0.2
    """Step size for the first optimized frame, which starts far from its answer."""
    delta_lr_scale: float = 0.1
    """The offsets' step size is ``lr * delta_lr_scale``. Why: L_delta is a sum of norms, whose
    gradient does not vanish near 0, so Adam makes every offset jitter by about its step size;
    at the alpha step size that jitter alone (times lambda_delta = 10) outweighs L_key."""
    noise_sigma: float = 0.05
    """Warm-start noise (Appendix C.3: sigma 0.05) on the previous frame's barycentric
    coefficients alpha; how sigma is read: ``noise_units`` (``PersonalizedSpace.perturbed``)."""
    noise_units: str = "uniform"
    """"uniform" (default): sigma relative to the uniform coefficient (std sigma / N per raw
    coefficient); "alpha": the paper's literal units (std sigma per raw coefficient). Why not
    the paper's by default: at our step sizes it is far more noise than 40 warm steps remove;
    on the known-answer clip (bench/reenact.py) it doubled the keypoint error at 250 anchors
    (0.30 vs 0.12 px at 128) and raised the frame-to-frame jitter by 60 % (docs/ARCHITECTURE.md)."""
    smooth_sigma: float = 2.0
    """Latent low-pass filter along time in frames (Appendix C.3); 0 turns it off."""
    patience: int = 20
    """Early stopping: stop after this many steps without a relative improvement of ``min_improvement``."""
    min_improvement: float = 2e-3
    min_steps: int = 15
    """Early stopping never ends a frame before this many steps (Adam's first big steps often
    overshoot, which must not read as a plateau); the first frame, never before half its budget
    (``first_frame_steps``). Why: its step size is 4x larger and its start (above all the keypoint
    mixture) often already near, so its first steps can bounce about a start they do not improve on for
    longer than ``patience``: on ``bench/fastmode.py``'s nodding clip one run stopped after 27
    steps at L_key 0.012 where the same start converged to 0.003 in 80 (float rounding decided
    which); with 40 steps at least, eight first frames of the bench clips converged every time."""
    first_steps: int | None = None
    """Steps for the first optimized frame (it starts far from its answer); default 2 x steps.
    From the anchors' keypoint mixture (``first_frame='keypoint-mix'``) they converge on
    ``bench/fastmode.py``'s 24-frame clip: L_key 0.003 after 69 steps (early stop), the take
    0.030 px. From the nearest anchor, the default, they often do not: the run stopped at
    L_key 0.074 (0.28 px), the next frames needed three frames to catch up (the take 0.060 px),
    and even 120 steps was a coin toss decided by two threads' float rounding on a 2-core
    AVX-512/AMX machine (L_key 0.072 with two threads, 0.003 with one: the runs part after ~25
    noisy Adam steps and one stays on a plateau). 3 x was not made the default: on
    test_reenact's 128 px warm-started take it moved a control that the keypoints do not see
    (from the nearest anchor: control error 0.26 against 0.19-0.25 at 2 x). Before the mixture,
    starting from both the nearest anchor and the center and keeping the lower loss was tried
    and not kept: refine, which keeps the first frame's code along what the keypoints do not see,
    lost on test_fast_reenact's clip (0.065 px against 0.045), as the two starts tied in loss
    (0.037 / 0.039) and differed there. The mixture settles those directions too: the stand-in's
    blend, which the keypoints barely see, ends 0.01-0.07 off on test_reenact's take against
    0.2 from the nearest anchor."""
    lr_decay: bool = True
    """Cosine decay of the step size over the frame's step budget (down to 10 %): big steps
    first for speed, small ones last to settle."""
    lr_warmup: int = 5
    """Steps over which the step size ramps up linearly. Why: Adam's first steps move every
    coefficient by the full step size whatever the gradient's size, which throws a warm start
    (already near the answer) far off; a ramp keeps the first moves small."""
    first_frame: str = "nearest-anchor"
    """Where the first frame starts: 'nearest-anchor' (default), the single anchor with the
    nearest keypoints; 'keypoint-mix', the anchors' mixture whose keypoints, mixed alike, come
    nearest the frame's (``anchor_keypoints.keypoint_mixture``); 'center', the center of P.
    The mixture serves the exact mode better: from one anchor or from the center its first
    frame's Adam run often stops on a plateau (L_key above 0.02 in 7 and 5 of 20 known-answer
    targets, none from the mixture; ``bench/fastmode.py``'s first frame stalled at 0.07 from the
    nearest anchor and converged to 0.003 from the mixture). It is not the default yet because
    refine keeps the first frame's code along what the keypoints do not see, and on
    test_fast_reenact's 128 px clip refine lost from it: 0.064 px against 0.045 from the nearest
    anchor (two runs each; the exact mode 0.041-0.069 px either way, float rounding deciding),
    the same trade as the two-start experiment (``first_steps``). On ``bench/fastmode.py``'s
    256 px clip refine did as well from it (0.95-1.10x of the exact mode over three models).
    Switching needs a refine that does not depend on where the first frame settles."""
    mesh_input: int = 256
    """Side the generated image is resized to before the FaceMesh."""
    save_every: int = 5
    min_save_seconds: float = 10.0
    """Save the track every ``save_every`` frames but not more often than this (a long 1024 px
    track is tens of MB); a cancel, Ctrl-C or error saves at once, so only a hard kill loses
    the last few seconds of work."""
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)

    @property
    def first_frame_steps(self) -> int:
        """Steps the first optimized frame gets: ``first_steps``, or 2 x ``steps`` when unset."""
        return self.first_steps or 2 * self.steps

    def adjusted(self, *, steps: int | None = None, lr: float | None = None, smooth: bool = True,
                 first_frame: str | None = None) -> "ReenactSettings":
        """A copy with the options users set (CLI flags, GUI fields); None keeps the value.

        ``lr`` sets the warm-frame step size and scales the first frame's with it, so the
        cold start keeps its ratio (4x by default); ``smooth`` False turns the latent filter off.
        """
        changes: dict[str, Any] = {}
        if steps is not None:
            changes["steps"] = int(steps)
        if lr is not None:
            changes.update(lr=float(lr), first_lr=float(lr) * self.first_lr / self.lr)
        if not smooth:
            changes["smooth_sigma"] = 0.0
        if first_frame is not None:
            changes["first_frame"] = first_frame
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise a UserError naming the bad value."""
        if self.steps < 1:
            raise UserError(f"steps must be at least 1 (got {self.steps}).", "Use 50 steps or more.")
        for name, value in (("learning rate", self.lr), ("first-frame learning rate", self.first_lr)):
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"{name} must be a positive number (got {value}).", "Try 0.05.")
        if self.first_frame not in FIRST_FRAME_STARTS:
            raise UserError(f"unknown first-frame start '{self.first_frame}'.",
                            f"Use {' or '.join(FIRST_FRAME_STARTS)}.")
        if self.noise_sigma < 0 or self.smooth_sigma < 0:
            raise UserError("noise and smoothing sigmas must not be negative.")
        if self.noise_units not in NOISE_UNITS:
            raise UserError(f"unknown warm-start noise units '{self.noise_units}'.",
                            f"Use one of {', '.join(NOISE_UNITS)}.")

    def fingerprint_dict(self) -> dict[str, Any]:
        """The settings that change the optimized codes (not how often the track is saved)."""
        d = asdict(self)
        d.pop("save_every")
        d.pop("min_save_seconds")
        d.pop("smooth_sigma")  # smoothing is applied after the fact; changing it reuses the codes
        d["keypoints"] = KEYPOINT_DEFINITION  # codes fitted to other keypoints are not reused
        return d
