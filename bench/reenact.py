"""Benchmark: re-enactment speed (generator passes, seconds per driving frame) and keypoint error vs steps.

Prints:
1. speed: one driving frame (a real aligned face, MediaPipe keypoints) optimized in P+ of a random
   FFHQ-shaped generator (256 px on CPU; 1024 px on CUDA when present, N anchors from its mapping):
   seconds per step split into generator forward+backward and FaceMesh+loss, generator passes
   per frame and seconds per frame at the default step count;
2. quality: keypoint error of a cold start (mean L2 over the 66 keypoints, in pixels of a 256 crop, FaceMesh on
   the result vs MediaPipe on the target) against the number of steps, on a generator with a known
   answer (``optimize.standin.WarpFaceGenerator``: a real portrait moved by the code). Random StyleGAN2 weights draw no face, so error figures need that stand-in;
3. a warm-started take on the same stand-in, default settings side by side with a long run
   and with tighter early stopping: steps actually run per frame, generator passes, s/frame and
   the keypoint error per frame;
4. in the quality part also: cold starts from the center, from the nearest anchor and from the
   anchors' keypoint mixture (``ReenactSettings.first_frame``), and the
   cosine between autograd's keypoint-loss gradient and finite differences at the exact answer,
   with the FaceMesh region fixed per frame (the default) and found afresh at every step;
5. fidelity (issue 12): one known-answer clip of the stand-in with moving irises (head, mouth and
   gaze left -> right -> down), taken with the defaults next to the other warm-start noise units
   (the paper's literal sigma per coefficient), the other crop distance (the paper's L2 norm,
   Eq. 3-4) and the earlier keypoints (each iris normalized alone), at a few anchor counts: keypoint error, gaze error, control error, s/frame and frame-to-frame
   jitter (of the controls the image shows and of the W+ codes, beyond the known path's own motion).

    OMP_NUM_THREADS=2 .venv/bin/python bench/reenact.py            # CPU 256 (+ CUDA 1024 if present)
    .venv/bin/python bench/reenact.py --quick                       # fewer timed steps
    .venv/bin/python bench/reenact.py --device cuda --size 1024 --anchors 250
    .venv/bin/python bench/reenact.py --sections fidelity           # only part 5
Not a test: it only prints figures.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from optimize.anchor_keypoints import anchor_keypoints, first_frame_code
from optimize.driving import DrivingFrames, image_to_tensor
from optimize.latent_space import NOISE_UNITS, PersonalizedSpace
from optimize.losses import CROP_NORMS, MeshLandmarks, ReenactLoss, keypoints_from_landmarks
from optimize.reenact import FrameOptimizer, identity_reference, reenact
from optimize.reenact_settings import ReenactSettings
from optimize.standin import (WarpFaceGenerator, aligned_image, gaze_anchors, keypoint_gradient_cosine,
                              warp_anchors)

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _face(size: int) -> tuple[np.ndarray, np.ndarray]:
    from personalize.faces import detect_landmarks

    image = aligned_image(MEDIA / "aligned" / "watson.jpg", size)
    landmarks = detect_landmarks(image)
    assert landmarks is not None
    return image, landmarks


def speed(size: int, device: torch.device, n_anchors: int, steps_timed: int, default_steps: int) -> None:
    from personalize.faces.facemesh import FaceMesh
    from personalize.stylegan2 import generator_from_kwargs
    from personalize.stylegan2.configs import FFHQ256_KWARGS, FFHQ1024_KWARGS

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    kwargs = {256: FFHQ256_KWARGS, 1024: FFHQ1024_KWARGS}[size]
    torch.manual_seed(0)
    generator = generator_from_kwargs(kwargs).eval().to(device)
    for p in generator.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        anchors = generator.mapping(torch.randn(n_anchors, generator.z_dim, device=device), None)[:, 0]
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    mesh = MeshLandmarks(FaceMesh.from_mediapipe(device=device), input_size=min(256, size))
    settings = ReenactSettings(steps=steps_timed, patience=10 ** 6)
    loss = ReenactLoss(mesh, settings.weights)
    image, lm = _face(size)
    target = loss.driving_target(image_to_tensor(image, size, device), torch.from_numpy(lm)[None].to(device))
    reference = identity_reference(generator, space, mesh)
    optimizer = FrameOptimizer(generator, space, loss, settings)
    optimizer.optimize(space.center_code(), target, reference, steps=2)  # warm-up (cudnn, allocator)

    # split: generator forward+backward alone vs the whole step
    code = space.center_code()
    code.alpha.requires_grad_(True)
    code.delta.requires_grad_(True)
    reps = max(2, steps_timed // 2)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        img = generator.synthesis(space.to_ws(code), noise_mode="const")
        img.square().mean().backward()
    _sync(device)
    gen_s = (time.perf_counter() - t0) / reps
    _sync(device)
    t0 = time.perf_counter()
    result = optimizer.optimize(space.center_code(), target, reference, steps=steps_timed)
    _sync(device)
    step_s = (time.perf_counter() - t0) / len(result.loss_curve)
    print(f"[speed] {device.type} {size}px, {n_anchors} anchors, num_ws {generator.num_ws}: "
          f"{step_s:.3f} s/step (generator fwd+bwd {gen_s:.3f} s, FaceMesh+losses+Adam "
          f"{max(0.0, step_s - gen_s):.3f} s); 1 generator pass per step")
    # the FaceMesh + losses part alone, region fixed per frame (default) vs found at every step
    with torch.no_grad():
        image = generator.synthesis(space.to_ws(space.center_code()), noise_mode="const")
    per_step = {}
    for name, tgt in (("fixed region", target), ("region per step", dataclasses.replace(target, placement=None))):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            leaf = image.clone().requires_grad_(True)
            loss(leaf, tgt, reference, space, code).total.sum().backward()
        _sync(device)
        per_step[name] = (time.perf_counter() - t0) / reps
    print(f"[speed] {device.type} FaceMesh+losses fwd+bwd per step: fixed region {per_step['fixed region']:.4f} s "
          f"vs region found per step {per_step['region per step']:.4f} s "
          f"({per_step['region per step'] / per_step['fixed region']:.2f}x)")
    print(f"[speed] {device.type} {size}px: {default_steps} steps/frame -> {default_steps} generator passes, "
          f"{default_steps * step_s:.2f} s per driving frame (upper bound: early stopping ends most "
          f"frames sooner); first frame {2 * default_steps} steps")


def quality(step_list: list[int], lr: float, size: int = 256) -> None:
    from editing.render import tensor_to_uint8
    from personalize.faces import detect_landmarks
    from personalize.faces.facemesh import FaceMesh

    generator = WarpFaceGenerator.from_media(MEDIA, size)
    anchors = warp_anchors(generator)
    space = PersonalizedSpace(anchors, generator.num_ws)
    mesh = MeshLandmarks(FaceMesh.from_mediapipe(), input_size=size)
    # the last two lie between anchors, where the nearest anchor's run stalled (anchor_keypoints.keypoint_mixture)
    targets = [[0.7, 0.0, 0.0, 0.3, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0, 0.5, 0.0], [0.1, 0.1, 0.6, 0.1, 0.0, 0.1],
               [0.6, 0.1, 0.0, 0.3, 0.0, 0.0], [0.42, 0.0, 0.0, 0.0, 0.0, 0.58]]
    starts = ("center", "nearest-anchor", "keypoint-mix")
    rows: dict[str, list[list[float]]] = {name: [] for name in starts}
    cosines: dict[str, list[float]] = {"fixed region": [], "region per step": []}
    for coeff in targets:
        with torch.no_grad():
            driving = tensor_to_uint8(generator.synthesis(space.coefficients_to_ws(torch.tensor([coeff]))))[0]
        lm = detect_landmarks(driving)
        settings = ReenactSettings(first_lr=lr, patience=10 ** 6)
        loss = ReenactLoss(mesh, settings.weights)
        target = loss.driving_target(image_to_tensor(driving, size, "cpu"), torch.from_numpy(lm)[None])
        reference = identity_reference(generator, space, mesh)
        optimizer = FrameOptimizer(generator, space, loss, settings)

        def error(code) -> float:
            with torch.no_grad():
                kp = keypoints_from_landmarks(mesh(generator.synthesis(space.final_ws(code))), size)
            return float((kp[..., :2] - target.keypoints[..., :2]).norm(dim=-1).mean()) * size

        anchor_kp = anchor_keypoints(generator, space, mesh)
        for name in starts:
            start = first_frame_code(space, name, anchor_kp, target.keypoints[0].numpy())
            row = [error(start)]
            for steps in step_list:
                row.append(error(optimizer.optimize(start, target, reference, steps=steps,
                                                    lr=settings.first_lr).code))
            rows[name].append(row)
        exact = space.code_from_coefficients(torch.tensor([coeff]))
        cosines["fixed region"].append(keypoint_gradient_cosine(generator, space, mesh, target, exact))
        cosines["region per step"].append(
            keypoint_gradient_cosine(generator, space, mesh, dataclasses.replace(target, placement=None), exact))
    header = "steps:      start " + " ".join(f"{s:>6d}" for s in step_list)
    print(f"[quality] keypoint error of a cold start (px at {size}, mean over 66 points, "
          f"{len(targets)} targets, lr {lr}):")
    print("  " + header)
    for name in starts:
        mean = np.mean(np.array(rows[name]), axis=0)
        print(f"  {name:15s}" + " ".join(f"{v:6.3f}" for v in mean))
    print("[quality] cosine(autograd gradient, finite differences) of L_key at the exact answer, "
          "per target: " + "; ".join(f"{k} " + ", ".join(f"{c:+.2f}" for c in v) for k, v in cosines.items()))


def track_run(n_frames: int, size: int = 256) -> None:
    """A warm-started take on the stand-in (known codes moving smoothly), default settings side by
    side with a long run (4x the steps, no early stopping): steps, passes, s/frame, keypoint error."""
    import tempfile

    from editing.render import tensor_to_uint8
    from personalize.faces.facemesh import FaceMesh

    generator = WarpFaceGenerator.from_media(MEDIA, size)
    anchors = warp_anchors(generator)
    space = PersonalizedSpace(anchors, generator.num_ws)
    frames = []
    for t in range(n_frames):
        w = t / max(1, n_frames - 1)
        coeff = torch.tensor([[0.6 - 0.5 * w, 0.1, 0.0, 0.3, 0.5 * w, 0.0]])
        with torch.no_grad():
            frames.append(tensor_to_uint8(generator.synthesis(space.coefficients_to_ws(coeff)))[0])
    driving = DrivingFrames.from_arrays(frames)
    mesh = MeshLandmarks(FaceMesh.from_mediapipe(), input_size=size)
    target = keypoints_from_landmarks(torch.from_numpy(driving.landmarks), size)

    def errors(ws: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            kp = keypoints_from_landmarks(mesh(generator.synthesis(torch.from_numpy(ws))), size)
        return ((kp[..., :2] - target[..., :2]).norm(dim=-1).mean(dim=-1) * size).numpy()

    default = ReenactSettings()
    runs = {"default": default,
            "long": ReenactSettings(steps=4 * default.steps, first_steps=8 * default.steps, patience=10 ** 6),
            "patience 8": ReenactSettings(patience=8, min_steps=10)}  # tighter early stopping
    print(f"[track] {n_frames} warm-started frames at {size}px on the stand-in; keypoint error in px "
          "(FaceMesh on the result vs MediaPipe on the frame), raw codes | after the sigma-2 filter:")
    for name, settings in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = reenact(generator, anchors, driving, Path(tmp) / "latents.npz", mesh, settings=settings)
        track = result.track
        raw, smooth = errors(track.ws), errors(track.ws_smooth)
        print(f"  {name:10s} steps/frame first {track.steps[0]}, then mean {track.steps[1:].mean():5.1f}; "
              f"{result.generator_passes:5d} generator passes, {result.seconds / n_frames:5.2f} s/frame; "
              f"error mean {raw.mean():.3f} max {raw.max():.3f} | mean {smooth.mean():.3f} max {smooth.max():.3f}")


def _gaze_clip(generator, n_anchors: int, n_frames: int) -> tuple[np.ndarray, torch.Tensor]:
    """Anchors (n_anchors, w_dim) and the known coefficient path (T, n_anchors) of a clip that looks
    ahead, left, right and down while the head and mouth move (the 5 gaze anchors plus random ones;
    anchor 5, a random pose and expression, comes and goes)."""
    extra = max(1, n_anchors - 5)
    anchors = np.concatenate([gaze_anchors(generator), warp_anchors(generator, n=extra, seed=7)])
    path = torch.zeros(n_frames, anchors.shape[0])
    for t in range(n_frames):
        u = t / max(1, n_frames - 1)
        looks = [0.7 * max(0.0, 1 - abs(u - centre) / 0.3) for centre in (0.3, 0.65, 1.0)]  # left, right, down
        pose = 0.3 * float(np.sin(np.pi * u))
        path[t, 1], path[t, 2], path[t, 3] = looks
        path[t, 5] = pose
        path[t, 0] = 1.0 - sum(looks) - pose
    return anchors.astype(np.float32), path


@contextlib.contextmanager
def _irises_normalized_alone():
    """The earlier keypoint definition (each iris zero-meaned on its own, so gaze is lost), for
    comparison only: swaps the rows ``optimize.keypoints`` zero-means per part."""
    import optimize.keypoints as keypoints

    slices = keypoints.group_slices()
    rows = tuple(list(range(slices[g].start, slices[g].stop)) for part in keypoints.NORMALIZED_PARTS for g in part)
    original = keypoints._part_rows
    keypoints._part_rows = lambda: rows
    try:
        yield
    finally:
        keypoints._part_rows = original


def fidelity(n_frames: int, size: int, anchor_counts: list[int]) -> None:
    """Issue 12 on one known-answer clip: defaults vs the earlier warm-start noise vs the literal crop norm."""
    import tempfile

    from editing.render import tensor_to_uint8
    from optimize.standin import N_CONTROLS
    from personalize.faces.facemesh import FaceMesh

    generator = WarpFaceGenerator.from_media(MEDIA, size, gaze=True)
    mesh = MeshLandmarks(FaceMesh.from_mediapipe(), input_size=size)
    print(f"[fidelity] {n_frames} frames at {size}px of the stand-in with moving irises (ahead -> left -> "
          "right -> down, head and mouth moving); raw codes (no temporal filter). kp: keypoint error px "
          "(FaceMesh on the result vs MediaPipe on the frame); gaze: iris shift error px (known answer); "
          "ctrl: head/mouth control error; jitter: mean |frame-to-frame change - the known path's change| "
          "of the controls | of the W+ codes; steps: mean per warm frame")
    for count_index, n_anchors in enumerate(anchor_counts):
        anchors, path = _gaze_clip(generator, n_anchors, n_frames)
        space = PersonalizedSpace(anchors, generator.num_ws)
        true_ws = space.coefficients_to_ws(path)
        with torch.no_grad():
            driving = DrivingFrames.from_arrays(list(tensor_to_uint8(generator.synthesis(true_ws))))
            anchor_kp = anchor_keypoints(generator, space, mesh)
            true_c = generator.controls_of(true_ws)
        target_kp = keypoints_from_landmarks(torch.from_numpy(driving.landmarks), size)
        default = ReenactSettings(smooth_sigma=0.0)
        other_units = next(u for u in NOISE_UNITS if u != default.noise_units)
        other_norm = next(n for n in CROP_NORMS if n != default.weights.crop_norm)
        runs = {"defaults": default, f"noise units {other_units}": dataclasses.replace(default, noise_units=other_units)}
        if count_index == 0:
            runs[f"crop {other_norm}"] = dataclasses.replace(
                default, weights=dataclasses.replace(default.weights, crop_norm=other_norm))
            runs["irises alone (before)"] = default
        true_step_c = (true_c[1:] - true_c[:-1]).norm(dim=-1).mean()
        true_step_w = (true_ws[1:] - true_ws[:-1]).flatten(1).norm(dim=-1).mean()
        print(f"  {n_anchors} anchors (the known path moves {float(true_step_c):.3f} | {float(true_step_w):.3f} "
              f"per frame; warm-start noise std per coefficient: 'alpha' (paper) {default.noise_sigma}, "
              f"'uniform' {default.noise_sigma / n_anchors:.5f}; defaults: noise units "
              f"{default.noise_units}, crop {default.weights.crop_norm}):")
        for name, settings in runs.items():
            old_keypoints = name.startswith("irises alone")
            with tempfile.TemporaryDirectory() as tmp, \
                    (_irises_normalized_alone() if old_keypoints else contextlib.nullcontext()):
                result = reenact(generator, anchors, driving, Path(tmp) / "latents.npz", mesh, settings=settings,
                                 anchor_kp=None if old_keypoints else anchor_kp)
            ws = torch.from_numpy(result.track.ws)
            with torch.no_grad():
                kp = keypoints_from_landmarks(mesh(generator.synthesis(ws)), size)
                c = generator.controls_of(ws)
            kp_err = ((kp[..., :2] - target_kp[..., :2]).norm(dim=-1).mean(dim=-1) * size).numpy()
            gaze_err = (generator.gaze_pixels(c) - generator.gaze_pixels(true_c)).norm(dim=-1).numpy()
            ctrl_err = (c[:, :N_CONTROLS] - true_c[:, :N_CONTROLS]).norm(dim=-1).numpy()
            jitter_c = ((c[1:] - c[:-1]) - (true_c[1:] - true_c[:-1])).norm(dim=-1).mean()
            jitter_w = ((ws[1:] - ws[:-1]) - (true_ws[1:] - true_ws[:-1])).flatten(1).norm(dim=-1).mean()
            print(f"    {name:24s} kp mean {kp_err.mean():.3f} max {kp_err.max():.3f} | gaze mean "
                  f"{gaze_err.mean():.2f} max {gaze_err.max():.2f} | ctrl mean {ctrl_err.mean():.3f} | "
                  f"jitter {float(jitter_c):.3f} | {float(jitter_w):.3f} | steps {result.track.steps[1:].mean():4.1f}, "
                  f"{result.seconds / n_frames:5.2f} s/frame", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, plus cuda when present)")
    parser.add_argument("--size", type=int, default=None, help="256 or 1024")
    parser.add_argument("--anchors", type=int, default=None, help="anchor count (default 16 on CPU, 250 on CUDA)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--lr", type=float, default=ReenactSettings().first_lr,
                        help="step size of the cold starts in the quality table")
    parser.add_argument("--sections", default="speed,quality,track,fidelity",
                        help="comma-separated parts to run (default: all)")
    parser.add_argument("--fidelity-size", type=int, default=128, help="image size of the fidelity clip")
    parser.add_argument("--fidelity-anchors", default="6,250", help="anchor counts of the fidelity runs")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_grad_enabled(True)
    default_steps = ReenactSettings().steps
    runs = []
    if args.device:
        device = torch.device(args.device)
        runs.append((args.size or (1024 if device.type == "cuda" else 256), device))
    else:
        runs.append((args.size or 256, torch.device("cpu")))
        if torch.cuda.is_available():
            runs.append((1024, torch.device("cuda")))
    for size, device in runs if "speed" in sections else []:
        n_anchors = args.anchors or (250 if device.type == "cuda" else 16)
        steps = (4 if args.quick else 10) if device.type == "cpu" else 30
        speed(size, device, n_anchors, steps, default_steps)
    if not args.no_quality:
        if "quality" in sections:
            quality([5, 10, 20] if args.quick else [5, 10, 20, 40, 80], args.lr)
        if "track" in sections:
            track_run(6 if args.quick else 12)
        if "fidelity" in sections:
            fidelity(6 if args.quick else 10, args.fidelity_size,
                     [int(n) for n in args.fidelity_anchors.split(",")])


if __name__ == "__main__":
    main()
