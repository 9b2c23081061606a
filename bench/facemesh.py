"""Benchmark the differentiable FaceMesh: agreement with MediaPipe and speed. Prints figures.

    OMP_NUM_THREADS=1 .venv/bin/python bench/facemesh.py [--size 256] [--batch 8] [--repeats 5]

Agreement: on the aligned portraits in ../shared/media/aligned and square face crops of frames
of selfscan_woman2_12s.mp4, the distance between FaceMesh's 478 points and MediaPipe's own
(static mode, refine_landmarks=True) on the same crop, in pixels and % of the crop size.
Speed: ms per crop on CPU (and CUDA when present) for inference and forward+backward, next to
MediaPipe's own time per crop (its CPU runtime, includes detection).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from personalize.faces.facemesh import FaceMesh
from personalize.video import read_image

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def mediapipe_landmarks(fm, image: np.ndarray) -> np.ndarray | None:
    h, w = image.shape[:2]
    res = fm.process(image)
    if not res.multi_face_landmarks:
        return None
    return np.array([[p.x * w, p.y * h, p.z * w] for p in res.multi_face_landmarks[0].landmark])


def load_crops(size: int, mp_fm) -> dict[str, np.ndarray]:
    crops = {}
    for path in sorted((MEDIA / "aligned").glob("*.jpg")):
        img = read_image(path)
        crops[path.stem] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    cap = cv2.VideoCapture(str(MEDIA / "selfscan_woman2_12s.mp4"))
    for t in range(0, 354, 50):
        cap.set(cv2.CAP_PROP_POS_FRAMES, t)
        ok, frame = cap.read()
        if not ok:
            continue
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        lm = mediapipe_landmarks(mp_fm, frame)
        if lm is None:
            continue
        lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
        c, half = (lo + hi) / 2, (hi - lo).max() * 0.8
        side = int(round(2 * half))
        x0, y0 = int(round(c[0] - half)), int(round(c[1] - half))
        pad = cv2.copyMakeBorder(frame, side, side, side, side, cv2.BORDER_REFLECT)
        crop = pad[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]
        crops[f"woman2_f{t:03d}"] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    cap.release()
    return crops


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def timeit(fn, repeats: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call. On a shared CPU the wall time includes
    waiting for other jobs; the CPU time of this process (all its threads) does not."""
    fn()  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats, (time.process_time() - c0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import mediapipe as mp

    mp_fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1)
    crops = load_crops(args.size, mp_fm)
    names = list(crops)
    refs = {n: mediapipe_landmarks(mp_fm, crops[n]) for n in names}
    names = [n for n in names if refs[n] is not None]

    t0 = time.perf_counter()
    fm = FaceMesh.from_mediapipe("cpu")
    print(f"FaceMesh built from the mediapipe wheel in {1000 * (time.perf_counter() - t0):.0f} ms")
    x = to_tensor([crops[n] for n in names])
    with torch.no_grad():
        pred = fm(x).numpy()
    print(f"\nAgreement with MediaPipe (crop {args.size} px; distances in px, % of crop size)")
    print(f"{'crop':<16}{'mean':>8}{'%':>8}{'iris':>8}{'%':>8}{'max':>8}{'|dz|':>8}")
    all_mean, all_iris = [], []
    for i, n in enumerate(names):
        d = np.linalg.norm(pred[i, :, :2] - refs[n][:, :2], axis=-1)
        dz = np.abs(pred[i, :, 2] - refs[n][:, 2]).mean()
        all_mean.append(d.mean())
        all_iris.append(d[468:].mean())
        print(f"{n:<16}{d.mean():8.3f}{100 * d.mean() / args.size:8.3f}{d[468:].mean():8.3f}"
              f"{100 * d[468:].mean() / args.size:8.3f}{d.max():8.3f}{dz:8.3f}")
    print(f"{'ALL':<16}{np.mean(all_mean):8.3f}{100 * np.mean(all_mean) / args.size:8.3f}"
          f"{np.mean(all_iris):8.3f}{100 * np.mean(all_iris) / args.size:8.3f}   (target <= 0.5 %)")

    fb = FaceMesh.from_mediapipe("cpu", use_detector=False)
    with torch.no_grad():
        pred_fb = fb(x).numpy()
    d_fb = np.linalg.norm(pred_fb[..., :2] - np.stack([refs[n] for n in names])[..., :2], axis=-1)
    print(f"landmark-ROI fallback (no detector): mean {d_fb.mean():.3f} px "
          f"({100 * d_fb.mean() / args.size:.3f} %), worst crop {d_fb.mean(1).max():.3f} px")

    print(f"\nSpeed (torch threads: {torch.get_num_threads()})")
    one = x[:1]
    t_mp, c_mp = timeit(lambda: mp_fm.process(crops[names[0]]), args.repeats * 4)
    print(f"MediaPipe FaceMesh (its CPU runtime, static mode): {1000 * t_mp:7.1f} ms/crop wall "
          f"({1000 * c_mp:.1f} ms CPU)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        m = fm if dev == "cpu" else FaceMesh.from_mediapipe(dev)
        xb = x[: args.batch].to(dev)
        if xb.shape[0] < args.batch:
            xb = xb.repeat((args.batch + xb.shape[0] - 1) // xb.shape[0], 1, 1, 1)[: args.batch]
        x1 = one.to(dev)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def infer(inp):
            with torch.no_grad():
                m(inp)
            sync()

        def fwd_bwd(inp):
            i = inp.clone().requires_grad_(True)
            m(i)[..., :2].sum().backward()
            sync()

        for label, inp in (("batch 1", x1), (f"batch {args.batch}", xb)):
            n = inp.shape[0]
            ti, ci = timeit(lambda: infer(inp), args.repeats)
            tb, cb = timeit(lambda: fwd_bwd(inp), args.repeats)
            print(f"FaceMesh {dev:<4} {label:<9}: inference {1000 * ti / n:7.1f} ms/crop wall "
                  f"({1000 * ci / n:.1f} CPU), forward+backward {1000 * tb / n:7.1f} ms/crop wall "
                  f"({1000 * cb / n:.1f} CPU)")
    mp_fm.close()


if __name__ == "__main__":
    main()
