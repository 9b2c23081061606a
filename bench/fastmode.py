"""Benchmark: fast / refine / exact re-enactment side by side, and live driving fps (issue #14).

Prints:
1. quality on the known-answer stand-in (``optimize.standin.WarpFaceGenerator``: a real portrait
   moved by the code; random StyleGAN2 weights draw no face, so errors need it): a motion model is
   learned on it (linear A, and the MLP variant; by default a quick training, 100 steps of 4 on
   a pool of 256, which earlier figures used; ``--product-training`` trains as the product does,
   which the issue's targets are about), then the same driving clip rendered from known
   codes is re-enacted in the three modes (fast also with the other kind of model and, as
   controls, reading one render a frame instead of ``FAST_FEEDBACK`` and without its feedback:
   the open loop), and, as a
   control, in the exact mode cut to refine's passes a frame ("exact@k": what that budget buys
   without the motion model), and refine resumed from the exact take's own first frame ("refine
   (exact start)": its spread without that frame's): keypoint error per mode (MediaPipe on the result vs MediaPipe on
   the driving frame, px of the crop), generator passes per frame (making the track + the
   render), the ratios the issue sets as targets, and each mode's mean error on the stand-in's
   five controls (what the keypoint error is made of: the open-mouth blend barely moves the
   keypoints, so it is the control the descriptor and the closed loop see least). Errors are of
   each mode's per-frame codes, and again "as rendered": after the take's temporal filter
   (``ReenactSettings.smooth_sigma``, the same for every mode), which is what a take shows. Fast's
   error is also taken apart control by control: with one control set to its true value, and with
   only that control as predicted; and fast's descriptor miss per element, with and without its
   feedback, with its lag-1 autocorrelation (the part earlier frames foretell, which the feedback
   can remove). Fast's feedback decides on MediaPipe's reads, so float rounding alone changes a
   take: ``--reruns`` reruns it (and one render a frame) with 1e-4 px of noise on the reads and
   prints the mean and range of its ratio to the exact mode (of the per-frame codes, and as
   rendered: each rerun's track through the take's filter), and the frames where its median
   error over the reruns is above twice the exact mode's (their share of fast's excess).
   ``--clip`` picks the driving clip (``CLIPS``). ``--driving-video`` adds real clips of other
   people (their first ``--real-frames`` frames, aligned as a take's): no known answer there and
   misses the stand-in cannot close, so it prints fast (with and without its step), the open loop
   and the exact mode side by side. ``--threads`` sets torch's CPU threads and ``--first-frame``
   the exact mode's first-frame start: from the nearest anchor the first frame (its loss is
   printed) ended on a plateau or converged depending on float rounding alone;
2. speed on an FFHQ-shaped StyleGAN2 (random weights, 256 px on the CPU; 1024 px on CUDA when
   present): seconds per frame of the fast mode measured (descriptor + motion model + its
   feedback's ``FAST_FEEDBACK`` generator passes and MediaPipe reads and the step's prediction,
   then the take's render; the open loop: the render), one fp32 generator pass's GFLOP and GFLOP/s (NCHW and channels-last), one
   optimizer step and one closed-loop pass measured, and exact / refine per frame
   from their passes in part 1;
3. live: ``optimize.live.LiveDriver`` on the real self-scan video (MediaPipe tracking, alignment,
   descriptor, motion model, one generator pass) on the FFHQ-shaped generator: frames per second.

Targets (issue #14): fast >= 20x faster than exact at <= 2x its keypoint error; refine >= 5x faster
at <= 1.1x; live >= 5 fps at 256 px on a 2-core CPU and >= 30 fps at 1024 px on one H100.

    OMP_NUM_THREADS=2 .venv/bin/python bench/fastmode.py              # CPU 256 (+ CUDA 1024 if present)
    .venv/bin/python bench/fastmode.py --quick                         # shorter clip, fewer training steps
    .venv/bin/python bench/fastmode.py --skip-speed --refine-feedback 0 --refine-steps 7 --refine-lr 1  # the old refine
    .venv/bin/python bench/fastmode.py --skip-speed --carry 0 --refine-lr 0.1     # refine variants
    .venv/bin/python bench/fastmode.py --skip-speed --model-seed 2                # another pair of motion models
    .venv/bin/python bench/fastmode.py --skip-speed --kind linear                 # refine with A alone
    .venv/bin/python bench/fastmode.py --skip-speed --first-frame keypoint-mix     # exact's first frame converged
    .venv/bin/python bench/fastmode.py --skip-speed --frames 12        # the clip of earlier runs
    .venv/bin/python bench/fastmode.py --skip-speed --pool 512 --max-mix 6        # other sample pools
    .venv/bin/python bench/fastmode.py --skip-speed --clip nod                    # a nodding clip
    .venv/bin/python bench/fastmode.py --skip-speed --fast-gain 0.5 --fast-carry 1  # fast's feedback variants
    .venv/bin/python bench/fastmode.py --skip-speed --fast-step 0     # fast without its step (the earlier frames' misses only)
    .venv/bin/python bench/fastmode.py --skip-speed --fast-feedback 1 # fast reading one render a frame
    .venv/bin/python bench/fastmode.py --skip-speed --threads 1                   # one CPU thread (float rounding)
    .venv/bin/python bench/fastmode.py --skip-speed --driving-video ../shared/media/driving_man_smile_wink_3s.mp4 \
        --driving-video ../shared/media/driving_speech_audio_8s.mp4           # real clips of other people
    .venv/bin/python bench/fastmode.py --device cuda --size 1024 --anchors 250 --skip-quality
    .venv/bin/python bench/fastmode.py --skip-speed --product-training --first-frame keypoint-mix  # the product's training (the targets)
Not a test: it only prints figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from optimize.driving import DrivingFrames, crop_landmarks, detect_crop_landmarks, tensor_to_uint8
from optimize.fast_directions import MODEL_KINDS, MotionModel, MotionModelFiles, MotionSettings, sample_codes, train_motion_model
from optimize.fast_reenact import (FAST_CARRY, FAST_FEEDBACK, FAST_GAIN, FAST_STEP, REFINE_CARRY, REFINE_FEEDBACK, REFINE_LR, REFINE_STEPS, MotionPredictor, RenderReader, closed_loop,
                                  fast_track, refine_settings, refine_track)
from optimize.latent_space import PersonalizedSpace
from optimize.losses import MeshLandmarks, ReenactLoss, keypoints_from_landmarks
from optimize.pose_expression import POSE_NAMES, fit_descriptor
from optimize.reenact import FrameOptimizer, ReenactResult, identity_reference, reenact
from optimize.reenact_settings import FIRST_FRAME_STARTS, ReenactSettings
from optimize.standin import CONTROL_NAMES, WarpFaceGenerator, warp_anchors
from optimize.track import LatentTrack

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("STUDIO_SHARED", ROOT.parent / "shared")) / "media"
"""The shared media: ../shared beside the checkout, or $STUDIO_SHARED as for the tests (``bench/gpu_bundle.sh``)."""
SELFSCAN = MEDIA / "selfscan_woman2_12s.mp4"
DEFAULT_KIND = MotionSettings().kind
SETTLED = 3
"""Errors are also averaged from this frame on: a first frame that stops short takes two more frames
to catch up (``ReenactSettings.first_steps``: from the nearest anchor, the default start, it did on
this clip; ``--first-frame keypoint-mix`` converges)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_of(generator) -> torch.device:
    return next(generator.buffers()).device


def _render(generator, space, coefficients) -> np.ndarray:
    with torch.no_grad():
        ws = space.coefficients_to_ws(torch.as_tensor(np.asarray(coefficients), dtype=torch.float32, device=space.device))
        return tensor_to_uint8(generator.synthesis(ws))


def _errors(generator, ws: np.ndarray, driving: DrivingFrames, size: int) -> np.ndarray:
    images = _render_ws(generator, ws)
    landmarks, valid = detect_crop_landmarks(images.__getitem__, len(images))
    got = keypoints_from_landmarks(torch.from_numpy(landmarks), size)
    want = keypoints_from_landmarks(torch.from_numpy(driving.landmarks), size)
    errors = ((got[..., :2] - want[..., :2]).norm(dim=-1).mean(dim=-1) * size).numpy()
    errors[~valid] = np.nan
    return errors


def _control_ablation(generator, ws: np.ndarray, true_ws: torch.Tensor, driving: DrivingFrames,
                      size: int) -> tuple[list[float], list[float]]:
    """Which of the stand-in's controls a mode's keypoint error is made of.

    ws (T, num_ws, w_dim) a mode's codes, true_ws the driving clip's -> for each control, the mean
    keypoint error (px) with that control set to its true value (the others as the mode left
    them), and with only that control as the mode left it (the others true). The stand-in's image
    depends on its controls alone, and its control matrix has orthonormal columns, so moving every
    layer by ``(c - c_now) @ mix.T`` sets the controls to ``c`` exactly.
    """
    with torch.no_grad():
        ws = torch.as_tensor(ws, device=_device_of(generator))
        got, want = generator.controls_of(ws), generator.controls_of(true_ws)

        def error(controls: torch.Tensor) -> float:
            moved = ws + ((controls - got) @ generator.mix.T)[:, None, :]
            return float(np.nanmean(_errors(generator, moved.cpu().numpy(), driving, size)))

        fixed, alone = [], []
        for j in range(got.shape[1]):
            one_right, one_wrong = got.clone(), want.clone()
            one_right[:, j], one_wrong[:, j] = want[:, j], got[:, j]
            fixed.append(error(one_right))
            alone.append(error(one_wrong))
    return fixed, alone


def _render_ws(generator, ws: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return tensor_to_uint8(generator.synthesis(torch.as_tensor(ws, device=_device_of(generator))))


CLIPS = {
    "pan": lambda t, n: [0.6 - 0.5 * t / (n - 1), 0.1, 0.0, 0.3, 0.5 * t / (n - 1), 0.0],
    "nod": lambda t, n: [0.2 + 0.3 * np.sin(t / 4), 0.3, 0.2 - 0.2 * np.sin(t / 4), 0.1, 0.1, 0.1],
}
"""The quality part's driving clips: anchor weights of frame t of n (each row is normalized to sum
to 1). 'pan' moves steadily from one mixture to another (the default, test_reenact's take);
'nod' swings back and forth, a period of about 25 frames."""


def _miss_autocorrelation(generator, predictor: MotionPredictor, ws: np.ndarray, driving: DrivingFrames,
                          size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per descriptor element, a mode's miss (the driving frame's p minus its render's, rescaled):
    its RMS over the clip and its lag-1 autocorrelation, how much of it earlier frames foretell
    (what fast mode's feedback can remove)."""
    landmarks, valid = detect_crop_landmarks(_render_ws(generator, ws).__getitem__, len(ws))
    miss = (predictor.inputs(driving.landmarks, size) - predictor.inputs(landmarks, size)).cpu().numpy()
    miss = miss[valid & np.asarray(driving.valid, bool)]
    rms = np.sqrt((miss ** 2).mean(axis=0))
    lag1 = np.array([np.corrcoef(miss[1:, j], miss[:-1, j])[0, 1] for j in range(miss.shape[1])])
    return rms, lag1


def _refine_from(exact: LatentTrack, tmp: Path, generator: torch.nn.Module, anchors: np.ndarray,
                 driving: DrivingFrames, predictor: MotionPredictor, mesh: MeshLandmarks, **options) -> ReenactResult:
    """Refine resumed from a copy of its own take whose first frame is the exact take's (the bench's
    run of ``refine.npz`` made it, so the fingerprint matches); its passes count that frame's."""
    track = LatentTrack.load(tmp / "refine.npz")
    for name in ("ws", "alpha", "delta", "face_found", "final_loss", "key_loss", "steps", "loss_curves"):
        getattr(track, name)[0] = getattr(exact, name)[0]
    track.frames_done, track.complete = 1, False
    track.save(tmp / "refine_exact_start.npz")
    result = refine_track(generator, anchors, driving, tmp / "refine_exact_start.npz", predictor, mesh, **options)
    result.generator_passes += int(exact.steps[0])
    return result


def quality(size: int, n_frames: int, steps: int, pool: int, batch: int = 4, refine_steps: int = REFINE_STEPS,
            feedback: int = REFINE_FEEDBACK, carry: float = REFINE_CARRY, lr: float = REFINE_LR,
            seed: int = 0, exact_first_steps: int | None = None, first_frame: str = ReenactSettings().first_frame,
            main_kind: str = DEFAULT_KIND,
            max_mix: int = MotionSettings().max_mix, clip: str = "pan", fast_feedback: int = FAST_FEEDBACK,
            fast_gain: float = FAST_GAIN,
            fast_carry: float = FAST_CARRY, fast_step: float = FAST_STEP,
            real_clips: tuple[Path, ...] = (), real_frames: int = 40, reruns: int = 8,
            device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Part 1; returns the mean generator passes per frame of the exact mode and of refine's
    optimizer steps (its closed-loop passes are ``feedback`` a frame). Fast and refine use the
    ``main_kind`` motion model; fast also runs with the other kind. ``device``: where the
    stand-in, the FaceMesh and the motion models run (MediaPipe's reads stay on the CPU). The
    product's training (``--product-training``) took 188-272 s a model on a 2-core CPU; on one
    H200, seven such runs at once took 440 s each (one GPU time-slices between processes; one
    alone is not timed), and their takes on CUDA did not run."""
    other_kind = next(k for k in MODEL_KINDS if k != main_kind)
    from personalize.faces.facemesh import FaceMesh

    generator = WarpFaceGenerator.from_media(MEDIA, size)
    anchors = warp_anchors(generator)
    generator = generator.to(device)
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    mesh = MeshLandmarks(FaceMesh.from_mediapipe(device=device), size)
    scan_codes = sample_codes(space.n_anchors, 41, 3, torch.Generator().manual_seed(5))[1:]
    scan_images = _render(generator, space, scan_codes)
    scan, ok = detect_crop_landmarks(scan_images.__getitem__, len(scan_images))
    path = [list(np.asarray(CLIPS[clip](t, n_frames)) / np.sum(CLIPS[clip](t, n_frames))) for t in range(n_frames)]
    driving = DrivingFrames.from_arrays(list(_render(generator, space, path)))
    settings = ReenactSettings()    # the take's temporal filter: errors are measured before and after it
    exact_settings = ReenactSettings(first_steps=exact_first_steps, first_frame=first_frame)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {}
        for kind in (main_kind, other_kind):
            t0 = time.perf_counter()
            trained = train_motion_model(generator, anchors, scan[ok], size, tmp / kind,
                                         MotionSettings(kind=kind, steps=steps, pool=pool, max_mix=max_mix, batch=batch, mesh_input=size, seed=seed,
                                                        checkpoint_every=10 ** 6),
                                         landmarks=mesh, device=device)
            held = trained.files.info["held_out_keypoint_px"]
            print(f"[quality] motion model {kind} (seed {seed}): {steps} steps of {batch}, {pool} samples mixing <= {max_mix} anchors, "
                  f"{time.perf_counter() - t0:.0f} s; "
                  f"held-out keypoint error {held['trained']:.3f} px (start {held['regression']:.3f} px)")
            models[kind] = MotionPredictor(trained.files, space)
        results = {}
        t0 = time.perf_counter()
        with RenderReader(generator, device) as reader:
            fast = fast_track(anchors, generator.num_ws, driving, tmp / "fast.npz", models[main_kind], reader,
                              feedback=fast_feedback, gain=fast_gain, carry=fast_carry, step=fast_step, settings=settings)
            results["fast"] = (fast, time.perf_counter() - t0)
            other = fast_track(anchors, generator.num_ws, driving, tmp / "other.npz", models[other_kind], reader,
                               feedback=fast_feedback, gain=fast_gain, carry=fast_carry, step=fast_step,
                               settings=settings)
            results[f"fast ({other_kind})"] = (other, 0.0)
            if fast_feedback != 1:   # the control: one render a frame (the design before FAST_FEEDBACK)
                results["fast (1 render)"] = (fast_track(anchors, generator.num_ws, driving, tmp / "one.npz",
                                                         models[main_kind], reader, feedback=1, gain=fast_gain,
                                                         carry=fast_carry, step=fast_step, settings=settings), 0.0)
            # fast's feedback makes accept/halve decisions on MediaPipe's reads, so float rounding
            # alone changes its takes: reruns with 1e-4 px of noise on the reads (MediaPipe's own
            # jitter is ~100x that) show the spread one run hides
            rerun_tracks = {fb: [fast_track(anchors, generator.num_ws, driving, tmp / f"rerun{fb}_{k}.npz",
                                            models[main_kind], _NoisyReader(reader, 1e-4, k), feedback=fb,
                                            gain=fast_gain, carry=fast_carry, step=fast_step,
                                            settings=settings).track for k in range(reruns)]
                            for fb in dict.fromkeys((fast_feedback, 2, 1))}
        # the control: fast without its feedback (every code straight from its descriptor)
        t0 = time.perf_counter()
        results["fast (open loop)"] = (fast_track(anchors, generator.num_ws, driving, tmp / "open.npz", models[main_kind],
                                                  settings=settings), time.perf_counter() - t0)
        t0 = time.perf_counter()
        refine = refine_track(generator, anchors, driving, tmp / "refine.npz", models[main_kind], mesh,
                              settings=exact_settings, steps=refine_steps, feedback=feedback, carry=carry, lr=lr,
                              device=device)
        results["refine"] = (refine, time.perf_counter() - t0)
        # the control: refine taking every direction of the code from the model (nothing kept)
        unkept = MotionPredictor(dataclasses.replace(models[main_kind].files, reliable=None), space)
        results["refine (keep nothing)"] = (refine_track(generator, anchors, driving, tmp / "unkept.npz", unkept, mesh,
                                                         settings=exact_settings, steps=refine_steps, feedback=feedback,
                                                         carry=carry, lr=lr, device=device), 0.0)
        t0 = time.perf_counter()
        exact = reenact(generator, anchors, driving, tmp / "exact.npz", mesh, settings=exact_settings, device=device)
        results["exact"] = (exact, time.perf_counter() - t0)
        # every mode's first frame is the exact mode's; later frames cost refine `budget` passes each
        first = int(exact.track.steps[0])
        # the control: refine resumed from the exact take's own first frame (float rounding settles
        # that frame after different step counts in two runs): refine's spread without that one
        results["refine (exact start)"] = (_refine_from(exact.track, tmp, generator, anchors, driving, models[main_kind],
                                                        mesh, settings=exact_settings, steps=refine_steps,
                                                        feedback=feedback, carry=carry, lr=lr, device=device), 0.0)
        budget = max(1, round((refine.generator_passes - first) / (n_frames - 1)))
        # the control: the exact mode cut to refine's passes a frame (same first frame), no motion model
        t0 = time.perf_counter()
        cut = reenact(generator, anchors, driving, tmp / "cut.npz", mesh,
                      settings=replace(exact_settings, steps=budget, min_steps=budget, lr_warmup=0,
                                       first_steps=exact_settings.first_frame_steps), device=device)
        results[f"exact@{budget}"] = (cut, time.perf_counter() - t0)
    errors = {name: _errors(generator, r.track.ws, driving, size) for name, (r, _) in results.items()}
    rendered = {name: float(np.nanmean(_errors(generator, r.track.best_ws(), driving, size)))
                for name, (r, _) in results.items()}
    with torch.no_grad():   # the stand-in's known answer, control by control
        true_ws = space.coefficients_to_ws(torch.tensor(path, dtype=torch.float32, device=device))
        true_controls = generator.controls_of(true_ws)
        control_errors = {name: (generator.controls_of(torch.as_tensor(r.track.ws, device=device)) - true_controls).abs().mean(dim=0)
                          for name, (r, _) in results.items()}
    print(f"[quality] stand-in {size}px, clip '{clip}': {n_frames} driving frames rendered from known codes; keypoint error = "
          f"MediaPipe on the result vs on the driving frame (mean over frames); refine: {feedback} closed-loop "
          f"passes + {refine_steps} optimizer steps a frame at {lr:g} of the step size, carry {carry:g}; fast and refine use the {main_kind} motion model")
    for name, (result, seconds) in results.items():
        passes = result.generator_passes / n_frames
        print(f"  {name:<21} error {np.nanmean(errors[name]):.3f} px (max {np.nanmax(errors[name]):.3f}; from frame "
              f"{SETTLED} on {np.nanmean(errors[name][SETTLED:]):.3f}); generator "
              f"passes/frame {passes:.1f} + 1 render; stand-in s/frame {seconds / n_frames:.3f}")
    print(f"[quality] mean absolute error of the stand-in's controls ({', '.join(CONTROL_NAMES)}; "
          "each moves the keypoints differently: the blend barely)")
    for name, value in control_errors.items():
        print(f"  {name:<21} " + "  ".join(f"{float(v):.3f}" for v in value))
    fixed, alone = _control_ablation(generator, results["fast"][0].track.ws, true_ws, driving, size)
    print(f"[quality] fast's keypoint error ({np.nanmean(errors['fast']):.3f} px) with one control set to its true value "
          "(the others as predicted) / with only that control as predicted (the others true), px:")
    for name, right, wrong in zip(CONTROL_NAMES, fixed, alone):
        print(f"  {name:<21} {right:.3f} / {wrong:.3f}")
    names = list(POSE_NAMES) + [f"pc{i + 1}" for i in range(models[main_kind].descriptor.dim - len(POSE_NAMES))]
    print(f"[quality] fast's descriptor miss per element ({', '.join(names)}): RMS / lag-1 autocorrelation over the clip "
          f"(feedback {fast_feedback} renders, gain {fast_gain:g}, carry {fast_carry:g}, step {fast_step:g}; what earlier "
          "frames foretell, it can remove)")
    for name in ("fast", "fast (open loop)", "exact"):
        rms, lag1 = _miss_autocorrelation(generator, models[main_kind], results[name][0].track.ws, driving, size)
        print(f"  {name:<21} " + "  ".join(f"{r:.3f}/{a:+.2f}" for r, a in zip(rms, lag1)))
    e = {k: float(np.nanmean(v)) for k, v in errors.items()}
    passes = {k: results[k][0].generator_passes / n_frames for k in ("exact", "refine")}
    later = {k: (results[k][0].generator_passes - first) / (n_frames - 1) for k in ("exact", "refine")}
    print(f"[quality] fast/exact error {e['fast'] / e['exact']:.2f}x (target <= 2x); refine/exact "
          f"{e['refine'] / e['exact']:.2f}x (target <= 1.1x; keeping nothing "
          f"{e['refine (keep nothing)'] / e['exact']:.2f}x; from the exact take's first frame "
          f"{e['refine (exact start)'] / e['exact']:.2f}x); fast with the {other_kind} model / exact "
          f"{e[f'fast ({other_kind})'] / e['exact']:.2f}x; fast without its feedback (open loop) / exact "
          f"{e['fast (open loop)'] / e['exact']:.2f}x"
          + (f"; fast reading one render a frame / exact {e['fast (1 render)'] / e['exact']:.2f}x" if "fast (1 render)" in e else ""))
    for fb, runs in rerun_tracks.items() if reruns else ():
        per_frame = np.array([_errors(generator, track.ws, driving, size) for track in runs])     # (reruns, T) px
        ratios = np.nanmean(per_frame, axis=1) / e["exact"]
        # what a take shows: each rerun's track through the take's temporal filter, against the exact mode's
        shown = np.array([np.nanmean(_errors(generator, track.best_ws(), driving, size)) for track in runs]) / rendered["exact"]
        print(f"[quality] fast with {fb} render(s) a frame over {reruns} reruns with 1e-4 px of noise on its reads: "
              f"mean {np.mean(ratios):.2f}x of the exact mode, range {min(ratios):.2f}-{max(ratios):.2f}x; "
              f"as rendered mean {np.mean(shown):.2f}x, range {min(shown):.2f}-{max(shown):.2f}x")
        if fb == fast_feedback:
            # where it loses: a few frames in every run, or noise spread over all (FAST_FEEDBACK's docstring)
            median, exact_frames = np.nanmedian(per_frame, axis=0), errors["exact"]
            worst = np.flatnonzero(median > 2 * exact_frames)
            excess = np.nansum(np.clip(median - exact_frames, 0, None))
            share = float(np.nansum((median - exact_frames)[worst]) / excess) if excess > 0 else 0.0
            print("[quality]   frames whose median error over those reruns is above 2x the exact mode's "
                  "(median / exact px): " + (", ".join(f"{t} ({median[t]:.3f} / {exact_frames[t]:.3f})" for t in worst)
                                              or "none") + f"; {share:.0%} of fast's excess over the exact mode")
    print(f"[quality] generator passes exact/refine per frame after the first (both start with the exact mode's "
          f"first frame, {first} passes; what a take's cost per frame approaches) "
          f"{(later['exact'] + 1) / (later['refine'] + 1):.1f}x (target >= 5x); over this {n_frames}-frame clip "
          f"{(passes['exact'] + 1) / (passes['refine'] + 1):.1f}x")
    cut = f"exact@{budget}"
    print(f"[quality] the exact mode cut to refine's passes ({cut}: {budget} steps a frame, no motion model) / exact "
          f"{e[cut] / e['exact']:.2f}x: what refine's budget buys without the model")
    print(f"[quality] as rendered (every mode's track through the take's temporal filter, sigma "
          f"{settings.smooth_sigma:g} frames): " + ", ".join(f"{k} {v:.3f} px" for k, v in rendered.items())
          + f"; fast/exact {rendered['fast'] / rendered['exact']:.2f}x (open loop "
          f"{rendered['fast (open loop)'] / rendered['exact']:.2f}x), refine/exact "
          f"{rendered['refine'] / rendered['exact']:.2f}x")
    settled = {k: float(np.nanmean(v[SETTLED:])) for k, v in errors.items()}
    print(f"[quality] from frame {SETTLED} on (after the exact mode's start-up): fast/exact "
          f"{settled['fast'] / settled['exact']:.2f}x, refine/exact {settled['refine'] / settled['exact']:.2f}x")
    print("[quality] the optimizer's loss (keypoints, crops and the Delta / sum regularizers) on the codes kept "
          "after the first frame, mean / its keypoint term: " + ", ".join(
              f"{k} {np.nanmean(results[k][0].track.final_loss[1:]):.4f} / {np.nanmean(results[k][0].track.key_loss[1:]):.4f}"
              for k in ("exact", "refine")) + " (refine's is its loop's code, scored)")
    print(f"[quality] the exact mode's first frame: {first} passes, final loss {exact.track.final_loss[0]:.4f} "
          f"(L_key {exact.track.key_loss[0]:.4f}; {torch.get_num_threads()} CPU threads)")
    for video in real_clips:
        _real_clip(video, real_frames, generator, anchors, mesh, models[main_kind], exact_settings,
                   fast_feedback, fast_gain, fast_carry, fast_step, device)
    out["exact_steps"], out["refine_steps"] = later["exact"], later["refine"] - feedback
    return out


def _real_clip(video: Path, n_frames: int, generator, anchors: np.ndarray, mesh: MeshLandmarks,
               predictor: MotionPredictor, exact_settings: ReenactSettings, feedback: int, gain: float,
               carry: float, step: float, device: torch.device) -> None:
    """Part 1's stand-in driven by a real clip of another person: its first ``n_frames`` frames
    aligned as a take's, fast with and without its step, the open loop and the exact mode."""
    from personalize.faces.prepare import prepare_video

    size = int(generator.img_resolution)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_video(video, tmp / "prepared", size=size)
        driving = DrivingFrames.from_crop_files(sorted((tmp / "prepared" / "crops").glob("*.png"))[:n_frames])
        tracks = {}
        with RenderReader(generator, device) as reader:
            for name, step_here in (("fast", step), ("fast (step 0)", 0.0)):
                tracks[name] = fast_track(anchors, generator.num_ws, driving, tmp / f"{step_here}.npz", predictor, reader,
                                          feedback=feedback, gain=gain, carry=carry, step=step_here,
                                          settings=exact_settings).track
        tracks["fast (open loop)"] = fast_track(anchors, generator.num_ws, driving, tmp / "open.npz", predictor,
                                                settings=exact_settings).track
        tracks["exact"] = reenact(generator, anchors, driving, tmp / "exact.npz", mesh, settings=exact_settings,
                                  device=device).track
    errors = {name: float(np.nanmean(_errors(generator, track.ws, driving, size))) for name, track in tracks.items()}
    print(f"[real clip] {video.name}: {driving.n_frames} frames of another person (misses the stand-in cannot close); "
          f"keypoint error / the exact mode's ({errors['exact']:.3f} px): "
          + ", ".join(f"{name} {value / errors['exact']:.2f}x" for name, value in errors.items() if name != "exact")
          + f" (step {step:g})")


class _NoisyReader:
    """A reader (``RenderReader``) whose landmarks get Gaussian noise of ``sigma`` px (seeded)."""

    def __init__(self, reader: RenderReader, sigma: float, seed: int) -> None:
        self.reader, self.sigma, self.size = reader, sigma, reader.size
        self.rng = np.random.default_rng(seed)

    def __call__(self, ws: torch.Tensor) -> list[np.ndarray | None]:
        return [None if found is None else found + self.rng.normal(0.0, self.sigma, found.shape).astype(np.float32)
                for found in self.reader(ws)]


def _ffhq_generator(size: int, device: torch.device):
    from personalize.stylegan2 import generator_from_kwargs
    from personalize.stylegan2.configs import FFHQ256_KWARGS, FFHQ1024_KWARGS

    torch.manual_seed(0)
    generator = generator_from_kwargs({256: FFHQ256_KWARGS, 1024: FFHQ1024_KWARGS}[size]).eval().to(device)
    generator.requires_grad_(False)
    return generator


def _predictor(generator, n_anchors: int, device: torch.device) -> MotionPredictor:
    """A motion model of the right shape on the FFHQ-shaped generator (its values do not change
    the cost): descriptor fitted on the real self-scan, random directions."""
    from personalize.faces import LandmarkTracker
    from personalize.faces.alignment import quad_from_landmarks, quad_transform, transform_points
    from personalize.video import iter_frames

    with torch.no_grad():
        anchors = generator.mapping(torch.randn(n_anchors, generator.z_dim, device=device), None)[:, 0]
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    scan = []
    with LandmarkTracker() as tracker:
        for t, frame in zip(range(120), iter_frames(SELFSCAN)):
            faces = tracker.process(frame)
            if t % 4 == 0 and faces.landmarks is not None:
                scan.append(transform_points(quad_transform(quad_from_landmarks(faces.landmarks), 256), faces.landmarks))
    descriptor = fit_descriptor(np.asarray(scan, np.float32), 256)
    descriptor.set_range(descriptor.describe(np.asarray(scan, np.float32), 256))
    model = MotionModel(descriptor.dim, n_anchors, min(8, generator.num_ws), DEFAULT_KIND)
    torch.nn.init.normal_(model.directions.weight, std=0.1)
    info = {"source_p": descriptor.describe(np.asarray(scan[:1], np.float32), 256)[0].tolist(), "model_id": "bench"}
    return MotionPredictor(MotionModelFiles(model.eval(), descriptor, info), space)


def _generator_pass(generator, ws: torch.Tensor, device: torch.device, repeats: int = 6) -> None:
    """One fp32 synthesis pass at batch 1: its GFLOP (``torch.utils.flop_counter``), the throughput
    it runs at, in NCHW and in channels-last, timed alternately so both see the same machine
    state (what ``optimize.live`` says a CPU without bf16 can do)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            generator.synthesis(ws, noise_mode="const")
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for channels_last in seconds:
                _sync(device)
                t0 = time.perf_counter()
                generator.synthesis(ws, noise_mode="const", channels_last=channels_last)
                _sync(device)
                seconds[channels_last].append(time.perf_counter() - t0)
    gflop = counter.get_total_flops() / 1e9
    nchw, last = (float(np.median(seconds[k])) for k in (False, True))
    print(f"[speed] {device.type} one fp32 generator pass: {gflop:.1f} GFLOP; NCHW {nchw:.3f} s "
          f"({gflop / nchw:.0f} GFLOP/s), channels-last {last:.3f} s ({gflop / last:.0f} GFLOP/s); "
          f"median of {repeats}, alternated")


def speed(size: int, device: torch.device, n_anchors: int, exact_steps: float, refine_steps: float,
          feedback: int = REFINE_FEEDBACK, assumed: bool = False) -> None:
    from personalize.faces import LandmarkDetector, detect_landmarks
    from personalize.faces.facemesh import FaceMesh
    from optimize.driving import image_to_tensor
    from optimize.standin import aligned_image

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    generator = _ffhq_generator(size, device)
    predictor = _predictor(generator, n_anchors, device)
    image = aligned_image(MEDIA / "aligned" / "watson.jpg", size)
    landmarks = detect_landmarks(image)
    frames = 8
    batch = np.repeat(landmarks[None], frames, axis=0).astype(np.float32)
    with torch.no_grad():
        generator.synthesis(predictor.ws(batch[:1], size).to(device), noise_mode="const")   # warm-up
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for t in range(frames):
            tensor_to_uint8(generator.synthesis(predictor.ws(batch[t:t + 1], size).to(device), noise_mode="const"))
    _sync(device)
    render_s = (time.perf_counter() - t0) / frames
    # fast's feedback reads each render with MediaPipe (RenderReader's detector, kept open): timed
    # on a real face (random weights draw none)
    with LandmarkDetector() as detector:
        crop_landmarks(detector, image)                                         # warm-up
        t0 = time.perf_counter()
        for _ in range(frames):
            crop_landmarks(detector, image)
        read_s = (time.perf_counter() - t0) / frames
    # its step predicts each kept code once more, from the corrected input (the motion model alone)
    inputs = predictor.inputs(batch, size)
    t0 = time.perf_counter()
    for t in range(frames):
        predictor.space.coefficients_to_ws(predictor.coefficients_at(inputs[t:t + 1]))
    _sync(device)
    predict_s = (time.perf_counter() - t0) / frames
    batched = 8 if device.type == "cuda" else 4
    with torch.no_grad():
        ws_batched = predictor.ws(batch[:batched], size).to(device)
        generator.synthesis(ws_batched, noise_mode="const")                     # warm-up (a new shape)
        _sync(device)
        t0 = time.perf_counter()
        tensor_to_uint8(generator.synthesis(ws_batched, noise_mode="const"))
    _sync(device)
    fast_batched_s = (time.perf_counter() - t0) / batched
    # while tracking, consecutive frames' loops overlap: one reader call of FAST_FEEDBACK codes a
    # frame (fast_reenact._fast_with_feedback; personalize.device.render_batch: one batch on a GPU only)
    with RenderReader(generator, device) as reader:
        pair = predictor.ws(batch[:FAST_FEEDBACK], size)
        reader.render(pair)                                                      # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(frames // FAST_FEEDBACK):
            reader.render(pair)
        _sync(device)
        wave_s = (time.perf_counter() - t0) / (frames // FAST_FEEDBACK)
    with torch.no_grad():   # the same codes as one batch, whatever the device (render_batch's choice)
        pair = pair.to(device)
        generator.synthesis(pair, noise_mode="const")                            # warm-up (a new shape)
        _sync(device)
        t0 = time.perf_counter()
        tensor_to_uint8(generator.synthesis(pair, noise_mode="const"))
        _sync(device)
        pair_batched_s = time.perf_counter() - t0
    # the feedback's call and reads while tracking, the step's prediction, then the take's render
    fast_s = wave_s + FAST_FEEDBACK * read_s + predict_s + min(render_s, fast_batched_s)
    _generator_pass(generator, predictor.ws(batch[:1], size).to(device), device)

    mesh = MeshLandmarks(FaceMesh.from_mediapipe(device=device), input_size=min(256, size))
    settings = ReenactSettings(steps=4, patience=10 ** 6)
    loss = ReenactLoss(mesh, settings.weights)
    target = loss.driving_target(image_to_tensor(image, size, device), torch.from_numpy(landmarks)[None].to(device))
    space = predictor.space
    reference = identity_reference(generator, space, mesh)
    optimizer = FrameOptimizer(generator, space, loss, refine_settings(settings, 4))
    optimizer.optimize(space.center_code(), target, reference, steps=2)      # warm-up
    _sync(device)
    t0 = time.perf_counter()
    result = optimizer.optimize(space.center_code(), target, reference, steps=4)
    _sync(device)
    step_s = (time.perf_counter() - t0) / len(result.loss_curve)
    source = predictor.inputs(batch[:1], size)
    closed_loop(generator, predictor, mesh, target, source, 1)                 # warm-up
    _sync(device)
    t0 = time.perf_counter()
    closed_loop(generator, predictor, mesh, target, source, feedback)
    _sync(device)
    loop_s = (time.perf_counter() - t0) / max(1, feedback)     # a pass, and a share of reading the frame
    exact_s = exact_steps * step_s + render_s        # the optimization, then the render
    refine_s = feedback * loop_s + refine_steps * step_s + render_s
    print(f"[speed] {device.type} {size}px, {n_anchors} anchors: a render {render_s:.3f} s/frame "
          f"({fast_batched_s:.3f} s/frame in batches of {batched}), MediaPipe on a {size}px face {read_s:.3f} s; "
          f"the step's prediction {predict_s * 1000:.1f} ms; a call of {FAST_FEEDBACK} codes {wave_s:.3f} s (as one batch {pair_batched_s:.3f} s); fast (that call, "
          f"{FAST_FEEDBACK} reads and the step while tracking, then the render) {fast_s:.3f} s/frame; open loop (the render "
          f"alone) {render_s:.3f} s/frame; one optimizer step {step_s:.3f} s; one "
          f"closed-loop pass {loop_s:.3f} s; exact {exact_steps:.1f} steps (a frame after the first) -> {exact_s:.2f} s/frame; refine "
          f"{feedback} passes + {refine_steps:.0f} steps -> {refine_s:.2f} s/frame"
          + (" (exact's steps: its budget, not measured: part 1 was skipped)" if assumed else ""))
    print(f"[speed] {device.type} {size}px: fast is {exact_s / fast_s:.0f}x faster than exact (target >= 20x; open "
          f"loop {exact_s / render_s:.0f}x), "
          f"refine {exact_s / refine_s:.1f}x (target >= 5x)")


def live(size: int, device: torch.device, n_anchors: int, seconds_limit: float) -> None:
    """Live fps at the default precision (``optimize.live.live_precision``) and, side by side, in
    fp32, with how far the default's images are from fp32's on the same codes; on CUDA also
    without overlapping frames (``LiveDriver.overlap``) and without replaying the render as a CUDA
    graph (``LiveDriver.graphed``), to show what each gains."""
    from optimize.live import LiveDriver, live_precision
    from personalize.video import iter_frames

    generator = _ffhq_generator(size, device)
    predictor = _predictor(generator, n_anchors, device)
    frames = [f for _, f in zip(range(150), iter_frames(SELFSCAN))]
    target = "5 fps on a 2-core CPU" if device.type == "cpu" else "30 fps at 1024 px on one H100"
    default = live_precision(device, generator)
    cuda = device.type == "cuda"
    runs = dict.fromkeys([(default, cuda, cuda), (default, cuda, False), (default, False, False),
                          ("fp32", cuda, cuda), ("fp32", cuda, False)])
    codes: dict[str, list[np.ndarray]] = {}
    for precision, overlap, graphed in runs:
        driver = LiveDriver(generator, predictor, device=device, precision=precision, overlap=overlap, graphed=graphed)
        driver.process(frames[0])  # warm-up
        parts: dict[str, float] = {}
        count = 0
        kept = codes.setdefault(precision, [])
        _sync(device)
        t0 = time.perf_counter()
        for frame in frames[1:]:
            result = driver.process(frame)
            for k, v in result.seconds.items():
                parts[k] = parts.get(k, 0.0) + v
            if result.ws is not None and len(kept) < 3:
                kept.append(result.ws)
            count += 1
            if time.perf_counter() - t0 > seconds_limit:
                break
        driver.finish()
        _sync(device)
        elapsed = time.perf_counter() - t0
        print(f"[live] {device.type} {size}px, {precision}{', frames overlapped' if overlap else ''}"
              f"{', one CUDA graph' if graphed else ''}: "
              f"{count / elapsed:.1f} fps over {count} frames of a "
              f"{frames[0].shape[1]}px video (" + ", ".join(f"{k} {v / count * 1000:.0f} ms" for k, v in parts.items())
              + f"; target {target})")
        if precision != "fp32" and overlap == cuda and graphed == cuda and kept:
            with torch.no_grad():
                ws = torch.from_numpy(np.stack(kept)).to(device)
                low = torch.cat([driver.render(w[None]) for w in ws])
                full = generator.synthesis(ws, noise_mode="const").float()
            print(f"[live] {precision} vs fp32 on the same codes: mean |difference| {float((low - full).abs().mean()):.4f}, "
                  f"max {float((low - full).abs().max()):.3f} (images in [-1, 1])")
        driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CPU at 256, and CUDA at 1024 if present)")
    parser.add_argument("--size", type=int, default=None, help="256 or 1024 (speed and live parts)")
    parser.add_argument("--anchors", type=int, default=250)
    parser.add_argument("--quick", action="store_true", help="6 driving frames, 20 training steps")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true", help="quality only (no speed or live part)")
    parser.add_argument("--frames", type=int, default=None, help="driving frames of the quality clip (default 24)")
    parser.add_argument("--train-steps", type=int, default=None, help="motion-model training steps (default 100; 0: the regression start and the MLP's fit alone)")
    parser.add_argument("--pool", type=int, default=None, help=f"motion-model sample pool (default 256; the product's {MotionSettings().pool})")
    parser.add_argument("--train-batch", type=int, default=None, help=f"motion-model training batch (default 4; the product's {MotionSettings().batch})")
    parser.add_argument("--product-training", action="store_true",
                        help="train the motion models as the product does (MotionSettings' steps, pool and batch: "
                             "3-5 minutes a model on a 2-core CPU, 10-11 for the quality part) unless the options above say otherwise")
    parser.add_argument("--max-mix", type=int, default=MotionSettings().max_mix,
                        help="anchors a pool sample mixes at most (MotionSettings.max_mix)")
    parser.add_argument("--exact-first-steps", type=int, default=None,
                        help="the exact mode's steps on the first frame (default: ReenactSettings'); 120 converges here")
    parser.add_argument("--first-frame", choices=FIRST_FRAME_STARTS, default=ReenactSettings().first_frame,
                        help="the exact mode's (and refine's) first-frame start (ReenactSettings.first_frame)")
    parser.add_argument("--kind", choices=MODEL_KINDS, default=DEFAULT_KIND,
                        help="the motion model kind fast and refine use (fast also runs with the other)")
    parser.add_argument("--model-seed", type=int, default=0,
                        help="seed of the motion models' training (pool, pairs): another seed, another model")
    parser.add_argument("--clip", choices=sorted(CLIPS), default="pan", help="the quality part's driving clip (CLIPS)")
    parser.add_argument("--fast-feedback", type=int, default=FAST_FEEDBACK,
                        help="renders fast mode's feedback reads per frame (0: the open loop)")
    parser.add_argument("--fast-gain", type=float, default=FAST_GAIN, help="fast mode's feedback gain (0: the open loop)")
    parser.add_argument("--fast-carry", type=float, default=FAST_CARRY, help="fast mode's feedback carry")
    parser.add_argument("--fast-step", type=float, default=FAST_STEP,
                        help="share of a frame's own miss that moves fast mode's code for it (0: only later frames use it)")
    parser.add_argument("--driving-video", type=Path, action="append", default=[],
                        help="also drive the stand-in with this real video's first --real-frames frames (repeatable)")
    parser.add_argument("--real-frames", type=int, default=40, help="frames of each --driving-video")
    parser.add_argument("--reruns", type=int, default=8,
                        help="fast's reruns with 1e-4 px of noise on its reads (its spread; 0: none)")
    parser.add_argument("--quality-device", default="cpu",
                        help="where part 1's stand-in, FaceMesh and motion models run (MediaPipe's reads stay on the CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    parser.add_argument("--refine-steps", type=int, default=REFINE_STEPS, help="refine mode's optimizer steps per frame")
    parser.add_argument("--refine-feedback", type=int, default=REFINE_FEEDBACK,
                        help="refine mode's closed-loop passes per frame (0: none, the optimizer alone)")
    parser.add_argument("--refine-lr", type=float, default=REFINE_LR,
                        help="refine's optimizer step size as a share of the exact mode's")
    parser.add_argument("--carry", type=float, default=REFINE_CARRY,
                        help="share of the previous frame's input correction refine's loop starts from (0: none)")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    product = MotionSettings()
    frames, steps = (6, 20) if args.quick else (24, product.steps if args.product_training else 100)
    frames, steps = args.frames or frames, steps if args.train_steps is None else args.train_steps
    pool = args.pool or (product.pool if args.product_training else 128 if args.quick else 256)
    batch = args.train_batch or (product.batch if args.product_training else 4)
    # without part 1, the exact mode's passes are taken as its per-frame budget (printed as such)
    counts = {"exact_steps": float(ReenactSettings().steps), "refine_steps": float(args.refine_steps)}
    if not args.skip_quality:
        counts = quality(256, frames, steps, pool=pool, batch=batch, refine_steps=args.refine_steps,
                         feedback=args.refine_feedback, carry=args.carry, lr=args.refine_lr, seed=args.model_seed,
                         exact_first_steps=args.exact_first_steps, first_frame=args.first_frame,
                         main_kind=args.kind, max_mix=args.max_mix,
                         clip=args.clip, fast_feedback=args.fast_feedback, fast_gain=args.fast_gain, fast_carry=args.fast_carry,
                         fast_step=args.fast_step, real_clips=tuple(args.driving_video), real_frames=args.real_frames,
                         reruns=args.reruns, device=torch.device(args.quality_device))
    runs = []
    if args.skip_speed:
        return
    if args.device:
        runs.append((torch.device(args.device), args.size or (1024 if args.device.startswith("cuda") else 256)))
    else:
        runs.append((torch.device("cpu"), args.size or 256))
        if torch.cuda.is_available():
            runs.append((torch.device("cuda"), 1024))
        else:
            print("[speed] no CUDA device here: the 1024 px GPU figures are not measured")
    for device, size in runs:
        speed(size, device, args.anchors, counts["exact_steps"], counts["refine_steps"], args.refine_feedback,
              assumed=args.skip_quality)
        live(size, device, args.anchors, seconds_limit=20.0)


if __name__ == "__main__":
    main()
