"""Seconds per frame of the one-shot compositions (HyperReenact, latent directions) at 256 px.

Source encoding (e4e + ArcFace, or e4e + DECA) is done once and timed separately; driving frames are
re-enacted in batches (``--batches``). Prints figures, no asserts. Weights:
* ``--weights DIR`` with the official files (stylegan-voxceleb.pt, e4e-voxceleb.pt, data/deca_model.tar
  or deca_model.tar, insight_face.pth, hypernetwork.pt, A_matrix.pt): real networks;
* otherwise the deterministic filled weights of ../shared/reference/oneshot/fill_weights.py (timing
  does not depend on the values).
CUDA runs in float32 (no reduced precision is offered: none is tested against float32 yet).

    OMP_NUM_THREADS=2 .venv/bin/python bench/oneshot.py [--batches 1,4] [--repeats 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimize.backends.directions import DirectionsModel  # noqa: E402
from optimize.backends.hyperreenact import HyperReenactModel  # noqa: E402

ONESHOT = ROOT.parent / "shared" / "reference" / "oneshot"
PARTS = {"arcface": ("hyperreenact_arcface", "facenet"), "deca": ("hyperreenact_deca_E_flame", "E_flame"),
         "e4e": ("hyperreenact_e4e", "e4e"), "hypernet": ("hyperreenact_hypernet", "hypernet"),
         "generator": ("hyperreenact_generator", "g_ema"), "a_matrix": ("directions", "A_matrix")}


def _fill_module():
    spec = importlib.util.spec_from_file_location("fill_weights", ONESHOT / "fill_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filled_models() -> tuple[HyperReenactModel, DirectionsModel]:
    fill = _fill_module()
    with torch.device("meta"):
        hr, dr = HyperReenactModel(), DirectionsModel()
    for part, (file, name) in PARTS.items():
        block = next(b for b in json.loads((ONESHOT / "keys" / f"{file}.json").read_text())["modules"]
                     if b["name"] == name)
        sd = fill.fill_state_dict({k: tuple(v) for k, v in block["keys"].items()}, 0, block["profile"])
        target = getattr(hr if part != "a_matrix" else dr, part)
        target.load_state_dict(sd, assign=True)
    for part in ("deca", "e4e", "generator"):
        setattr(dr, part, getattr(hr, part))
    for model in (hr, dr):
        model.truncation_target = torch.zeros(1, 512)
        model.eval().init_truncation_target()
    return hr, dr


def real_models(folder: Path) -> tuple[HyperReenactModel, DirectionsModel]:
    from optimize.nets.official_checkpoints import OneShotWeights, build_directions, build_hyperreenact

    deca = folder / "data" / "deca_model.tar"
    weights = OneShotWeights(generator=folder / "stylegan-voxceleb.pt", e4e=folder / "e4e-voxceleb.pt",
                             deca=deca if deca.exists() else folder / "deca_model.tar",
                             arcface=folder / "insight_face.pth", hypernetwork=folder / "hypernetwork.pt",
                             a_matrix=folder / "A_matrix.pt")
    return build_hyperreenact(weights), build_directions(weights)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds of one call: best of ``repeats`` after one warm-up."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def bench(device: torch.device, hr: HyperReenactModel, dr: DirectionsModel, batches: list[int], repeats: int) -> None:
    data = np.load(ONESHOT / "golden_hyperreenact.npz")
    src = torch.from_numpy(data["src"]).to(device)
    tgt = torch.from_numpy(data["tgt"]).to(device)
    lm_src = torch.from_numpy(data["in_lm_src_crop"])[None].to(device)
    lm_tgt = torch.from_numpy(data["in_lm_tgt_crop"])[None].to(device)
    hr.to(device)
    dr.to(device)
    with torch.no_grad():
        t_hr_src = timed(lambda: hr.encode_source(src, lm_src), device, repeats)
        t_dr_src = timed(lambda: dr.encode_source(src, lm_src), device, repeats)
        hr_source, dr_source = hr.encode_source(src, lm_src), dr.encode_source(src, lm_src)
        print(f"[{device.type}] source encoding (once per take): HyperReenact {t_hr_src:.3f} s, "
              f"directions {t_dr_src:.3f} s")
        for b in batches:
            frames, lms = tgt.expand(b, -1, -1, -1).contiguous(), lm_tgt.expand(b, -1, -1)
            t_hr = timed(lambda: hr.reenact(hr_source, frames, lms), device, repeats)
            t_dr = timed(lambda: dr.reenact(dr_source, frames, lms), device, repeats)
            # HyperReenact breakdown
            t_deca = timed(lambda: hr.pose_features(frames, lms), device, repeats)
            _, f_pose = hr.pose_features(frames, lms)
            f_app = hr_source.f_app.expand(b, -1, -1, -1)
            t_hyp = timed(lambda: hr.hypernet(f_pose, f_app), device, repeats)
            deltas = hr.hypernet(f_pose, f_app)
            codes = hr_source.codes.expand(b, -1, -1)
            t_gen = timed(lambda: hr.generator(codes, deltas, 0.7, hr.truncation_target), device, repeats)
            t_plain = timed(lambda: hr.generator(codes, None, 0.7, hr.truncation_target), device, repeats)
            print(f"[{device.type}] batch {b}: HyperReenact {t_hr / b:.3f} s/frame "
                  f"(DECA crop+encoder {t_deca / b:.3f}, hypernetwork {t_hyp / b:.3f}, generator with deltas "
                  f"{t_gen / b:.3f}; plain generator {t_plain / b:.3f}); directions {t_dr / b:.3f} s/frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="folder with the official files")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: both when CUDA is present)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    t0 = time.perf_counter()
    hr, dr = real_models(args.weights) if args.weights else filled_models()
    print(f"networks: {'official files in ' + str(args.weights) if args.weights else 'filled seed-0 weights'} "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    batches = [int(b) for b in args.batches.split(",")]
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in devices:
        bench(torch.device(name), hr, dr, batches, args.repeats)


if __name__ == "__main__":
    main()
