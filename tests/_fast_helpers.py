"""Test helpers for the fast modes: real self-scan landmarks, and a motion model learned on the
known-answer stand-in generator (``optimize.standin``)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from optimize.driving import detect_crop_landmarks, tensor_to_uint8
from optimize.fast_directions import MotionSettings, sample_codes, train_motion_model
from optimize.latent_space import PersonalizedSpace
from tests.conftest import MEDIA

SCAN_SIZE = 256
SELFSCAN = MEDIA / "selfscan_woman2_12s.mp4"


@functools.lru_cache(maxsize=1)
def _scan_crop_landmarks(step: int) -> np.ndarray:
    from personalize.faces import LandmarkTracker
    from personalize.faces.alignment import quad_from_landmarks, quad_transform, transform_points
    from personalize.video import iter_frames

    out = []
    with LandmarkTracker() as tracker:
        for t, frame in enumerate(iter_frames(SELFSCAN)):
            faces = tracker.process(frame)   # every frame: the tracker follows the face
            if t % step or faces.landmarks is None:
                continue
            transform = quad_transform(quad_from_landmarks(faces.landmarks), SCAN_SIZE)
            out.append(transform_points(transform, faces.landmarks))
    return np.asarray(out, np.float32)


def scan_crop_landmarks(step: int = 6) -> np.ndarray:
    """Landmarks (T,478,3) of every ``step``-th frame of the shared self-scan, in the pixels of its
    FFHQ-aligned ``SCAN_SIZE`` crops (as ``scan/landmarks.npz`` holds them)."""
    return _scan_crop_landmarks(step).copy()


def render(generator: torch.nn.Module, space: PersonalizedSpace, coefficients) -> np.ndarray:
    """(B,N) or (B,L,N) coefficients -> (B,R,R,3) uint8 images of the generator."""
    with torch.no_grad():
        ws = space.coefficients_to_ws(torch.as_tensor(np.asarray(coefficients), dtype=torch.float32))
        return tensor_to_uint8(generator.synthesis(ws))


def standin_scan(generator: torch.nn.Module, space: PersonalizedSpace, count: int = 24, seed: int = 5) -> np.ndarray:
    """A stand-in 'self-scan': MediaPipe landmarks (T,478,3) of ``count`` random codes of P."""
    codes = sample_codes(space.n_anchors, count + 1, 3, torch.Generator().manual_seed(seed))[1:]
    images = render(generator, space, codes)
    landmarks, valid = detect_crop_landmarks(images.__getitem__, len(images))
    return landmarks[valid]


def train_standin_motion(generator: torch.nn.Module, anchors: np.ndarray, folder: Path, *, steps: int = 0,
                         pool: int = 32, batch: int = 2, kind: str = "linear", landmarks=None, **kwargs):
    """A motion model of the stand-in in ``folder`` (``steps`` 0: the least-squares start alone)."""
    space = PersonalizedSpace(anchors, generator.num_ws)
    size = int(generator.img_resolution)
    settings = MotionSettings(kind=kind, steps=steps, pool=pool, batch=batch, mesh_input=size,
                              checkpoint_every=kwargs.pop("checkpoint_every", 2), **kwargs)
    return train_motion_model(generator, anchors, standin_scan(generator, space), size, folder, settings,
                              landmarks=landmarks)


__all__ = ["SCAN_SIZE", "SELFSCAN", "scan_crop_landmarks", "render", "standin_scan", "train_standin_motion"]


def standin_project(root: Path, monkeypatch, size: int = 128):
    """A project whose 'personalized generator' is the stand-in (its loaders patched), with
    anchors, a prepared-scan record of stand-in landmarks and a selection, personalized."""
    import json

    import personalize.stylegan2 as stylegan2
    import studio.jobs.personalize as personalize_job
    import studio.jobs.reenact as reenact_job
    from personalize.perceptual import build_lpips
    from studio.project import Project
    from tests._reenact_helpers import warp_anchors, warp_face_generator

    generator = warp_face_generator(size)
    anchors = warp_anchors(generator)
    project = Project.create(root)
    project.generator_path.write_bytes(b"the stand-in generator (its loaders are patched)")
    np.save(project.anchors_path, anchors)
    scan = standin_scan(generator, PersonalizedSpace(anchors, generator.num_ws))
    np.savez(project.scan_landmarks_path, crop_landmarks=scan, valid=np.ones(len(scan), bool),
             size=np.array(size))
    project.selection_path.write_text(json.dumps({"frame_ids": list(range(len(scan)))}))
    for stage in ("capture", "prepare", "select", "personalize"):
        project.mark_done(stage)
    monkeypatch.setattr(reenact_job, "load_personalized_generator", lambda project, device: generator)
    monkeypatch.setattr(stylegan2, "load_generator", lambda path, device="cpu": generator)
    monkeypatch.setattr(personalize_job, "build_project_lpips",
                        lambda device="cpu": build_lpips(None, random_backbone=True, seed=0))
    return project, generator, anchors
