"""Long takes in chunks: the plan, the alignment and blending of overlaps, a stopped chunk that
resumes alone, and (slow) the known-answer comparison with the sequential take."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing.render import tensor_to_uint8
from optimize.chunks import ChunkPlan, blend_weights, frames_subset, merge_chunk_tracks, plan_chunks
from optimize.driving import DrivingFrames
from optimize.latent_space import PersonalizedSpace
from optimize.losses import MeshLandmarks, keypoints_from_landmarks
from optimize.reenact import reenact
from optimize.reenact_settings import ReenactSettings
from optimize.track import LatentTrack, load_track, track_fingerprint
from personalize.errors import Cancelled, ProjectError
from personalize.progress import CancelToken
from studio.jobs.reenact_chunks import ChunkedReenact
from studio.project import Project
from tests._reenact_helpers import warp_anchors, warp_face_generator

SIZE = 128


def test_plan_owns_every_frame_once_and_overlaps_its_neighbour() -> None:
    plan = plan_chunks(100, 3, overlap=8, fingerprint="f")
    owned = [f for c in plan.chunks for f in range(c.core, c.stop)]
    assert owned == list(range(100))
    assert [(c.start, c.core, c.stop) for c in plan.chunks] == [(0, 0, 33), (25, 33, 67), (59, 67, 100)]
    assert len(plan_chunks(15, 4, overlap=8).chunks) == 1       # chunks owning less than an overlap: fewer
    assert len(plan_chunks(24, 4, overlap=8).chunks) == 3
    weights = blend_weights(plan)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)
    np.testing.assert_allclose(weights[1, 25:33], np.arange(1, 9) / 9)  # the cold start fades in


def test_plan_is_kept_with_the_chunks(tmp_path) -> None:
    plan = plan_chunks(50, 2, overlap=4, fingerprint="abc")
    plan.save(tmp_path)
    assert ChunkPlan.load(tmp_path) == plan and ChunkPlan.load(tmp_path / "none") is None
    (tmp_path / "plan.json").write_text("{broken")
    with pytest.raises(ProjectError, match="Restart the take"):
        ChunkPlan.load(tmp_path)


def _chunk_track(ws: np.ndarray, found: np.ndarray) -> LatentTrack:
    track = LatentTrack.empty("c", ws.shape[0], 3, ws.shape[1], ws.shape[2], 4)
    track.ws[:] = ws
    track.face_found[:] = found
    track.alpha[:] = np.arange(ws.shape[0])[:, None]
    track.frames_done = ws.shape[0]
    return track


def test_merge_spreads_a_code_difference_over_the_overlap() -> None:
    """Two chunks fit the same moving face with codes 1.0 apart on every entry (another of the
    many codes of one face): the merged track is chunk 0's, then moves to chunk 1's in equal
    steps over the overlap, instead of jumping."""
    n, overlap = 80, 16
    speed = 0.1 + 0.05 * np.sin(np.arange(n) / 5.0)
    truth = np.cumsum(speed).astype(np.float32)[:, None, None] * np.ones((1, 2, 4), np.float32)
    plan = plan_chunks(n, 2, overlap=overlap, fingerprint="take")
    c0, c1 = plan.chunks
    found = np.ones(n, bool)
    found[60] = False
    tracks = [_chunk_track(truth[c0.start:c0.stop], found[c0.start:c0.stop]),
              _chunk_track(truth[c1.start:c1.stop] + 1.0, found[c1.start:c1.stop])]
    merged = merge_chunk_tracks(plan, tracks, smooth_sigma=2.0)
    np.testing.assert_allclose(merged.ws[:c1.start], truth[:c1.start])        # chunk 0 alone
    np.testing.assert_allclose(merged.ws[c1.core:], truth[c1.core:] + 1.0)    # chunk 1 alone
    shift = (merged.ws - truth)[:, 0, 0]
    np.testing.assert_allclose(np.diff(shift[c1.start - 1:c1.core]), 1.0 / (overlap + 1), rtol=1e-5)
    assert merged.complete and merged.frames_done == n and merged.fingerprint == "take"
    assert not merged.face_found[60] and merged.face_found[59]
    assert merged.alpha[c1.core, 0] == c1.core - c1.start                        # records from the owner
    assert merged.ws_smooth.shape == merged.ws.shape
    with pytest.raises(ValueError, match="finished"):
        tracks[1].frames_done -= 1
        merge_chunk_tracks(plan, tracks, 2.0)


def test_frames_subset_is_a_take_of_its_own() -> None:
    images = [np.full((4, 4, 3), i, np.uint8) for i in range(6)]
    frames = DrivingFrames.from_arrays(images, landmarks=np.zeros((6, 478, 3)), valid=np.arange(6) % 2 == 0)
    part = frames_subset(frames, 2, 5)
    assert part.n_frames == 3 and part.load_image(0)[0, 0, 0] == 2 and part.valid.tolist() == [True, False, True]
    assert part.content_hash != frames.content_hash != frames_subset(frames, 1, 4).content_hash


@pytest.fixture(scope="module")
def face_mesh():
    from personalize.faces.facemesh import FaceMesh

    return FaceMesh.from_mediapipe()


@pytest.fixture(scope="module")
def stand_in():
    generator = warp_face_generator(SIZE)
    anchors = warp_anchors(generator)
    return generator, anchors, PersonalizedSpace(anchors, generator.num_ws)


def _moving_face(generator, space, n: int) -> tuple[DrivingFrames, torch.Tensor]:
    """A known path (head turning and nodding, mouth opening and closing), frames rendered by the
    stand-in, MediaPipe landmarks detected on them as on a real driving video."""
    t = np.arange(n) / 23.0  # one cycle of head motion per second
    path = np.stack([0.5 - 0.3 * np.sin(2 * np.pi * t), 0.1 + 0.2 * np.cos(2 * np.pi * t), 0 * t,
                     0.3 + 0.2 * np.sin(3 * np.pi * t), 0.1 + 0.2 * t, 0 * t], 1)
    with torch.no_grad():
        ws = space.coefficients_to_ws(torch.tensor(path, dtype=torch.float32))
        frames = tensor_to_uint8(generator.synthesis(ws))
    return DrivingFrames.from_arrays(list(frames)), ws


@pytest.mark.slow  # ~15 s idle: 10 frames of 2 steps through the FaceMesh
def test_a_stopped_chunk_resumes_alone(tmp_path, face_mesh, stand_in) -> None:
    generator, anchors, space = stand_in
    driving, _ = _moving_face(generator, space, 6)
    project = Project.create(tmp_path / "p.studio")
    settings = ReenactSettings(steps=2, first_steps=2, save_every=1, min_save_seconds=0.0, first_frame="center")
    mesh = MeshLandmarks(face_mesh, SIZE)

    def runner() -> ChunkedReenact:  # chunks: frames 0-2 and 2-5 (frame 2 overlaps)
        return ChunkedReenact(project, "talk", chunks=2, overlap=1, landmarks=mesh)

    straight = runner()(generator, anchors, driving, tmp_path / "straight.npz", settings=settings)
    import shutil

    shutil.rmtree(project.take_chunks_dir("talk"))
    token = CancelToken()

    def stop_in_chunk_2(done: int, total: int, message: str = "") -> None:
        if message.startswith("chunk 2 of 2") and done == 2:  # after frames 2 and 3
            token.cancel()

    track_path = project.take_dir("talk") / "latents.npz"
    with pytest.raises(Cancelled) as stopped:
        runner()(generator, anchors, driving, track_path, settings=settings, progress=stop_in_chunk_2, cancel=token)
    assert "finished frames" in stopped.value.kept and not track_path.exists()
    plan = ChunkPlan.load(project.take_chunks_dir("talk"))
    first, second = (load_track(plan.track_path(project.take_chunks_dir("talk"), c)) for c in plan.chunks)
    assert first.frames_done == 3 and second.frames_done == 2
    resumed = runner()(generator, anchors, driving, track_path, settings=settings)
    assert resumed.frames_optimized == 2  # only chunk 2's last 2 frames (of 4) were left
    np.testing.assert_allclose(resumed.track.ws, straight.track.ws, atol=1e-5)
    assert resumed.track.fingerprint == track_fingerprint(driving, anchors, "", settings.fingerprint_dict())
    again = runner()(generator, anchors, driving, track_path, settings=settings)  # finished: read back
    assert again.frames_optimized == 0 and np.array_equal(again.track.ws, resumed.track.ws)
    # a sequential take of the same inputs is the same take: it reads the merged track as finished
    same = reenact(generator, anchors, driving, track_path, mesh, settings=settings)
    assert same.frames_optimized == 0


@pytest.mark.slow  # ~90 s idle: 2 takes of 34 frames prepared and re-enacted by 2 torchrun processes
def test_two_takes_queued_over_two_processes_through_the_cli(tmp_path, capfd) -> None:
    """``studio-cli reenact --driving A --name a --driving B --name b --gpus 2 --device cpu``:
    each take is prepared by rank 0, split into one chunk per process, merged by rank 0."""
    import json

    from studio.cli.launch import launch
    from tests._reenact_helpers import cut_clip
    from tests.conftest import MEDIA
    from tests.test_reenact_cli import _personalized_project

    clip = cut_clip(MEDIA / "driving_speech_audio_8s.mp4", tmp_path / "speech.mp4", 1.36, size=256)
    project = _personalized_project(tmp_path / "anna.studio")
    argv = ["reenact", str(project.root), "--driving", str(clip), "--name", "a", "--driving", str(clip),
            "--name", "b", "--steps", "1", "--device", "cpu", "--gpus", "2"]
    code = launch(argv, 2, "cpu")
    err = capfd.readouterr().err
    assert code == 0, err[-3000:]
    for take in ("a", "b"):
        plan = ChunkPlan.load(project.take_chunks_dir(take))
        assert plan is not None and len(plan.chunks) == 2 and plan.n_frames == 34
        track = load_track(project.track_path(take))
        assert track.complete and track.frames_done == 34 and np.isfinite(track.ws_smooth).all()
        assert json.loads(project.track_info_path(take).read_text())["n_frames"] == 34
    assert "take 'a' in 2 chunks of ~17 frames, 16 overlapping, over 2 processes" in err
    assert Project.open(project.root).status("reenact") == "done"


@pytest.mark.slow  # ~90 s idle (several minutes on a busy machine): 56 frames through the FaceMesh
def test_chunked_take_tracks_the_known_answer_as_well_as_the_sequential_take(tmp_path, face_mesh, stand_in) -> None:
    """Issue #16: on the known-answer stand-in, a take in 2 chunks has a keypoint error within 1.1x
    of the same take run in one piece, and the frame-to-frame latent change where the chunks meet
    exceeds the one-piece take's at the same frames, the motion's own, by no more than a fifth of
    its largest step (the smoothed tracks, as rendered). Why not "no larger than elsewhere": the
    path's fastest motion falls on the seam (0.44 there against 0.43 elsewhere, in both takes), so
    that compared float noise. What the seam adds is the two pieces' difference along what the
    keypoints do not see, spread by the blend over the overlap: 0.002-0.053 over five runs,
    against steps of up to 0.44."""
    generator, anchors, space = stand_in
    n, overlap = 24, 8
    driving, _ = _moving_face(generator, space, n)
    assert driving.valid.all()
    settings = ReenactSettings(steps=20)  # 40 for the first frame of each piece; defaults otherwise
    mesh = MeshLandmarks(face_mesh, SIZE)
    project = Project.create(tmp_path / "p.studio")
    sequential = reenact(generator, anchors, driving, tmp_path / "sequential.npz", mesh, settings=settings).track
    chunked = ChunkedReenact(project, "t", chunks=2, overlap=overlap, landmarks=mesh)(
        generator, anchors, driving, tmp_path / "chunked.npz", settings=settings).track
    plan = ChunkPlan.load(project.take_chunks_dir("t"))
    assert [(c.start, c.core, c.stop) for c in plan.chunks] == [(0, 0, 12), (4, 12, 24)]
    target = keypoints_from_landmarks(torch.from_numpy(driving.landmarks), SIZE)

    def error(ws: np.ndarray) -> float:
        with torch.no_grad():
            kp = keypoints_from_landmarks(mesh(generator.synthesis(torch.from_numpy(ws))), SIZE)
        return float((kp[..., :2] - target[..., :2]).norm(dim=-1).mean()) * SIZE

    seq_error, chunk_error = error(sequential.ws_smooth), error(chunked.ws_smooth)
    assert chunk_error <= 1.1 * seq_error, (chunk_error, seq_error)
    def steps(track) -> np.ndarray:
        return np.linalg.norm(np.diff(track.ws_smooth.reshape(n, -1).astype(np.float64), axis=0), axis=1)

    seam = np.zeros(n - 1, bool)
    seam[plan.chunks[1].start - 1:plan.chunks[1].core + 1] = True
    extra = steps(chunked) - steps(sequential)
    assert extra[seam].max() <= 0.2 * steps(sequential).max(), (steps(chunked)[seam], steps(sequential)[seam])
