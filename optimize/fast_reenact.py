"""Fast and refine re-enactment: codes predicted by the motion model (``optimize.fast_directions``).

Modes (issue #14), all writing the same latent track (``optimize.track``) as the optimizer:

* ``fast``: every frame's code is predicted from its driving descriptor,
  ``c_t = c_s + A (u - p_s)``, with the center of P as the source s (the identity reference of
  the exact mode). Frame t's loop (``feedback_loop``, ``FAST_FEEDBACK`` = 3 renders read with
  MediaPipe as the driving crops were, ``RenderReader``) starts from the model input
  ``u_t = p_t + correction``. The first render's miss ``m_t = p_t - p(render_t)`` moves the next
  frames' correction to ``FAST_CARRY * correction + FAST_GAIN * m_t``; each next render is of the
  full step from the best input so far, kept only if its keypoints read closer to the frame's
  (the exact mode's keypoint term, ``Read``; else the step is halved);
  the code kept for the frame is predicted from the best input plus ``FAST_STEP`` of its step, one more
  closed-loop step whose render is the take's own. Why: the model is an approximate inverse
  of "code -> descriptor", so its own miss moves the input towards the frame (refine iterates
  this five times with FaceMesh; fast checks one step and takes the next unseen); and what the
  model misses at a descriptor is partly a bias that changes little from one frame to the next,
  so the earlier frames' misses also foretell this frame's, and a correction that fades (0.8^t)
  follows a miss that changes along the clip. The last step is 0.7 of the miss, not all of it,
  because nothing checks it before the take renders it and the read is noisy. The same temporal
  filter then smooths the codes (the descriptor's MediaPipe jitter would otherwise show). The
  open loop (``reader=None``: every code straight from its descriptor, in batches, no generator
  pass) is the bench's control.
* ``refine``: the take's first frame with a face is the exact mode's own first frame (same start,
  steps and schedule: later frames keep what it settles, so it must settle). Every later frame
  starts from the prediction corrected in a closed loop, then the per-frame optimizer runs
  ``REFINE_STEPS`` passes at ``REFINE_LR`` times the exact mode's step size
  (``refine_settings``; it keeps the best code it scored, the start included). By default that
  is one pass: it scores the loop's code and keeps it, no Adam update (updates measured worse,
  see ``REFINE_STEPS``); ``--refine-steps`` gives more. Each closed-loop pass renders the frame's code, reads the image with the
  same FaceMesh and descriptor as the driving frame, and moves the model's *input* by what is
  still missing, ``u_{k+1} = u_k + (p(frame) - p(render(model(u_k))))`` (``closed_loop``). Why:
  the motion model is an approximate inverse of "code -> descriptor", so feeding back its own
  error is a Newton-like step that needs no backward pass and no step size (iterative error
  feedback). Frame t's loop starts from ``p_t + REFINE_CARRY * (u_{t-1} - p_{t-1})``: what the
  model gets wrong changes little from one frame to the next, and less than all of it, so a
  carried correction fades (0.8^t) instead of adding up.

  Every code the loop tries keeps the previous frame's code along the directions the descriptor
  does not determine (``MotionPredictor.tracked``; ``fast_directions.reliable_projector``), as
  the exact mode's warm start keeps everything. Why: on the stand-in the whole of refine's
  remaining error was one control, the blend towards the open-mouth face, which barely moves the
  keypoints (``bench/fastmode.py``'s control table: refine's blend error 0.2 against the exact
  mode's 0.04, every other control at the exact mode's level). The descriptor predicts that
  direction poorly (spread / held-out error 8, against 38-1400 for the others), so the model's
  guess along it is mostly bias, the loop cannot see the miss, and a few optimizer steps barely
  move it (the keypoint loss is nearly flat there). Taken from a settled previous frame instead,
  it stays right. Measured on that clip with three motion models (MLP seeds 0/1/2 on a 2-core
  AVX2 machine, before the MLP's start was seeded; the exact mode 0.0295 px with its first
  frame converged, ``--exact-first-steps 120``): refine 0.030 / 0.032 / 0.029 px (1.0-1.07x),
  keeping nothing 0.046 / 0.035 / 0.034 px (a scratch harness calling this module; the bench
  reruns each with ``--model-seed``: seed 0 gave 0.028 / 0.037 px there). The seeded models on
  a 2-core AMX machine, the exact mode's first frame converged from the keypoint mixture
  (``--first-frame keypoint-mix``):
  0.029 / 0.031 / 0.029 px against 0.044 / 0.032 / 0.031 px, so keeping wins on average, not
  for every model. The same designs with refine's
  own 3-step first frame and 3 loop passes + 3 steps: 0.031 / 0.051 / 0.050 px (keeping)
  against 0.049 / 0.034 / 0.038 px. Both halves matter: a first frame that has not
  settled is kept wrong, and optimizer steps drift the kept direction (one model: 0.037 px at
  1 step a frame, 0.051 px at 3 and at 10). Refine costs 6 passes a frame after the first
  against the exact mode's ~40; the first frame costs both the same.

  Fast mode keeps nothing: without the loop to correct it, keeping the previous code along
  those directions also kept a little of the mouth stretch (what the projector drops is
  mostly, not only, the blend) and fast's error rose from 0.096 to 0.17 px on that clip.

  Fast's feedback, measured on that clip (``bench/fastmode.py --first-frame keypoint-mix
  --model-seed 0|1|2`` on a 2-core AVX-512/AMX machine, where the exact mode's first frame
  converges from the anchors' keypoint mixture, the exact mode 0.028-0.031 px; two runs each,
  which differ by the exact mode's float rounding): fast 0.051-0.055 px, 1.65-1.66 / 1.66-1.86 /
  1.85-1.86x of the exact mode (1.39-1.60x as rendered, after the take's temporal filter), the
  same runs reading one render a frame (the bench's control, the design before ``FAST_FEEDBACK``)
  1.86 / 1.78 / 2.26x, the linear model 1.82-2.11x, the open loop 2.52-3.45x; refine 0.92-0.93 /
  0.98-1.11 / 0.94-0.97x. On a nodding clip (``--clip nod``, a sinusoid of about 25 frames;
  seed 0): fast 1.23x (0.96x as rendered), the open loop 3.20x, refine 0.91x; one render measured
  1.20x there in an earlier session. Those were single runs, each one sample of a spread that
  float rounding alone opens (``FAST_FEEDBACK``: over reruns, three renders 1.60-1.97x on
  average, single runs 1.52-2.46x; two 1.62-2.09x, 1.56-2.40x). Earlier, on a 2-core AVX2 machine
  (seed 0, one render): 2.14x, 2.43-2.48x with the earlier frames' misses alone
  (``--fast-step 0``), the open loop 3.07x.
  The last step's share, over four MLP seeds in a scratch harness calling ``fast_track`` (one
  render then; gain 0.7, carry 0.8): 0.7 gave 1.74-2.26x on the first clip and 0.94-1.18x on the
  nodding one, against 2.15-2.67x and 1.46-1.63x without the step; 0.6 and 0.85 did about as
  well on average, and a step, gain and carry all at 0.8 once diverged (4.8x): nothing checks
  the step before the take renders it. Fast's MLP starts from its seed (``MotionSettings.seed``),
  so these seeds compare models, not runs. It costs ``FAST_FEEDBACK`` generator passes and
  MediaPipe reads a frame, and one more prediction (0.3 ms), on top of the take's render;
  consecutive frames' loops overlap so that frame t's k-th render and frame t+1's (k-1)-th share
  a generator call (``_fast_with_feedback``: one call of up to ``FAST_FEEDBACK`` codes a frame,
  which a GPU runs in little more than the time of one: 0.018-0.019 s for three against
  0.012-0.013 s for one on an H200 at 1024 px, ``bench/fastmode.py``; the codes are
  those of one frame after another; a CPU, where a batch costs more than its codes one by one,
  renders them one at a time, ``RenderReader.render``). On the AMX machine at 256 px fast is
  22x faster than the exact mode with three renders, 33-35x with two (the open loop 94-107x;
  65x with one render). A miss the generator cannot close (another person's
  face) is bounded: the correction stays within gain / (1 - carry) = 3.5 times it, each step within
  the miss of the best try (the second try is kept only if it reads closer), then the input's
  clamp. Driven by the shared media's two real driving clips of
  other people (40 frames each, on the stand-in, 40 % of the descriptor's elements beyond the
  learned range), fast with one render did no worse than the open loop: 0.87-0.93 of the exact
  mode's keypoint error with the step, 0.88-0.95 without it, 0.92-0.99 open loop
  (``bench/fastmode.py --driving-video``, MLP seeds 0/1; all modes ~3 px there, the faces
  differ).

  What stays of fast's gap on the first clip is spread over all five controls:
  ``bench/fastmode.py``'s ablation sets one control of fast's codes to its true value and the
  error drops only from 0.055-0.068 to 0.047-0.064 px, while any one control left as predicted
  (the others true) gives 0.022-0.040 px alone (seeds 0/1/2, one render a frame; with two,
  0.051-0.055 px to 0.046-0.057 px, and 0.022-0.048 px alone). So no direction can be taken from
  elsewhere, as refine takes the blend, and the feedback cannot see the blend either. Its
  largest remaining descriptor misses (yaw, pitch, scale: MediaPipe reading a face that the
  stand-in only warps in 2D) still correlate from one frame to the next (lag-1
  autocorrelation 0.2-0.6 for yaw, -0.1-0.3 for pitch, 0.2-0.5 for scale, over the four runs
  above; the open loop's 0.2-0.7, 0.1-0.4, 0.4-0.6), yet higher gains or slower fading did
  worse in the scratch harness (the read is noisy, and a correction that lags a changing miss
  overshoots). One step unseen removes part of a frame's own miss; iterating on the frame
  itself, checked, removes more: fast checks one step, refine iterates five. The limit of the open loop is what the descriptor
  carries: in a scratch experiment (not kept), a quadratic regression fitted on 400 codes drawn
  around the clip's own path, an oracle's pool, still reached only 0.048-0.063 px (1.6-2.1x);
  descriptors with more expression components (98 % of the scan's variance, the default,
  against 99.5 / 99.9 / 100 %) predicted no better (0.115-0.136 px against 0.096 px), nor did
  twice the samples mixing up to 6 anchors (0.079 px against 0.076 px, ``--pool 512 --max-mix
  6``: it cut the blend's error 3x, and the keypoints did not notice), nor averaging four
  models' codes (2.46x and 2.73x on the two clips, without the step).
* ``exact`` is ``optimize.reenact`` itself.

Frames where MediaPipe found no face hold the previous frame's code, as in the exact mode.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Generator, NamedTuple

import numpy as np
import torch

from optimize.driving import DrivingFrames, crop_landmarks, tensor_to_uint8
from optimize.fast_directions import MotionModelFiles, apply_shift
from optimize.latent_space import PersonalizedSpace, PPlusCode, shifted_softplus
from optimize.losses import FrameTarget, LandmarkFn, keypoint_loss, keypoints_from_landmarks
from optimize.reenact import ReenactResult, mesh_landmarks, reenact
from optimize.reenact_settings import ReenactSettings
from optimize.smoothing import smooth_track
from optimize.track import LatentTrack, track_fingerprint
from personalize.device import render_batch
from personalize.errors import ProjectError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

MODES = ("exact", "fast", "refine")
REFINE_FEEDBACK = 5
"""Closed-loop passes per frame in refine mode (``closed_loop``): forward passes only. With the
previous code kept along the directions the descriptor does not determine, the loop does the
work the optimizer steps did before: on ``bench/fastmode.py``'s clip (refine's own first frame
then, three models) 5 passes + 1 step measured 0.030 / 0.038 / 0.042 px where 3 + 3 measured
0.031 / 0.051 / 0.050 px, and 4 + 1 0.032 / 0.038 / 0.043 px. Over seven models
(``bench/fastmode.py --skip-speed --first-frame keypoint-mix --model-seed 0..6``, pan clip)
refine measured 1.01 / 1.10 / 0.91 / 0.98 / 0.91 / 0.97 / 1.30x of the exact mode's keypoint
error (1.03x on average; a scratch harness: 0.86-1.29x, 1.05x). Seed 6 stays at 1.29x when refine
resumes from the exact take's own first frame (the bench's "refine (exact start)" control), so the
spread is not the first frame's (which float rounding settles after 69 or 80 steps); there
keeping nothing of the previous code measured 1.08x, its blend control off by 0.12 against the
exact mode's 0.04. Softer keeping does not fix that model without losing the others (scratch
harness, seeds 0-6, refine resumed from the exact take's first frame, 2-core machine of
2026-12-04): keeping as now 0.80 / 1.02 / 0.84 / 1.02 / 0.80 / 0.89 / 1.25x (mean 0.95x);
Kalman gains ``r / (r + q)`` per direction instead of 1 or 0 (r its spread / held-out error,
q 1 / 3 / 10 / 30) mean 1.12 / 1.13 / 1.08 / 1.08x, worst 1.27-1.34x; keeping nothing mean 1.12x
(0.96x on seed 6 alone, 1.33x on seed 0). Every model has one direction under the threshold
(r 6.7-8.9; the next 38-63, so thresholds of 9-38 keep the same); dropping that next one too
(threshold 100) measured 3.2-5.8x. Those models had the bench's quick training (100 steps of 4 on a pool of 256);
trained as the product trains them (``bench/fastmode.py --product-training``, seeds 0-6) refine
measured 0.85 / 0.93 / 0.98 / 0.86 / 0.88 / 0.98 / 1.09x (mean 0.94x; keeping nothing 1.00x)
and fast 1.27-1.76x (docs/ARCHITECTURE.md)."""
REFINE_STEPS = 1
"""Optimizer passes per frame after the closed loop (``FrameOptimizer.optimize``'s ``steps``:
codes scored, the start included). One scores the loop's code with the exact mode's loss (the
track keeps its terms, as for every frame) and keeps it: no Adam update, as an update would need
another pass to be scored. Why no update: on ``bench/fastmode.py``'s pan clip (scratch harness,
MLP seeds 0/1/2, the exact mode's first frame from the keypoint mixture) one update (2 passes)
measured 1.17-1.50x of the exact mode's keypoint error at 0.3 of its step size and 0.96-1.19x at
0.1, against 0.95-1.04x for the loop's code alone. The updates spend themselves on the loss's
Delta term, which the loop's codes raise (0.12 against the exact mode's 5e-5 on seed 1;
``bench/fastmode.py`` prints both modes' loss on their kept codes, and reruns an update with
``--refine-steps 2 --refine-lr 0.3``); without that term, updates measured 0.92-1.11x (seeds
0/1), no better either. Why the term is high: the model's codes leave the dilated hull P_beta
(the stand-in's 6 anchors: coefficients down to -0.11 where -beta is -0.02), and ``code`` writes
what lies below the optimizer's floor into Delta. (Not the layers: the stand-in has 4 style
inputs and the model shifts all of them.) Holding the model's codes in the hull, by the
Euclidean projection onto P_beta after every prediction, measured far worse in a scratch run
(seed 0: fast 3.68x and refine 2.31x of the exact mode, against 1.71x and 0.96x without):
the projection moves the controls the keypoints see, which the model had right. Moving the
codes into the hull only along the directions the descriptor does not determine (alternating
projections with ``reliable_projector``'s complement) did no better (1.95x and 1.16x): 82 % of
the clip's predictions were outside the hull, and half of them could not reach it that way.
With the loop's 5 passes, 6 passes + the render a frame after the first, against the exact
mode's ~40 + 1."""
REFINE_LR = 0.3
"""Refine's optimizer step size as a share of the exact mode's (``ReenactSettings.lr``). Adam's
first steps move every coordinate by about the step size whatever its gradient, which knocks a
start this close off its mark: at the full size the keypoint error after the loop rose to
0.048-0.060 px (0.030-0.047 px at 0.3, 0.029-0.045 px at 0.1; 0.3 leaves the steps room to
move the mouth and irises)."""
REFINE_CARRY = 0.8
"""Share of the previous frame's input correction that refine mode's loop starts from (module docstring)."""
FAST_GAIN = 0.7
"""Share of a frame's miss (driving descriptor minus the render's) that fast mode adds to the next
frames' model input (``fast_track``; module docstring)."""
FAST_CARRY = 0.8
"""Share of the running correction fast mode keeps from one frame to the next: old misses fade
(0.8^t), so a correction follows a miss that changes along the clip instead of adding up."""
FAST_STEP = 0.7
"""Share of a frame's own miss that moves the code fast mode keeps for it: the code rendered to
read the miss came from ``u_t``, the code kept from ``u_t + FAST_STEP * (p_t - p(render_t))``,
one closed-loop step (``closed_loop``) whose render is the take's own (module docstring)."""
FAST_FEEDBACK = 3
"""Renders fast mode reads per frame (``feedback_loop``): the first from the corrected input, each
next from the full step on from the best so far, checked (kept only if its keypoints read closer
to the frame's, else the step is halved), then the kept code takes ``FAST_STEP`` of the next step
unseen.

Why three: one run of a take is one sample. The loop decides on MediaPipe's reads, so float
rounding alone (a batched prediction, 1e-7 in ws) changes its takes, and so does noise of 1e-4 px
on the reads (MediaPipe's own jitter is ~100x that). Reruns with that noise (``bench/fastmode.py
--reruns 8 --first-frame keypoint-mix``, MLP seeds 0/1/2, pan clip), mean of fast's keypoint
error over the exact mode's (range): three renders 1.60 / 1.95 / 1.97x (1.52-1.69 / 1.84-2.01 /
1.71-2.46x), two 1.62 / 1.97 / 2.09x (1.56-1.68 / 1.85-2.10 / 1.87-2.40x), one 1.91 / 2.06 /
2.29x. A scratch harness (nine reruns, other trainings of the same models; the exact mode's own
error moves about 10 % between runs): three 1.72 / 1.69 / 1.70x (at most 1.90x), two 1.71-1.94x
(at most 2.30x); on the nodding clip three 0.97 / 1.15x against two 1.10 / 1.29x (seeds 0/2).
So three do a little better on average in every comparison, and neither keeps every run under
the issue's 2x. Each render costs a generator pass and a MediaPipe read; consecutive frames'
loops share generator calls (``_fast_with_feedback``), so on a GPU the third should cost little
more than its read; on the 2-core AMX CPU fast stays above the issue's 20x speed target: 22x
with three, 33-35x with two (``bench/fastmode.py``).

Where fast loses on the pan clip, and two loop rules that did not help (the frame-12 study and the
rules: scratch harnesses calling ``fast_track``, not kept in ``bench/``). The excess is uneven: ``bench/fastmode.py``
prints the frames whose median error over its reruns is above twice the exact mode's (seed 2, four
reruns: 9 of the 24 frames, 85 % of fast's excess over the exact mode). The worst, frame 12,
measured 0.16-0.21 px in all ten runs of seed 2 in a scratch harness (1e-4 px noise),
against the exact mode's 0.064 px. At that frame, twelve passes of ``feedback_loop`` still leave a
miss of 0.17 (rescaled descriptor), and the step has been halved to 1/512: no step along the miss
reads closer. The model is not a local inverse of the generator there, though the clip's own code
renders the driving frame itself (error 0). Two changes were tried on the step (MLP seeds 0/1/2, six runs each, five of
them with the noise; mean ratio to the exact mode against the unchanged rule in the same runs):

* mapping each miss through the inverse of the loop's response S (the read ~ S u + b, fitted on 161
  pool-like codes through model and MediaPipe) measured 1.67 / 1.96 / 1.87x on average against
  1.68 / 1.90 / 1.74x. On such codes S is near the identity (eigenvalues 0.74-1.04), while on the
  clip a step moved the read by 0.72 of itself on average (0.03-1.69; seed 0), so a global S cannot
  correct it.
* Broyden's secant update of the response from each frame's own renders (from the identity,
  steps capped at twice the miss) measured 1.80 / 1.78 / 1.86x against 1.79 / 1.69 / 1.73x.

Neither was kept.

Which try is best: the one whose keypoints read closest to the driving frame's (``Read.loss``, the
exact mode's keypoint term, Eq. 2, on the render's MediaPipe landmarks; refine's on its FaceMesh
ones), no longer the one with the smallest descriptor miss: the descriptor's elements are rescaled
to one range, not weighed by how far they move the keypoints, and the keypoints are what a take is
judged by. In a scratch harness calling ``fast_track`` (pan clip, one exact mode per model,
reruns with the 1e-4 px noise), mean of fast's error over the exact mode's, the descriptor's
judge against the keypoints': MLP seeds 0/1/2/3, thirteen runs each, 1.83 / 1.74 / 1.75 / 2.28x
against 1.62 / 1.66 / 1.71 / 2.21x (1.60 / 1.64 / 1.84 / 2.23x with the keypoints' depth left
out); seeds 2/0/1 in another training, six runs each, 1.86 / 1.79 / 1.89x against 1.66 / 1.60 /
1.79x (without depth); the nodding clip unchanged (seeds 0/2: 0.97 / 1.23x against 0.96 /
1.27x, without depth). Refine, MLP seeds 0-4, one run each (its reads are deterministic, but the
first frame it shares with the exact mode settles after 69 or 80 steps by float rounding alone):
1.00 / 1.07 / 0.98 / 1.06 / 1.05x against 1.09 / 1.13 / 0.90 / 1.04 / 0.93x, no change on
average. ``bench/fastmode.py --reruns 8`` (seeds 0/1/2) measured fast at 0.046 / 0.050 / 0.054 px
on average against 0.049 / 0.054 / 0.055 px before (1.63 / 1.77 / 1.75x of that run's exact mode;
single runs 1.43-2.19x, as rendered 1.13-1.91x). Seed 3 shows that fast's 2x is not met by every
model, even on average, on this clip."""
FAST_CHUNK = 256
"""Frames predicted at once by the open loop (no feedback)."""
INPUT_LIMIT = 2.0
"""Rescaled descriptor elements are clamped to +-INPUT_LIMIT * a: a driving face far outside
what the generator's samples showed is driven to the edge of the learned range, not beyond."""


class MotionPredictor:
    """Codes of driving frames from their landmarks: the motion model from the center of P."""

    def __init__(self, files: MotionModelFiles, space: PersonalizedSpace) -> None:
        if files.model.n_anchors != space.n_anchors:
            raise ProjectError(f"The motion model was trained for {files.model.n_anchors} anchors, "
                               f"the project has {space.n_anchors}.", "Train the motion model again.")
        self.files = files
        self.space = space
        self.descriptor = files.descriptor.to(space.device)
        self.model = files.model.to(space.device)
        self.source = torch.full((1, space.n_anchors), 1.0 / space.n_anchors, device=space.device)
        self.source_p_hat = self.descriptor.rescale(files.source_p.to(space.device))
        self.reliable = files.reliable.to(space.device) if files.reliable is not None else None

    @property
    def model_id(self) -> str:
        return self.files.model_id

    def clamp(self, p_hat: torch.Tensor) -> torch.Tensor:
        """Rescaled descriptors (T,d) held within +-INPUT_LIMIT * a (the learned range)."""
        limit = INPUT_LIMIT * self.descriptor.a
        return p_hat.clamp(-limit, limit)

    @torch.no_grad()
    def inputs(self, landmarks: np.ndarray | torch.Tensor, image_size: float) -> torch.Tensor:
        """landmarks (T,478,3) in pixels of crops of side ``image_size`` -> the model's inputs
        p_hat (T,d): the rescaled descriptor, clamped to the learned range."""
        return self.clamp(self.descriptor.rescale(self.descriptor.describe(landmarks, image_size)))

    @torch.no_grad()
    def coefficients_at(self, p_hat: torch.Tensor) -> torch.Tensor:
        """Model inputs p_hat (T,d) -> P+ coefficients (T,num_ws,N), from the center of P."""
        source = self.source_p_hat.expand(p_hat.shape[0], -1)
        shift = self.model(p_hat - source, source)
        return apply_shift(self.source.expand(p_hat.shape[0], -1), shift, self.space.num_ws)

    def tracked(self, coefficients: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """Coefficients (T,num_ws,N) that follow ``coefficients`` along the code directions the
        descriptor determines and keep ``previous`` (1 or T,num_ws,N; None: nothing to keep)
        along the others: ``previous + K (coefficients - previous)`` with K the model's
        reliable-direction projector (``fast_directions.reliable_projector``). Both sum to 1 per
        layer, so the result does too. A model without a projector returns ``coefficients``."""
        if previous is None or self.reliable is None:
            return coefficients
        return previous + (coefficients - previous) @ self.reliable.T

    def coefficients(self, landmarks: np.ndarray | torch.Tensor, image_size: float) -> torch.Tensor:
        """landmarks (T,478,3) in pixels of crops of side ``image_size`` -> P+ coefficients (T,num_ws,N)."""
        return self.coefficients_at(self.inputs(landmarks, image_size))

    @torch.no_grad()
    def ws(self, landmarks: np.ndarray | torch.Tensor, image_size: float) -> torch.Tensor:
        """(T,478,3) crop-pixel landmarks -> ws (T, num_ws, w_dim)."""
        return self.space.coefficients_to_ws(self.coefficients(landmarks, image_size))

    def code(self, coefficients: torch.Tensor) -> PPlusCode:
        """The optimizer's code (refine's start, the track's alpha/delta) for P+ coefficients
        (T,num_ws,N) whose layers each sum to 1; ``space.final_ws`` of it gives them back exactly.

        alpha~ is their mean over the layers, lifted to the optimizer's floor
        (``PersonalizedSpace.alpha_floor``) where it is below, and shrunk above the floor so it
        still sums to 1 (then the normalization of ``final_ws`` changes nothing); Delta the rest.
        """
        space = self.space
        floor = float(shifted_softplus(torch.tensor(space.alpha_floor / space.n_anchors),
                                       space.sharpness, space.beta)) + 1e-6
        lifted = coefficients.mean(dim=1).clamp_min(floor)
        above = lifted - floor
        room = 1.0 - space.n_anchors * floor
        alpha = floor + above * (room / above.sum(dim=1, keepdim=True).clamp_min(1e-12))
        return space.code_from_coefficients(alpha, coefficients - alpha[:, None, :])


def refine_settings(settings: ReenactSettings, steps: int = REFINE_STEPS, lr: float = REFINE_LR) -> ReenactSettings:
    """The optimizer's settings for refine mode: exactly ``steps`` steps per frame at a constant
    step size, ``lr`` (``REFINE_LR``) times the exact mode's.

    Why no ramp-up, decay or early stop: the start is already near the answer and the budget is
    a handful of steps; a 5-step ramp would spend most of it on tiny moves, and a decay to 10 %
    left the last steps too small to finish the move (measured before the closed loop existed,
    6 steps from the prediction on ``bench/fastmode.py``'s clip: 0.094 vs 0.084 px keypoint error
    with and without the decay).
    """
    steps = int(steps)
    return replace(settings, steps=steps, first_steps=steps, lr=settings.lr * lr, lr_warmup=0,
                   lr_decay=False, patience=steps, min_steps=steps)


class RenderReader:
    """Renders codes and reads the faces with MediaPipe, as the driving crops were read: fast
    mode's feedback (``fast_track``). One generator call for a batch of codes (``render``) and one
    MediaPipe pass per render, no gradients.

    Why MediaPipe and not the differentiable FaceMesh: the driving frames' descriptors come from
    MediaPipe (static mode, ``optimize.driving.detect_crop_landmarks``), and the feedback compares
    the render's descriptor with them; one instrument on both sides (see ``closed_loop``). It
    keeps one static-mode detector open (``LandmarkDetector``): close it, or use it as a context
    manager.
    """

    def __init__(self, generator: torch.nn.Module, device: torch.device | str = "cpu") -> None:
        from personalize.faces import LandmarkDetector

        self.generator = generator
        self.device = torch.device(device)
        self.size = int(generator.img_resolution)
        self.detector = LandmarkDetector()

    def __call__(self, ws: torch.Tensor) -> list[np.ndarray | None]:
        """ws (B,num_ws,w_dim) -> per render its landmarks (1,478,3) in its pixels (side ``size``),
        None where MediaPipe finds no face."""
        found = [crop_landmarks(self.detector, image) for image in self.render(ws)]
        return [None if f is None else f[None] for f in found]

    def render(self, ws: torch.Tensor) -> np.ndarray:
        """ws (B,num_ws,w_dim) -> (B,R,R,3) uint8 images: one pass on a GPU, one code a pass on a
        CPU (``personalize.device.render_batch``: a batch costs more an image there)."""
        step = render_batch(self.device, len(ws))
        with torch.no_grad():
            return np.concatenate([tensor_to_uint8(self.generator.synthesis(ws[i:i + step].to(self.device),
                                                                            noise_mode="const"))
                                   for i in range(0, len(ws), step)])

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> "RenderReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fast_track(anchors: np.ndarray, num_ws: int, driving: DrivingFrames, track_path: Path,
               predictor: MotionPredictor, reader: RenderReader | None = None, *,
               feedback: int = FAST_FEEDBACK, gain: float = FAST_GAIN, carry: float = FAST_CARRY,
               step: float = FAST_STEP, settings: ReenactSettings = ReenactSettings(), generator_id: str = "",
               image_size: int | None = None, restart: bool = False,
               progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> ReenactResult:
    """Predict every frame's code (fast mode) and save the finished track to ``track_path``.

    With a ``reader`` (the product's fast mode), frame t's loop (``feedback_loop``, ``feedback``
    renders read by ``reader``) starts from its descriptor plus a correction learned from the
    frames before it, ``u_t = p_t + correction``; the first render's miss
    ``m_t = p_t - p(render_t)`` moves the correction to ``carry * correction + gain * m_t``, and
    the code kept for the frame is ``step`` of the step on from the best render (module
    docstring). ``feedback`` generator passes a frame, the loops of consecutive frames overlapping
    so their renders share batches (``_fast_with_feedback``); saved as it goes, so a cancelled
    take resumes (its first new frame without a correction). Without one (``reader=None``,
    ``feedback`` 0, or ``gain`` and ``step`` 0), the open loop: every code straight from its
    descriptor, in batches, no generator pass.

    ``image_size``: the side of the driving crops the landmarks are in (default: read frame 0).
    A finished track made from the same inputs is reused; ``settings.smooth_sigma`` smooths it.
    ``generator_passes`` counts the feedback's renders.
    """
    started = time.perf_counter()
    track_path = Path(track_path)
    anchors = np.asarray(anchors, np.float32)
    n = driving.n_frames
    looped = reader is not None and feedback > 0 and (gain > 0 or step > 0)
    params: dict[str, object] = {"mode": "fast"}
    if looped:
        params.update(feedback_passes=int(feedback), feedback_gain=float(gain), feedback_carry=float(carry),
                      feedback_step=float(step))
    fingerprint = track_fingerprint(driving, anchors, f"{generator_id}|fast:{predictor.model_id}", params)
    space = predictor.space
    track: LatentTrack | None = None
    if track_path.exists() and not restart:
        existing = LatentTrack.load(track_path)
        if existing.fingerprint != fingerprint:
            raise ProjectError(
                f"The take folder {track_path.parent} holds a latent track made from another driving "
                "video, generator, motion model or mode.",
                "Restart the take to discard it, or give this take another name.")
        if existing.complete:
            if existing.smooth_sigma != settings.smooth_sigma:
                existing.smooth_sigma = float(settings.smooth_sigma)
                existing.ws_smooth = smooth_track(existing.ws, settings.smooth_sigma)
                existing.save(track_path)
            return ReenactResult(existing, 0, 0, time.perf_counter() - started,
                                 [int(i) for i in np.flatnonzero(~existing.face_found)])
        track = existing if looped else None
    size = float(image_size or driving.load_image(0).shape[1])
    if track is None:
        track = LatentTrack.empty(fingerprint, n, space.n_anchors, num_ws, space.w_dim, 0)
    valid = np.asarray(driving.valid, bool)
    first = track.frames_done
    if looped:
        passes = _fast_with_feedback(track, track_path, driving, size, predictor, reader, feedback, gain, carry,
                                     step, settings, progress, cancel)
    else:
        passes = 0
        for start in range(0, n, FAST_CHUNK):
            cancel.check()
            stop = min(n, start + FAST_CHUNK)
            _write_codes(track, slice(start, stop), predictor, predictor.coefficients(driving.landmarks[start:stop], size))
            progress(stop, n, f"fast: frame {stop}/{n}")
    _hold_faceless(track, valid, space)
    track.face_found[:] = valid
    track.frames_done = n
    track.smooth_sigma = float(settings.smooth_sigma)
    track.ws_smooth = smooth_track(track.ws, settings.smooth_sigma)
    track.complete = True
    track.save(track_path)
    return ReenactResult(track, n - first, passes, time.perf_counter() - started,
                         [int(i) for i in np.flatnonzero(~valid)])


def _write_codes(track: LatentTrack, frames: slice, predictor: MotionPredictor, coefficients: torch.Tensor) -> torch.Tensor:
    """Store P+ coefficients (T,num_ws,N) as the track's frames ``frames``; returns their ws (T,num_ws,w_dim)."""
    ws = predictor.space.coefficients_to_ws(coefficients)
    code = predictor.code(coefficients)
    track.ws[frames] = ws.cpu().numpy()
    track.alpha[frames] = code.alpha.cpu().numpy()
    track.delta[frames] = code.delta.cpu().numpy()
    return ws


@dataclass
class _FrameLoop:
    """One frame's feedback loop in flight (``_fast_with_feedback``): the frame, its
    ``feedback_steps`` coroutine, the input it asks to render next (1,d), and whether that is its
    first render."""

    t: int
    steps: Generator[torch.Tensor, torch.Tensor | None, Feedback]
    asked: torch.Tensor
    first: bool = True


def _fast_with_feedback(track: LatentTrack, track_path: Path, driving: DrivingFrames, size: float,
                        predictor: MotionPredictor, reader: RenderReader, renders: int, gain: float,
                        carry: float, step: float, settings: ReenactSettings, progress: ProgressFn,
                        cancel: CancelToken) -> int:
    """Fast mode's frames from ``track.frames_done`` on, each input corrected by the earlier
    frames' misses and each kept code by its own (``fast_track``); saves the track as it goes.
    Returns the renders made.

    Why the loops of consecutive frames run side by side: frame t+1's start needs only frame t's
    *first* read (the correction), not its whole loop, so frame t's k-th render and frame t+1's
    (k-1)-th are independent and go to the generator in one batch. With ``renders`` a frame, a
    take of T frames makes T + renders - 1 generator calls of up to ``renders`` codes instead of
    T x renders calls of one: a GPU's batch-1 pass leaves it mostly idle, so a batch of two should
    cost little more than one (three cost 1.5x one on an H200 at 1024 px; on a CPU, where it does not,
    ``RenderReader.render`` renders a batch's codes one at a time). The codes are those of
    running the frames one after another (the same reads in the same roles).
    """
    n = track.n_frames
    inputs = predictor.inputs(driving.landmarks, size)                     # (T,d)
    keypoints = keypoints_from_landmarks(torch.as_tensor(driving.landmarks, device=inputs.device), int(size))
    correction = torch.zeros_like(inputs[:1])
    loops: list[_FrameLoop] = []                 # in flight, oldest first
    finished: dict[int, Feedback | None] = {}    # frames done, not yet written (None: no face)
    next_frame = track.frames_done
    passes = unsaved = 0
    last_save = time.perf_counter()

    def start_next() -> None:
        """Start the next frame with a face (after the newest loop's first read)."""
        nonlocal next_frame, correction
        while next_frame < n:
            t = next_frame
            next_frame += 1
            if not driving.valid[t]:
                # a face that comes back may have moved anywhere: what was missed before says nothing
                correction = torch.zeros_like(correction)
                finished[t] = None
                continue
            steps = feedback_steps(inputs[t:t + 1], predictor.clamp(inputs[t:t + 1] + correction), renders,
                                   predictor.clamp)
            loops.append(_FrameLoop(t, steps, next(steps)))
            return

    def write(t: int, found: Feedback | None) -> None:
        nonlocal unsaved, last_save
        if found is not None:
            # the kept code: a share of the step on from the best render, unseen
            coefficients = predictor.coefficients_at(predictor.clamp(found.step(step)))
            _write_codes(track, slice(t, t + 1), predictor, coefficients)
        track.face_found[t] = found is not None
        track.frames_done = t + 1
        unsaved += 1
        if unsaved >= settings.save_every and time.perf_counter() - last_save >= settings.min_save_seconds:
            track.save(track_path)
            last_save, unsaved = time.perf_counter(), 0
        progress(t + 1, n, f"fast: frame {t + 1}/{n}")

    try:
        start_next()
        while True:
            while track.frames_done in finished:       # frames are written in order
                write(track.frames_done, finished.pop(track.frames_done))
            if not loops:
                break
            cancel.check()
            asked = torch.cat([loop.asked for loop in loops])
            found = reader(predictor.space.coefficients_to_ws(predictor.coefficients_at(asked)))
            passes += len(loops)
            first_read = False
            in_flight = []
            for loop, landmarks in zip(loops, found):
                read = (None if landmarks is None
                        else read_as(landmarks, reader.size, predictor, keypoints[loop.t:loop.t + 1]))
                if loop.first:   # only the newest loop can be at its first read
                    loop.first, first_read = False, True
                    correction = carry * correction
                    if read is not None:
                        correction = correction + gain * (inputs[loop.t:loop.t + 1] - read.descriptor)
                try:
                    loop.asked = loop.steps.send(read)
                    in_flight.append(loop)
                except StopIteration as done:
                    finished[loop.t] = done.value
            loops[:] = in_flight
            if first_read:
                start_next()
    except BaseException:
        if unsaved:
            track.save(track_path)   # keep every finished frame (cancel, Ctrl-C, an error)
        raise
    return passes


def _hold_faceless(track: LatentTrack, valid: np.ndarray, space: PersonalizedSpace) -> None:
    """Frames without a face take the previous frame's code (the center of P before the first face)."""
    previous: int | None = None
    center = space.center_code()
    for t in range(track.n_frames):
        if valid[t]:
            previous = t
            continue
        if previous is None:
            track.ws[t] = space.final_ws(center)[0].cpu().numpy()
            track.alpha[t] = center.alpha[0].cpu().numpy()
            track.delta[t] = center.delta[0].cpu().numpy()
        else:
            track.ws[t], track.alpha[t], track.delta[t] = (track.ws[previous], track.alpha[previous],
                                                           track.delta[previous])


@dataclass
class Feedback:
    """What ``feedback_loop`` found: the best model input tried (1,d), the miss read there (1,d;
    zeros when no render read a face), the step gain left after halving it on each try that did
    worse, the first try's miss (None when its render read no face), and the renders made."""

    best: torch.Tensor
    miss: torch.Tensor
    gain: float
    first_miss: torch.Tensor | None
    renders: int

    def step(self, share: float = 1.0) -> torch.Tensor:
        """The next input to try (1,d), unclamped: ``share`` of the step from the best try."""
        return self.best + share * self.gain * self.miss


class Read(NamedTuple):
    """What a render reads as: its descriptor (1,d) as the model's input (``MotionPredictor.inputs``:
    the loop steps in that space) and its keypoint loss to the driving frame (``read_as``: what
    judges the tries)."""

    descriptor: torch.Tensor
    loss: float


def read_as(landmarks: torch.Tensor | np.ndarray, image_size: float, predictor: MotionPredictor,
            wanted_keypoints: torch.Tensor) -> Read:
    """A render's landmarks (1,478,3) in its pixels -> ``Read``: the model's input, and the exact
    mode's keypoint term (Eq. 2, ``losses.keypoint_loss``) against the driving frame's normalized
    keypoints ``wanted_keypoints`` (1,66,3; ``losses.keypoints_from_landmarks``)."""
    landmarks = torch.as_tensor(landmarks, dtype=torch.float32, device=wanted_keypoints.device)
    keypoints = keypoints_from_landmarks(landmarks, int(image_size))
    return Read(predictor.inputs(landmarks, image_size), float(keypoint_loss(wanted_keypoints, keypoints)[0]))


def feedback_steps(wanted: torch.Tensor, start: torch.Tensor, passes: int,
                   clamp: Callable[[torch.Tensor], torch.Tensor]
                   ) -> Generator[torch.Tensor, Read | None, Feedback]:
    """``feedback_loop``'s rule as a coroutine: yields each model input (1,d) to render, is sent
    what that render reads as (``Read``; None: no face), and returns the ``Feedback``.

    Why a coroutine: fast mode runs the loops of consecutive frames side by side so that their
    renders share a generator batch (``_fast_with_feedback``); refine drives it one read at a time.
    """
    best, best_miss, best_loss, first_miss, gain = start, torch.zeros_like(start), math.inf, None, 1.0
    u, renders = start, 0
    for k in range(passes):
        got = yield u
        renders += 1
        if got is None and k == 0:
            break
        miss = None if got is None else wanted - got.descriptor
        if k == 0:
            first_miss = miss
        if got is not None and got.loss < best_loss:
            best, best_miss, best_loss = u, miss, got.loss
        else:
            gain *= 0.5
        if k < passes - 1:
            u = clamp(best + gain * best_miss)
    return Feedback(best, best_miss, gain, first_miss, renders)


def feedback_loop(read: Callable[[torch.Tensor], Read | None], wanted: torch.Tensor,
                  start: torch.Tensor, passes: int, clamp: Callable[[torch.Tensor], torch.Tensor]) -> Feedback:
    """Iterative error feedback on the motion model's input: ``passes`` rounds of render-and-read
    ``read(u)`` (a model input (1,d) -> what its render reads as, ``Read``; None when no face is
    found), miss ``wanted - read(u).descriptor``, and the next try
    ``u = clamp(best + gain * miss(best))`` from ``start`` (1,d).

    Why step from the best try so far and halve the gain after a worse one: a safeguard, as the
    feedback trusts the model to be a fair inverse of the generator; where a poor one overshoots,
    the loop backs off instead of wandering. "Best" is the lowest keypoint loss to the driving
    frame (``Read.loss``, the exact mode's keypoint term), not the smallest descriptor miss: the
    descriptor's elements are rescaled to one range, not weighed by how far they move the
    keypoints, and the keypoints are what a take is judged by (``FAST_FEEDBACK``: measured). A
    first render without a face ends the loop (the same input would read the same). The rule is
    ``feedback_steps``, shared by refine's ``closed_loop`` (through this function) and fast
    mode's ``fast_track``, which differ in what reads the renders and in the last step's share."""
    steps = feedback_steps(wanted, start, passes, clamp)
    try:
        u = next(steps)
        while True:
            u = steps.send(read(u))
    except StopIteration as finished:
        return finished.value


def closed_loop(generator: torch.nn.Module, predictor: MotionPredictor, landmarks: LandmarkFn,
                target: FrameTarget, start: torch.Tensor, passes: int,
                previous: torch.Tensor | None = None) -> torch.Tensor:
    """The model input whose rendered face reads like the driving frame: ``passes`` rounds of
    ``feedback_loop`` from ``start``, reading every render with the differentiable FaceMesh.

    start: (1,d) a rescaled descriptor (``MotionPredictor.inputs``); returns the next input to
    try (1,d), the full step from the best. ``previous``: (1,num_ws,N) coefficients whose unreliable directions every
    rendered code keeps (``MotionPredictor.tracked``). Both the driving frame (``wanted``) and the renders are read by ``landmarks`` with
    the frame's detector region (as the optimizer's loss reads its renders). Why not compare with
    the driving frame's MediaPipe landmarks, which the prediction starts from: the two
    instruments differ by a fraction of a pixel (0.3 px on the 128 px stand-in crops of
    test_fast_reenact), the size of the errors left, so the loop fed that difference back and
    made faces worse than no loop there (0.077-0.10 px against 0.036-0.069 px, four models, 80
    first-frame steps for the exact mode then); read with one instrument, 0.029-0.033 px (two).
    Why the unseen step rather than the best try seen: keeping the best of 5 or of 6 reads measured
    no better (scratch harness, MLP seeds 0-6 on the pan clip, seeds 0-2 on the nodding one: mean
    ratio to the exact mode 1.01x with the step, 1.01x / 1.00x keeping the best; single models
    moved by up to 0.1x either way).
    Each round is one generator and one FaceMesh pass, without gradients; one more FaceMesh pass
    reads the frame.
    """
    if passes <= 0:
        return start
    size = target.image.shape[-1]
    with torch.no_grad():
        measured = target.measure(landmarks, target.image)
        wanted, wanted_keypoints = predictor.inputs(measured, size), keypoints_from_landmarks(measured, size)

    def read(u: torch.Tensor) -> Read:
        with torch.no_grad():
            coefficients = predictor.tracked(predictor.coefficients_at(u), previous)
            image = generator.synthesis(predictor.space.coefficients_to_ws(coefficients), noise_mode="const")
            return read_as(target.measure(landmarks, image), image.shape[-1], predictor, wanted_keypoints)

    return predictor.clamp(feedback_loop(read, wanted, start, passes, predictor.clamp).step())


def refine_track(generator: torch.nn.Module, anchors: np.ndarray, driving: DrivingFrames, track_path: Path,
                 predictor: MotionPredictor, landmarks: LandmarkFn | None = None, *,
                 settings: ReenactSettings = ReenactSettings(), steps: int = REFINE_STEPS,
                 feedback: int = REFINE_FEEDBACK, carry: float = REFINE_CARRY, lr: float = REFINE_LR,
                 generator_id: str = "", device: torch.device | str = "cpu", restart: bool = False,
                 progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> ReenactResult:
    """Refine mode (module docstring): the first frame with a face as the exact mode does it with
    ``settings``; then per frame, ``feedback`` closed-loop passes from the prediction plus
    ``carry`` times the previous frame's input correction, keeping the previous code along the
    directions the descriptor does not determine, then ``steps`` steps of the per-frame
    optimizer at ``lr`` times ``settings.lr`` (``optimize.reenact``, resumable).
    ``generator_passes`` counts all of them.

    A resumed take starts its first new frame without a carried correction (only codes are saved).
    """
    size = float(driving.load_image(0).shape[1])
    if landmarks is None:
        landmarks = mesh_landmarks(device, int(generator.img_resolution), settings)
    last_frame, last_correction = -1, 0.0      # the last looped frame and its (1,d) input correction
    loop_passes = 0

    def start(t: int, previous: PPlusCode, target: FrameTarget) -> PPlusCode:
        nonlocal last_frame, last_correction, loop_passes
        p_t = predictor.inputs(driving.landmarks[t:t + 1], size)
        # A faceless previous frame only held a code: it has no correction to carry.
        carried = carry * last_correction if last_frame == t - 1 else 0.0
        kept = predictor.space.normalized_coefficients(previous).detach()
        u = closed_loop(generator, predictor, landmarks, target, predictor.clamp(p_t + carried), feedback, kept)
        last_frame, last_correction = t, u - p_t
        loop_passes += feedback
        return predictor.code(predictor.tracked(predictor.coefficients_at(u), kept))

    result = reenact(generator, anchors, driving, track_path, landmarks, settings=refine_settings(settings, steps, lr),
                     generator_id=f"{generator_id}|refine:{predictor.model_id}|feedback:{feedback}|carry:{carry:g}",
                     device=device, restart=restart, starts=start, first_settings=settings, progress=progress,
                     cancel=cancel)
    result.generator_passes += loop_passes
    return result


__all__ = ["MODES", "FAST_FEEDBACK", "FAST_GAIN", "FAST_CARRY", "FAST_STEP", "Feedback", "Read", "read_as", "feedback_loop", "RenderReader", "REFINE_FEEDBACK", "REFINE_STEPS", "REFINE_LR", "REFINE_CARRY", "MotionPredictor", "closed_loop",
           "refine_settings", "fast_track", "refine_track"]
