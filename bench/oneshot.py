"""Seconds per frame of the one-shot modes at 256 px, and DiffusionAct's render steps against quality.

Every mode runs through the backend interface the re-enactment job uses (``optimize.backends``):
the source is encoded once (``prepare_source``, timed on its own: a take caches it) and batches of
driving frames are re-enacted (``reenact``). Inputs are real faces: ``../shared/media/aligned/
pitt.jpg`` as the source, the first frames of ``driving_speech_audio_8s.mp4`` as the driving
video, both through MediaPipe and the modes' own crops.

DiffusionAct: for each render step count (``--diffusion-steps``) the same frames are rendered from
ONE cached inversion, with seconds per frame and the mean LPIPS of each frame to its 20-step
(official) render; then the fewest steps whose LPIPS stays within ``--lpips-bound``. Its
conditioning is MediaPipe's (``--landmarks mediapipe``, the default here) or, with the official
files, EMOCA + FLAME (``--landmarks flame``).

Weights: ``--real`` loads the official files from the studio's weights cache (``studio-cli models
fetch --backend X``; LPIPS uses the AlexNet file 'lpips-alex'); otherwise the networks have the
reference's deterministic filled weights (HyperReenact, directions) or random weights
(DiffusionAct, LPIPS backbone). Timings do not depend on the values; the LPIPS column does:
**with random weights it only shows that the measurement runs, not what fewer steps cost** -- run
with ``--real`` for the real answer. CUDA runs every mode in fp32; DiffusionAct also with its
official fp16 autocast (the only reduced precision tested against fp32: tests/test_oneshot_diffusionact.py).

    .venv/bin/python bench/oneshot.py                         # CPU, small defaults
    .venv/bin/python bench/oneshot.py --device cuda --frames 16 --batches 1,8,16
    .venv/bin/python bench/oneshot.py --real --backends diffusionact --diffusion-steps 20 10 5 4

Targets (issues 13 and 15, one H100): HyperReenact and directions <= 0.05 s/frame, DiffusionAct
<= 0.3 s/frame. Not a test: it only prints figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

from optimize.backends import BACKENDS, FaceBatch, OneShotBackend, load_backend
from optimize.backends.diffusionact import DiffusionActBackend, DiffusionActModel
from optimize.backends.directions import DirectionsBackend, DirectionsModel
from optimize.backends.hyperreenact import HyperReenactBackend, HyperReenactModel
from optimize.oneshot_frames import SourceFace, source_face
from personalize.faces import detect_landmarks
from personalize.perceptual import build_lpips
from personalize.video import iter_frames, read_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ONESHOT = SHARED / "reference" / "oneshot"
TARGETS = {"hyperreenact": 0.05, "directions": 0.05, "diffusionact": 0.3}
VOXCELEB_PARTS = {"arcface": ("hyperreenact_arcface", "facenet"), "deca": ("hyperreenact_deca_E_flame", "E_flame"),
                  "e4e": ("hyperreenact_e4e", "e4e"), "hypernet": ("hyperreenact_hypernet", "hypernet"),
                  "generator": ("hyperreenact_generator", "g_ema"), "a_matrix": ("directions", "A_matrix")}


# ------------------------------------------------------------------------------------ networks
def _filled_voxceleb() -> tuple[HyperReenactModel, DirectionsModel]:
    spec = importlib.util.spec_from_file_location("fill_weights", ONESHOT / "fill_weights.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    with torch.device("meta"):
        hr, dr = HyperReenactModel(), DirectionsModel()
    for part, (file, name) in VOXCELEB_PARTS.items():
        block = next(b for b in json.loads((ONESHOT / "keys" / f"{file}.json").read_text())["modules"]
                     if b["name"] == name)
        sd = fill.fill_state_dict({k: tuple(v) for k, v in block["keys"].items()}, 0, block["profile"])
        getattr(hr if part != "a_matrix" else dr, part).load_state_dict(sd, assign=True)
    for part in ("deca", "e4e", "generator"):
        setattr(dr, part, getattr(hr, part))
    for model in (hr, dr):
        model.truncation_target = torch.zeros(1, 512)
        model.eval().init_truncation_target()
    return hr, dr


def _random_diffusionact(device: torch.device, precision: str) -> DiffusionActBackend:
    from optimize.nets.diffae import DiffAELitModel
    from optimize.nets.reenactment_encoder import ReenactmentEncoder

    torch.manual_seed(0)
    model = DiffusionActModel(DiffAELitModel().eval(), ReenactmentEncoder().eval(), precision=precision)
    return DiffusionActBackend(model.to(device).requires_grad_(False), None)


def build(name: str, device: torch.device, real: bool, landmarks: str, precision: str,
          filled: dict[str, OneShotBackend]) -> OneShotBackend:
    if real:
        from studio.weights import require_weights

        info = BACKENDS[name]
        weights = {n: require_weights(n) for n in info.weights_for(landmarks)}
        options = {"landmarks": landmarks, "precision": precision} if name == "diffusionact" else {}
        return load_backend(name, weights, device, **options)
    if name == "diffusionact":
        return _random_diffusionact(device, precision)
    if not filled:
        hr, dr = _filled_voxceleb()
        filled.update(hyperreenact=HyperReenactBackend(hr), directions=DirectionsBackend(dr))
    backend = filled[name]
    backend.model.to(device)
    return backend


# ------------------------------------------------------------------------------------ inputs
def faces(crop: str, n_frames: int) -> tuple[SourceFace, list[SourceFace]]:
    """The source and ``n_frames`` driving faces (MediaPipe on each frame) in the crop convention."""
    image = read_image(SHARED / "media" / "aligned" / "pitt.jpg")
    source = source_face(image, detect_landmarks(image), crop)
    driving = []
    for frame in iter_frames(SHARED / "media" / "driving_speech_audio_8s.mp4"):
        mesh = detect_landmarks(frame)
        if mesh is not None:
            driving.append(source_face(frame, mesh, crop))
        if len(driving) == n_frames:
            break
    return source, driving


def batch_of(driving: list[SourceFace], b: int) -> FaceBatch:
    chosen = [driving[i % len(driving)] for i in range(b)]
    batch = FaceBatch(torch.cat([f.batch().images for f in chosen]), torch.cat([f.batch().lm68 for f in chosen]),
                      torch.cat([f.batch().mesh for f in chosen]))
    batch.reference = torch.from_numpy(driving[0].mesh).float()
    return batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: bool = True) -> float:  # noqa: ANN001
    """Seconds of one call: best of ``repeats`` (after one warm-up call)."""
    if warmup:
        fn()
        _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


# ------------------------------------------------------------------------------------ benches
@torch.no_grad()
def bench_speed(name: str, backend: OneShotBackend, device: torch.device, source: SourceFace,
                driving: list[SourceFace], batches: list[int], repeats: int, label: str) -> None:
    slow = name == "diffusionact"
    if not slow:
        backend.prepare_source(source.batch())         # warm-up
    _sync(device)
    t0 = time.perf_counter()
    state = backend.prepare_source(source.batch())
    _sync(device)
    line = [f"[{device.type} {label}] {name}: source once per take {time.perf_counter() - t0:.3f} s"]
    for b in batches:
        frames = batch_of(driving, b)
        sec = timed(lambda: backend.reenact(state, frames), device, 1 if slow else repeats,
                    warmup=not slow or device.type == "cuda")
        target = f" (target {TARGETS[name]} on an H100)" if device.type == "cuda" else ""
        line.append(f"batch {b}: {sec / b:.3f} s/frame{target}")
    print("; ".join(line))


@torch.no_grad()
def bench_diffusion_steps(backend: DiffusionActBackend, device: torch.device, source: SourceFace,
                          driving: list[SourceFace], steps: list[int], reference_steps: int, lpips,  # noqa: ANN001
                          bound: float, real: bool, label: str) -> None:
    frames = batch_of(driving, len(driving))
    state = backend.prepare_source(source.batch())
    if device.type == "cuda":       # kernels and cudnn autotuning outside the timings
        backend.steps = 2
        backend.reenact(state, frames)
    results: dict[int, tuple[float, torch.Tensor]] = {}
    for k in sorted(set(steps) | {reference_steps}, reverse=True):
        backend.steps = k
        _sync(device)
        t0 = time.perf_counter()
        out = backend.reenact(state, frames)
        _sync(device)
        results[k] = ((time.perf_counter() - t0) / len(frames), out.float())
    reference = results[reference_steps][1]
    print(f"[{device.type} {label}] DiffusionAct, {len(frames)} frames per batch, inversion "
          f"{backend.inversion_steps} steps (once per take):")
    print(f"{'steps':>6} {'s/frame':>9} {'LPIPS to ' + str(reference_steps):>12}")
    best = reference_steps
    for k, (sec, out) in sorted(results.items(), reverse=True):
        distance = float(lpips(out, reference).mean())
        if distance <= bound and k < best:
            best = k
        print(f"{k:>6} {sec:>9.3f} {distance:>12.4f}")
    note = "" if real else "   [random weights: plumbing only, not a quality result; run with --real]"
    print(f"fewest steps within LPIPS <= {bound}: {best} ({results[best][0]:.3f} s/frame){note}")


def _lpips_file(real: bool) -> Path | None:
    if not real:
        return None
    from studio.weights import require_weights

    return require_weights("lpips-alex")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="hyperreenact,directions,diffusionact")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda when present)")
    ap.add_argument("--batches", default=None, help="frames per reenact call (default 1,2 CPU; 1,8,16 CUDA)")
    ap.add_argument("--frames", type=int, default=None, help="driving frames for the step sweep (default 1 CPU, 8 CUDA)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--diffusion-steps", type=int, nargs="+", default=None,
                    help="render step counts to compare (default 20 10 5 4; 4 2 on the CPU)")
    ap.add_argument("--reference-steps", type=int, default=None,
                    help="the render the others are compared to (the official 20; 4 on the CPU, where a "
                         "256-px UNet call takes seconds: a plumbing check, not the real comparison)")
    ap.add_argument("--inversion-steps", type=int, default=None, help="default 50 (the official), 2 on the CPU")
    ap.add_argument("--landmarks", choices=("mediapipe", "flame"), default="mediapipe")
    ap.add_argument("--lpips-bound", type=float, default=0.05)
    ap.add_argument("--real", action="store_true", help="the official files from the studio's weights cache")
    args = ap.parse_args()
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; weights: "
          f"{'official files' if args.real else 'filled/random (timings only)'}")
    filled: dict[str, OneShotBackend] = {}
    for device_name in devices:
        device = torch.device(device_name)
        cuda = device.type == "cuda"
        batches = [int(b) for b in (args.batches or ("1,8,16" if cuda else "1,2")).split(",")]
        n_frames = args.frames or (8 if cuda else 1)
        for name in names:
            crop = BACKENDS[name].crop
            source, driving = faces(crop, max(n_frames, max(batches)))
            precisions = ["fp32", "fp16"] if (name == "diffusionact" and cuda) else ["fp32"]
            for precision in precisions:
                t0 = time.perf_counter()
                backend = build(name, device, args.real, args.landmarks, precision, filled)
                print(f"# {name} ({precision}) built in {time.perf_counter() - t0:.1f} s")
                if not isinstance(backend, DiffusionActBackend):
                    bench_speed(name, backend, device, source, driving, batches, args.repeats, precision)
                    continue
                backend.inversion_steps = args.inversion_steps or (50 if cuda else 2)
                backend.steps = 20
                if cuda or args.batches:     # 20 steps per frame: minutes per frame on a CPU
                    bench_speed(name, backend, device, source, driving, batches, args.repeats, precision)
                lpips = build_lpips(_lpips_file(args.real), random_backbone=not args.real, device=device)
                steps = args.diffusion_steps or ([20, 10, 5, 4] if cuda else [4, 2])
                reference = args.reference_steps or (20 if cuda else 4)
                bench_diffusion_steps(backend, device, source, driving[:n_frames], steps, reference, lpips,
                                      args.lpips_bound, args.real, precision)
        for backend in filled.values():
            backend.model.to("cpu")
    if not args.real:
        print("(HyperReenact/directions: the reference's filled weights; DiffusionAct and LPIPS: random weights)")


if __name__ == "__main__":
    main()
