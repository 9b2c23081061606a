"""The pieces of a one-shot take, without the big networks: registry, crops and plan, MediaPipe
conditioning, source choice, the image-take folder (resume, fingerprint, cached source state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from optimize.backends import BACKENDS, FaceBatch, OneShotBackend, backend_info
from optimize.face_crops import official_crop
from optimize.image_take import ImageTake, reenact_images
from optimize.mediapipe_stickman import conditioning_from_mesh, transfer_shape
from optimize.oneshot_frames import DrivingPlan, driving_crops, lm68_from_mesh, plan_driving, source_face
from personalize.errors import ProjectError, UserError
from personalize.faces.quality import sharpest_frontal
from personalize.video import read_image
from tests.conftest import MEDIA


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """A real portrait and its MediaPipe landmarks (478,3)."""
    from personalize.faces import detect_landmarks

    image = read_image(MEDIA / "aligned" / "pitt.jpg")
    return image, detect_landmarks(image)


# ---------------------------------------------------------------------------------------- registry
def test_every_mode_declares_itself_and_the_weights_it_reads():
    from studio.weights import REGISTRY, files_for

    assert list(BACKENDS) == ["personal", "hyperreenact", "directions", "diffusionact"]
    for name, info in BACKENDS.items():
        assert info.name == name and info.title and info.summary
        assert ("personalization" in info.summary) and (info.needs_personalization == (name == "personal"))
        assert all(n in REGISTRY for n in info.weights + info.landmark_weights + info.setup_weights)
        assert set(files_for(name)) == set(info.setup_weights + info.weights_for("flame"))
    assert BACKENDS["personal"].output == "latents"
    assert {BACKENDS[n].output for n in ("hyperreenact", "directions", "diffusionact")} == {"images"}
    assert BACKENDS["diffusionact"].weights_for("mediapipe") == ("diffusionact-net",)
    with pytest.raises(UserError, match="Known modes"):
        backend_info("liveportrait")


# ---------------------------------------------------------------------------------------- crops
def test_source_crops_in_both_conventions(face):
    image, mesh = face
    official = source_face(image, mesh, "landmarks68")
    crop, lm = official_crop(image, lm68_from_mesh(mesh))
    assert np.array_equal(official.crop, crop)
    # the crop's transform maps the landmarks; official_crop maps pixel indices directly, we map pixel
    # areas (what a detector on the crop would find): they differ by half a pixel times (1 - scale)
    np.testing.assert_allclose(official.lm68, lm, atol=0.1)
    ffhq = source_face(image, mesh, "ffhq")
    assert ffhq.crop.shape == (256, 256, 3) and ffhq.mesh.shape == (478, 3)
    # the pitt portrait is FFHQ-aligned already: its FFHQ crop is the image, resized
    eyes = ffhq.lm68[36:48].mean(0)
    assert abs(eyes[0] - 128) < 6 and 95 < eyes[1] < 135


def test_plan_smooths_the_landmarks_and_fills_faceless_frames(face):
    image, mesh = face
    rng = np.random.default_rng(0)
    t = 12
    landmarks = np.stack([mesh + np.array([2.0 * i, 0, 0]) + rng.normal(0, 1.5, (1, 3)) * [1, 1, 0] for i in range(t)])
    valid = np.ones(t, bool)
    valid[5] = False
    landmarks[5] = np.nan
    plan = plan_driving("landmarks68", landmarks.astype(np.float32), valid, image.shape[1])
    assert plan.transforms.shape == (t, 3, 3) and np.isfinite(plan.mesh).all() and not plan.valid[5]
    # the per-frame jitter (1.5 px) is smoothed away in the crop boxes (integer boxes, as officially):
    # the box moves 2 px per frame, give or take the rounding, where the raw landmarks' box jumps about
    from optimize.face_crops import crop_box

    step = np.diff(-plan.transforms[:, 0, 2] / plan.transforms[:, 0, 0])
    raw = np.diff([crop_box(lm)[0] for lm in lm68_from_mesh(landmarks[6:])])
    assert np.abs(step - 2.0).max() <= 1.0 and np.ptp(raw) > np.ptp(step)
    crops = list(driving_crops(plan, iter([image] * t), start=10))
    assert len(crops) == 2 and crops[0].shape == (256, 256, 3)
    batch = plan.batch(crops, 10)
    assert batch.images.shape == (2, 3, 256, 256) and batch.reference.shape == (478, 3)
    assert plan.reference in np.flatnonzero(valid)


# ---------------------------------------------------------------------------------------- MediaPipe conditioning
def _similarity(points: np.ndarray, angle: float, scale: float, shift: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return scale * points @ rot.T + shift


def test_shape_transfer_moves_the_source_face_like_the_driving_one(face):
    _, mesh = face
    rng = np.random.default_rng(1)
    reference = mesh.astype(np.float64)
    source = _similarity(reference + rng.normal(0, 3, reference.shape), 0.1, 1.2, np.array([5.0, -3, 0]))
    # the driving face: the reference turned, scaled and moved, with the mouth opened
    expression = np.zeros_like(reference)
    expression[[13, 14, 17, 0], 1] = [0, 8, 8, 0]
    driving = _similarity(reference + expression, 0.3, 0.8, np.array([-10.0, 4, 0]))
    out = transfer_shape(source, driving[None], reference)[0]
    # = the source brought into the reference's frame, plus the expression, moved like the driving face
    from optimize.face_crops import umeyama_similarity
    from optimize.mediapipe_stickman import RIGID_POINTS

    to_source = umeyama_similarity(reference[list(RIGID_POINTS)], source[list(RIGID_POINTS)])
    source_in_reference = (source - to_source[:, 3]) @ np.linalg.inv(to_source[:, :3]).T
    expected = _similarity(source_in_reference + expression, 0.3, 0.8, np.array([-10.0, 4, 0]))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(transfer_shape(reference, driving[None], reference)[0], driving, atol=1e-6)


def test_conditioning_image_from_mediapipe(face):
    from optimize.stickman import LEFT_GAZE_COLOR, RIGHT_GAZE_COLOR

    image, mesh = face
    src = source_face(image, mesh, "ffhq")
    stick = conditioning_from_mesh(src.mesh[None], src.lm68[None])
    assert stick.shape == (1, 3, 256, 256)
    pixels = ((stick[0].permute(1, 2, 0).numpy() / 2 + 0.5) * 255).round().astype(int)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert (1, 1, 1) in colours                                   # the official canvas of ones
    assert LEFT_GAZE_COLOR in colours and RIGHT_GAZE_COLOR in colours   # both irises drawn
    for part_colour in ((255, 0, 255), (0, 255, 255), (255, 255, 0), (255, 255, 255)):
        assert part_colour in colours                              # eyes, lips, jaw


# ---------------------------------------------------------------------------------------- source choice
def test_sharpest_frontal_prefers_a_frontal_face_over_a_sharper_turned_one():
    records = [{"t": 0, "yaw": 30.0, "pitch": 0.0, "sharpness": 900.0, "flags": []},
               {"t": 1, "yaw": 2.0, "pitch": 1.0, "sharpness": 300.0, "flags": []},
               {"t": 2, "yaw": 1.0, "pitch": 0.0, "sharpness": 200.0, "flags": []},
               {"t": 3, "yaw": 0.0, "pitch": 0.0, "sharpness": 999.0, "flags": ["blurry", "too_small"]},
               {"t": 4, "yaw": None, "pitch": None, "sharpness": None, "flags": ["no_face"]}]
    assert sharpest_frontal(records) == 1
    assert sharpest_frontal(records[3:]) == 3            # nothing usable: any frame with a face
    assert sharpest_frontal(records[4:]) is None


# ---------------------------------------------------------------------------------------- image take
class _Counting(OneShotBackend):
    """A cheap backend that records its calls: the source's mean colour painted over each frame."""

    info = BACKENDS["hyperreenact"]

    def __init__(self, shift: float = 0.0) -> None:
        self.calls = {"source": 0, "frames": 0}
        self.shift = shift

    @classmethod
    def load(cls, weights, device="cpu", **options):  # noqa: ANN001, ANN206
        return cls()

    @property
    def settings(self) -> dict[str, object]:
        return {"shift": self.shift}

    def prepare_source(self, source: FaceBatch, on_step=None):  # noqa: ANN001, ANN201
        self.calls["source"] += 1
        return {"mean": source.images.mean(dim=(2, 3), keepdim=True)}

    def reenact(self, state, frames: FaceBatch, on_step=None):  # noqa: ANN001, ANN201
        self.calls["frames"] += len(frames)
        return frames.images * 0.5 + state["mean"] + self.shift


def _plan(image: np.ndarray, mesh: np.ndarray, n: int) -> DrivingPlan:
    return plan_driving("landmarks68", np.repeat(mesh[None], n, 0).astype(np.float32), np.ones(n, bool), image.shape[1])


def test_image_take_resumes_reuses_the_source_and_refuses_other_inputs(face, tmp_path: Path):
    from personalize.errors import Cancelled
    from personalize.progress import CancelToken

    image, mesh = face
    weights = {"deca": tmp_path / "deca_model.tar"}
    weights["deca"].write_bytes(b"x")
    source = source_face(image, mesh, "landmarks68")
    plan = _plan(image, mesh, 5)
    take = ImageTake(tmp_path / "take")

    def crops(start: int):  # noqa: ANN202
        return driving_crops(plan, iter([image] * (5 - start)), start=start)

    token, backend = CancelToken(), _Counting()

    def cancel_after_two(done: int, total: int, message: str = "") -> None:
        if done >= 2 and message.startswith("frame"):
            token.cancel()

    with pytest.raises(Cancelled):
        reenact_images(backend, weights, source, plan, crops, take, "drive", options={"steps": None},
                       progress=cancel_after_two, cancel=token)
    assert take.frames_done() == 2 and backend.calls == {"source": 1, "frames": 2}
    result = reenact_images(backend, weights, source, plan, crops, take, "drive")
    assert (result.frames_rendered, result.source_reused) == (3, True) and backend.calls == {"source": 1, "frames": 5}
    assert take.progress().complete and take.stored_options() == {"steps": None}
    first = read_image(take.frame_path(0))
    with pytest.raises(ProjectError, match="another driving video, source, mode or settings"):
        reenact_images(_Counting(shift=0.2), weights, source, plan, crops, take, "drive")
    with pytest.raises(ProjectError, match="another driving video"):
        reenact_images(backend, weights, source, plan, crops, take, "another drive")
    other = _Counting(shift=0.2)
    result = reenact_images(other, weights, source, plan, crops, take, "drive", restart=True)
    assert (result.frames_rendered, result.source_reused) == (5, False)   # the source's settings changed
    assert not np.array_equal(read_image(take.frame_path(0)), first)
    result = reenact_images(other, weights, source, plan, crops, take, "drive", restart=True)
    assert result.source_reused and other.calls["source"] == 1            # a restart keeps a valid source
    weights["deca"].write_bytes(b"another file")                         # a changed weights file
    result = reenact_images(other, weights, source, plan, crops, take, "drive", restart=True)
    assert not result.source_reused and other.calls["source"] == 2


def test_a_damaged_source_cache_is_recomputed(face, tmp_path: Path):
    image, mesh = face
    take = ImageTake(tmp_path / "t")
    take.folder.mkdir()
    take.source_state_path.write_bytes(b"not safetensors")
    assert take.load_source_state("x") is None
    take.save_source_state({"a": torch.ones(2)}, "fp")
    assert take.load_source_state("other") is None and torch.equal(take.load_source_state("fp")["a"], torch.ones(2))


def test_a_take_belongs_to_one_kind_of_mode(tmp_path: Path):
    """A latent track and output frames never share a take folder: refused, or replaced on restart."""
    from studio.jobs.reenact import claim_take
    from studio.project import Project

    project = Project.create(tmp_path / "p.studio")
    project.take_dir("t").mkdir(parents=True)
    project.track_path("t").write_bytes(b"a latent track")
    claim_take(project, "t", "personal", restart=False)
    with pytest.raises(ProjectError, match=r"made with another re-enactment mode \(personal\)"):
        claim_take(project, "t", "diffusionact", restart=False)
    claim_take(project, "t", "diffusionact", restart=True)
    assert not project.track_path("t").exists()


def test_edits_and_styles_are_refused_for_image_takes(tmp_path: Path):
    from studio.jobs.editing import preview_frame
    from studio.jobs.reenact import render_take_job
    from studio.project import Project

    project = Project.create(tmp_path / "p.studio")
    take = project.image_take("t")
    take.folder.mkdir(parents=True)
    (take.folder / "driving.mp4").write_bytes(b"")
    n = 2
    plan = DrivingPlan("ffhq", 256, np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 478, 3), np.float32),
                       np.zeros((n, 68, 2), np.float32), np.ones(n, bool), 0)
    take.save_plan(plan, "fp", "hyperreenact", {})
    assert project.take_output("t") == "images" and project.take_backend("t") == "hyperreenact"
    assert not project.take_is_complete("t") and project.take_progress("t").frames_done == 0
    with pytest.raises(UserError, match="edits and styles do not apply"):
        preview_frame(project, "t", edits={"smile": 1.0})
    with pytest.raises(UserError, match="semantic edits and styles cannot apply"):
        render_take_job(project, "t", tmp_path / "x.mp4", edits={"smile": 1.0})
    with pytest.raises(ProjectError, match=r"not finished \(0 of 2 frames\)"):
        render_take_job(project, "t", tmp_path / "x.mp4")


def test_diffusion_step_counts_and_presets():
    from studio.jobs.oneshot import render_steps_for

    diffusion, gan = BACKENDS["diffusionact"], BACKENDS["hyperreenact"]
    assert render_steps_for(diffusion, None, None) == 20 and render_steps_for(diffusion, None, "draft") == 10
    assert render_steps_for(diffusion, 5, None) == 5 and render_steps_for(gan, None, None) is None
    with pytest.raises(UserError, match=r"37 diffusion steps cannot be spaced.*\n.*e\.g\. 35, 36, 38, 39"):
        render_steps_for(diffusion, 37, None)
    with pytest.raises(UserError, match="Give one of them"):
        render_steps_for(diffusion, 5, "draft")
    with pytest.raises(UserError, match="no step count"):
        render_steps_for(gan, 5, None)
