"""Fast and refine re-enactment on the known-answer stand-in: the motion model learned on it, its
track files, training resume, and the issue's targets against the exact optimizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from optimize.driving import DrivingFrames, detect_crop_landmarks, image_to_tensor, tensor_to_uint8
from optimize.fast_directions import (CHECKPOINTS_DIR, MotionModel, apply_shift, load_motion_model)
from optimize.fast_reenact import (FAST_CARRY, FAST_FEEDBACK, FAST_GAIN, FAST_STEP, REFINE_FEEDBACK, REFINE_STEPS, MotionPredictor, RenderReader,
                                  fast_track, refine_track)
from optimize.latent_space import PersonalizedSpace
from optimize.losses import MeshLandmarks, keypoints_from_landmarks
from optimize.reenact import ReenactResult, reenact
from optimize.reenact_settings import ReenactSettings
from optimize.track import load_track
from personalize.errors import Cancelled, ProjectError, UserError
from personalize.progress import CancelToken
from tests._fast_helpers import render, train_standin_motion
from tests._reenact_helpers import warp_anchors, warp_face_generator

SIZE = 128


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The stand-in, its anchors and space, the FaceMesh, and a motion model trained 4 steps."""
    from personalize.faces.facemesh import FaceMesh

    generator = warp_face_generator(SIZE)
    anchors = warp_anchors(generator)
    space = PersonalizedSpace(anchors, generator.num_ws)
    mesh = MeshLandmarks(FaceMesh.from_mediapipe(), SIZE)
    folder = tmp_path_factory.mktemp("motion")
    trained = train_standin_motion(generator, anchors, folder, steps=4, landmarks=mesh)
    return generator, anchors, space, mesh, trained, folder


def _path(n: int) -> list[list[float]]:
    """A driving path between anchor mixtures (head shift and turn, mouth opening), as
    test_reenact's warm-started take."""
    return [[0.6 - 0.5 * t / (n - 1), 0.1, 0.0, 0.3, 0.5 * t / (n - 1), 0.0] for t in range(n)]


def _keypoint_errors(generator, ws: np.ndarray, driving: DrivingFrames) -> np.ndarray:
    """Per frame, mean distance (px) between MediaPipe's keypoints of the rendered codes and of the
    driving frames: the same independent judge for every mode."""
    with torch.no_grad():
        images = tensor_to_uint8(generator.synthesis(torch.as_tensor(ws)))
    landmarks, valid = detect_crop_landmarks(images.__getitem__, len(images))
    assert valid.all()
    got = keypoints_from_landmarks(torch.from_numpy(landmarks), SIZE)
    want = keypoints_from_landmarks(torch.from_numpy(driving.landmarks), SIZE)
    return ((got[..., :2] - want[..., :2]).norm(dim=-1).mean(dim=-1) * SIZE).numpy()


def test_the_model_shifts_nothing_without_motion_and_keeps_the_coefficients_summing_to_one() -> None:
    torch.manual_seed(0)
    for kind in ("linear", "mlp"):
        model = MotionModel(dim=9, n_anchors=7, layers=3, kind=kind, hidden=16)
        torch.nn.init.normal_(model.directions.weight)
        if model.mlp is not None:
            torch.nn.init.normal_(model.mlp[-1].weight)
        p_source = torch.randn(4, 9)
        assert float(model(torch.zeros(4, 9), p_source).detach().abs().max()) == 0.0   # no motion, no shift
        shift = model(torch.randn(4, 9), p_source)
        assert shift.shape == (4, 3, 7)
        torch.testing.assert_close(shift.sum(dim=2), torch.zeros(4, 3), atol=1e-6, rtol=0)
    mlp = MotionModel(dim=9, n_anchors=7, layers=3, kind="mlp", hidden=16)
    linear = MotionModel(dim=9, n_anchors=7, layers=3, kind="linear")
    linear.directions.weight.data.normal_()
    mlp.directions.weight.data.copy_(linear.directions.weight)
    dp = torch.randn(4, 9)
    torch.testing.assert_close(mlp(dp, dp), linear(dp, dp))            # the MLP starts as A
    source = torch.full((4, 7), 1 / 7)
    coefficients = apply_shift(source, linear(dp, dp), num_ws=5)
    assert coefficients.shape == (4, 5, 7)
    torch.testing.assert_close(coefficients[:, 3:], source[:, None].expand(-1, 2, -1))  # upper layers untouched
    torch.testing.assert_close(coefficients.sum(dim=2), torch.ones(4, 5))


@pytest.mark.slow  # ~60 s on an idle 2-core machine: the exact optimizer runs 6 frames x ~40 steps
def test_fast_and_refine_meet_the_issue_targets_against_the_exact_optimizer(setup, tmp_path) -> None:
    """A learned on the stand-in predicts codes for a driving sequence rendered from known codes.

    Issue #14: fast keypoint error within 2x of the exact optimizer's on the same frames; refine
    within 1.1x at >= 5x fewer generator passes. The judge is MediaPipe on both sides. They hold
    on this 128 px clip, where the exact optimizer itself is noisier (0.04-0.07 px); on
    ``bench/fastmode.py``'s 256 px clip, against the exact mode's converged frames, fast
    measured 1.60-1.97x on average over three motion models and reruns, single runs up to 2.46x
    (its open loop 2.8-3.6x), and refine 0.92-1.11x (see optimize.fast_reenact). Refine and exact start with the same first frame (the exact
    mode's), so passes are compared after it.
    """
    generator, anchors, space, mesh, trained, _ = setup
    assert trained.files.info["held_out_keypoint_px"]["trained"] < 1.0
    driving = DrivingFrames.from_arrays(list(render(generator, space, _path(6))))
    assert driving.valid.all()
    predictor = MotionPredictor(trained.files, space)
    settings = ReenactSettings(smooth_sigma=0.0)
    with RenderReader(generator) as reader:
        fast = fast_track(anchors, generator.num_ws, driving, tmp_path / "fast.npz", predictor, reader, settings=settings)
    refine = refine_track(generator, anchors, driving, tmp_path / "refine.npz", predictor, mesh, settings=settings)
    exact = reenact(generator, anchors, driving, tmp_path / "exact.npz", mesh, settings=settings)
    errors = {name: _keypoint_errors(generator, result.track.ws, driving)
              for name, result in (("fast", fast), ("refine", refine), ("exact", exact))}
    means = {name: float(e.mean()) for name, e in errors.items()}
    assert fast.generator_passes == FAST_FEEDBACK * driving.n_frames     # its feedback's renders
    assert means["fast"] <= 2.0 * means["exact"], means
    assert means["refine"] <= 1.1 * means["exact"], means
    # both start the take with the exact mode's first frame (equal up to float noise: two threads'
    # sums are not bit-reproducible, and ~100 Adam steps with early stopping carry a 1e-8 difference
    # to ~1e-2 in ws, 0.063 once under Python 3.12 with numpy 2); every frame after it costs refine
    # >= 5x fewer passes
    np.testing.assert_allclose(refine.track.ws[0], exact.track.ws[0], atol=0.1, rtol=0)
    first = {name: int(r.track.steps[0]) for name, r in (("exact", exact), ("refine", refine))}
    assert refine.generator_passes == first["refine"] + (REFINE_FEEDBACK + REFINE_STEPS) * (driving.n_frames - 1)
    later = {name: r.generator_passes - first[name] for name, r in (("exact", exact), ("refine", refine))}
    assert later["exact"] >= 5 * later["refine"], later


def test_the_closed_loop_brings_the_rendered_face_closer_to_the_driving_frame(setup) -> None:
    """``closed_loop``: rendering, reading the render and the driving frame with the same FaceMesh,
    and feeding the descriptor's difference back into the model's input makes the image read
    closer to the frame than the prediction does, even with a barely trained model (4 steps);
    zero passes change nothing."""
    from optimize.fast_reenact import closed_loop
    from optimize.losses import ReenactLoss

    generator, _, space, mesh, trained, _ = setup
    driving = DrivingFrames.from_arrays(list(render(generator, space, _path(3))))
    predictor = MotionPredictor(trained.files, space)
    loss = ReenactLoss(mesh)

    def reads(image, target):
        return predictor.inputs(target.measure(mesh, image), SIZE)

    for t in (0, 2):
        target = loss.driving_target(image_to_tensor(driving.load_image(t), SIZE, "cpu"),
                                     torch.from_numpy(driving.landmarks[t:t + 1]))
        frame = reads(target.image, target)
        predicted = predictor.inputs(driving.landmarks[t:t + 1], SIZE)
        assert torch.equal(closed_loop(generator, predictor, mesh, target, predicted, 0), predicted)
        looped = closed_loop(generator, predictor, mesh, target, predicted, 3)

        def miss(u):
            with torch.no_grad():
                image = generator.synthesis(space.coefficients_to_ws(predictor.coefficients_at(u)))
            return float((reads(image, target) - frame).norm())

        assert miss(looped) < 0.6 * miss(predicted), (t, miss(predicted), miss(looped))


def test_refine_starts_the_loop_from_the_frame_plus_most_of_the_previous_correction(setup, tmp_path,
                                                                                     monkeypatch) -> None:
    """The take's first face is the exact mode's first frame (its settings, not refine's). Later,
    frame t's loop starts at p_t + REFINE_CARRY (u_{t-1} - p_{t-1}), at p_t alone after the first
    frame and after a faceless frame (neither has a correction to carry), and keeps the previous
    code's unreliable directions (``MotionPredictor.tracked``); the optimizer then starts from
    the looped input's code, at REFINE_LR of the step size, for REFINE_STEPS."""
    import optimize.fast_reenact as fast_reenact

    generator, anchors, space, mesh, trained, _ = setup
    frames = list(render(generator, space, _path(5)))
    frames[3] = np.full_like(frames[3], 128)
    driving = DrivingFrames.from_arrays(frames)
    assert driving.valid.tolist() == [True, True, True, False, True]
    predictor = MotionPredictor(trained.files, space)
    assert predictor.reliable is not None
    captured, loops = {}, []
    correction = torch.linspace(-0.2, 0.2, predictor.descriptor.dim)[None]

    def fake_loop(generator, predictor, landmarks, target, start, passes, previous=None):
        loops.append((start, passes, previous))
        return start + correction

    monkeypatch.setattr(fast_reenact, "reenact", lambda *a, **k: captured.update(k) or ReenactResult(None, 0, 0, 0.0, []))
    monkeypatch.setattr(fast_reenact, "closed_loop", fake_loop)
    given = ReenactSettings(smooth_sigma=0.0, first_steps=7)
    refine_track(generator, anchors, driving, tmp_path / "r.npz", predictor, mesh, settings=given)
    assert captured["first_settings"] is given                  # the first face: the exact mode's frame
    settings = captured["settings"]
    assert settings.lr_decay is False and settings.steps == fast_reenact.REFINE_STEPS
    assert settings.lr == pytest.approx(given.lr * fast_reenact.REFINE_LR)
    wanted = predictor.inputs(driving.landmarks, SIZE)
    start = captured["starts"]
    carry = fast_reenact.REFINE_CARRY
    assert 0 < carry < 1
    previous = space.code_from_coefficients(torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.05, 0.0]]))
    for t, expected_start in ((1, wanted[1:2]), (2, wanted[2:3] + carry * correction), (4, wanted[4:5])):
        code = start(t, previous, None)
        got_start, passes, kept = loops[-1]
        assert passes == fast_reenact.REFINE_FEEDBACK
        torch.testing.assert_close(got_start, predictor.clamp(expected_start))
        torch.testing.assert_close(kept, space.normalized_coefficients(previous))
        want = predictor.code(predictor.tracked(predictor.coefficients_at(got_start + correction), kept))
        torch.testing.assert_close(code.alpha, want.alpha)
        torch.testing.assert_close(code.delta, want.delta)
    moved = predictor.code(predictor.coefficients_at(got_start + correction))   # without keeping anything
    assert not torch.allclose(code.alpha, moved.alpha, atol=1e-3)


def test_the_reliable_projector_keeps_what_the_descriptor_predicts_and_drops_what_it_does_not() -> None:
    """``reliable_projector`` on a pool whose codes move with p along three directions and, along a
    fourth, at random: the three are kept, the fourth dropped; K is a projector that takes and
    gives zero-sum changes. ``MotionPredictor.tracked`` follows the new code along the kept
    directions and keeps the previous one along the dropped one."""
    from optimize.fast_directions import reliable_projector

    rng = torch.Generator().manual_seed(0)
    n, d, samples = 5, 3, 4000
    p_hat = torch.rand(samples, d, generator=rng) * 2 - 1
    zero_sum = torch.eye(n) - 1.0 / n
    driven = torch.randn(d, n, generator=rng) @ zero_sum * 0.1                  # (d, N) rows
    hidden = torch.randn(n, generator=rng) @ zero_sum
    basis = torch.linalg.qr(driven.T).Q                                         # (N, d)
    hidden = hidden - basis @ (basis.T @ hidden)        # apart from what p drives (and zero-sum)
    hidden = hidden / hidden.norm() * 0.1                                       # p says nothing of it
    codes = 1.0 / n + p_hat @ driven + 0.3 * p_hat ** 2 @ driven + torch.randn(samples, 1, generator=rng) * hidden
    projector, ratios = reliable_projector(codes, p_hat)
    assert projector.shape == (n, n) and ratios.shape == (n - 1,)
    assert int((ratios >= 10).sum()) == 3 and float(ratios[0]) < 3, ratios   # the hidden one is unreliable
    torch.testing.assert_close(projector @ projector, projector, atol=1e-4, rtol=0)
    torch.testing.assert_close(projector @ torch.ones(n), torch.zeros(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.ones(n) @ projector, torch.zeros(n), atol=1e-5, rtol=0)
    for row in driven:      # kept (but for the pool's chance correlation with the hidden one)
        assert float((projector @ row - row).norm()) < 0.05 * float(row.norm())
    assert float((projector @ hidden).norm()) < 0.1 * float(hidden.norm())      # dropped

    class Files:   # what MotionPredictor reads
        model = MotionModel(d, n, layers=2)
        descriptor = None
        reliable = projector
        source_p = torch.zeros(1, d)

    class Descriptor:
        def to(self, device):
            return self

        def rescale(self, p):
            return p

    Files.descriptor = Descriptor()
    predictor = MotionPredictor(Files(), PersonalizedSpace(np.eye(n, 4, dtype=np.float32), 3))  # type: ignore[arg-type]
    previous = torch.full((1, 3, n), 1.0 / n)
    new = previous + driven[0] + 2 * hidden
    followed = predictor.tracked(new, previous)
    torch.testing.assert_close(followed.sum(dim=2), torch.ones(1, 3))
    assert float((followed - previous - driven[0]).norm()) < 0.1 * float((2 * hidden).norm() * 3 ** 0.5)
    assert predictor.tracked(new, None) is new


def test_fast_track_holds_faceless_frames_is_reused_and_checked(setup, tmp_path) -> None:
    generator, anchors, space, _, trained, _ = setup
    frames = list(render(generator, space, _path(5)))
    frames[0] = np.full_like(frames[0], 128)
    frames[3] = np.full_like(frames[3], 128)
    driving = DrivingFrames.from_arrays(frames)
    assert driving.valid.tolist() == [False, True, True, False, True]
    predictor = MotionPredictor(trained.files, space)
    path = tmp_path / "latents.npz"
    result = fast_track(anchors, generator.num_ws, driving, path, predictor)
    track = load_track(path)
    assert track.complete and track.frames_done == 5 and result.flagged_frames == [0, 3]
    np.testing.assert_allclose(track.ws[0], space.final_ws(space.center_code())[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(track.ws[3], track.ws[2])             # no face: the previous code held
    assert track.smooth_sigma == 2.0 and not np.allclose(track.ws_smooth, track.ws)
    want = predictor.ws(driving.landmarks[[1, 2, 4]], SIZE).numpy()
    np.testing.assert_allclose(track.ws[[1, 2, 4]], want, atol=1e-5)
    # the stored optimizer codes give the same ws (what refine and resume start from)
    code = predictor.code(predictor.coefficients(driving.landmarks[[1]], SIZE))
    np.testing.assert_allclose(space.final_ws(code)[0].numpy(), track.ws[1], atol=1e-4)
    again = fast_track(anchors, generator.num_ws, driving, path, predictor,
                       settings=ReenactSettings(smooth_sigma=0.0))
    assert again.frames_optimized == 0 and again.track.smooth_sigma == 0.0   # reused, re-smoothed only
    with pytest.raises(ProjectError, match="another driving video, generator, motion model"):
        fast_track(anchors, generator.num_ws, DrivingFrames.from_arrays(frames[:4]), path, predictor)
    with pytest.raises(ProjectError, match="another driving video"):     # exact refuses a fast track too
        reenact(generator, anchors, driving, path, MeshLandmarks(None, SIZE), settings=ReenactSettings())


class _ScriptedReader:
    """A RenderReader stand-in: returns the given landmarks (or None: no face) render by render
    (a batch's rows in order), keeps the codes it was asked to render (1,num_ws,w_dim) each and
    how many renders each call batched."""

    size = SIZE

    def __init__(self, answers: list[np.ndarray | None]) -> None:
        self.answers = list(answers)
        self.asked: list[torch.Tensor] = []
        self.batches: list[int] = []

    def __call__(self, ws: torch.Tensor) -> list[np.ndarray | None]:
        self.batches.append(len(ws))
        out = []
        for row in ws:
            self.asked.append(row[None].clone())
            answer = self.answers[len(self.asked) - 1]
            out.append(None if answer is None else answer[None])
        return out


def test_the_feedback_loop_keeps_the_best_try_and_halves_its_step_after_a_worse_one() -> None:
    """``feedback_loop`` on a model whose renders read twice its input (it overshoots): the first
    try's miss steps to the input that reads the frame's double; that try is no better, so the
    gain halves and the third try lands on the answer. A first render without a face ends it.
    Tries are judged by their keypoint loss, not by their descriptor miss."""
    from optimize.fast_reenact import Read, feedback_loop

    wanted = torch.tensor([[1.0, -2.0]])
    asked = []

    def read(u):
        asked.append(u.clone())
        return Read(2.0 * u, float((wanted - 2.0 * u).norm()))

    def clamp(u):
        return u.clamp(-10, 10)

    start = torch.zeros(1, 2)
    two = feedback_loop(read, wanted, start, 2, clamp)
    torch.testing.assert_close(asked[1], wanted)                        # start + (wanted - read(start))
    assert two.renders == 2 and two.gain == 0.5
    torch.testing.assert_close(two.best, start)
    torch.testing.assert_close(two.miss, wanted)
    torch.testing.assert_close(two.first_miss, wanted)
    torch.testing.assert_close(two.step(0.7), 0.35 * wanted)
    asked.clear()
    three = feedback_loop(read, wanted, start, 3, clamp)
    torch.testing.assert_close(three.best, 0.5 * wanted)                 # reads exactly the frame
    torch.testing.assert_close(three.miss, torch.zeros(1, 2))
    faceless = feedback_loop(lambda u: None, wanted, start, 2, clamp)
    assert faceless.renders == 1 and faceless.first_miss is None
    torch.testing.assert_close(faceless.step(0.7), start)
    # the second try reads exactly the wanted descriptor, but its keypoints are further off: not kept
    judged = feedback_loop(lambda u: Read(u.clone(), float(u.abs().sum())), wanted, start, 2, clamp)
    assert judged.gain == 0.5
    torch.testing.assert_close(judged.best, start)


def test_fast_feedback_moves_each_code_by_its_own_miss_and_later_inputs_by_earlier_ones_and_resumes(setup, tmp_path) -> None:
    """With one render a frame: frame t is rendered from u_t = p_t + c and its miss
    m_t = p_t - p(render_t) moves the code kept to u_t + step m_t and c to carry c + gain m_t; a
    render without a face keeps u_t and only fades c, a faceless driving frame clears c, and a
    cancelled take resumes from its saved frames (the first new one without a correction). With
    two, the second render is of the full step from the first, and the code kept
    steps on from the better of the two."""
    generator, anchors, space, _, trained, _ = setup
    frames = list(render(generator, space, _path(6)))
    frames[3] = np.full_like(frames[3], 128)
    driving = DrivingFrames.from_arrays(frames)
    assert driving.valid.tolist() == [True, True, True, False, True, True]
    predictor = MotionPredictor(trained.files, space)
    lm = driving.landmarks
    answers = [lm[1], None, lm[0], lm[5], lm[4]]             # what "the renders" of frames 0, 1, 2, 4, 5 read
    p = predictor.inputs(lm, SIZE)
    read = predictor.inputs(np.stack([a for a in answers if a is not None]), SIZE)
    u = {0: p[0]}
    m = {0: p[0] - read[0]}
    c0 = FAST_GAIN * m[0]
    u[1] = predictor.clamp(p[1] + c0)                        # frame 1's render showed no face:
    c1 = FAST_CARRY * c0                                     # its code is kept, c only fades
    u[2] = predictor.clamp(p[2] + c1)
    m[2] = p[2] - read[1]
    u[4] = p[4]                            # frame 2's miss is lost: frame 3 had no face, c was cleared
    m[4] = p[4] - read[2]
    u[5] = predictor.clamp(p[5] + FAST_GAIN * m[4])
    m[5] = p[5] - read[3]
    kept = {t: predictor.clamp(u[t] + FAST_STEP * m[t]) if t in m else u[t] for t in u}

    def ws_at(p_hat: torch.Tensor) -> torch.Tensor:
        return space.coefficients_to_ws(predictor.coefficients_at(p_hat[None]))

    reader = _ScriptedReader(answers)
    result = fast_track(anchors, generator.num_ws, driving, tmp_path / "a.npz", predictor, reader, feedback=1)
    assert result.generator_passes == 5 and result.flagged_frames == [3]
    for k, t in enumerate(u):
        torch.testing.assert_close(reader.asked[k], ws_at(u[t]))
        np.testing.assert_allclose(result.track.ws[t], ws_at(kept[t])[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(result.track.ws[3], result.track.ws[2])
    assert not np.allclose(result.track.ws[1], predictor.ws(lm[1:2], SIZE)[0].numpy(), atol=1e-4)   # c changed it
    assert not np.allclose(result.track.ws[0], predictor.ws(lm[0:1], SIZE)[0].numpy(), atol=1e-4)   # so did m_0

    token = CancelToken()
    path = tmp_path / "b.npz"

    def cancel_after_two(done: int, total: int, message: str = "") -> None:
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        fast_track(anchors, generator.num_ws, driving, path, predictor, _ScriptedReader(answers), feedback=1,
                   progress=cancel_after_two, cancel=token)
    saved = load_track(path)
    assert saved.frames_done == 2 and not saved.complete
    resumed_reader = _ScriptedReader(answers[2:])
    resumed = fast_track(anchors, generator.num_ws, driving, path, predictor, resumed_reader, feedback=1)
    assert resumed.frames_optimized == 4 and resumed.generator_passes == 3 and resumed.track.complete
    np.testing.assert_allclose(resumed.track.ws[:2], result.track.ws[:2], atol=1e-6)
    torch.testing.assert_close(resumed_reader.asked[0], ws_at(p[2]))                    # no carried correction
    np.testing.assert_allclose(resumed.track.ws[2], ws_at(predictor.clamp(p[2] + FAST_STEP * m[2]))[0].numpy(), atol=1e-5)
    # the open loop (no reader) is another take: its track is not mixed with this one
    with pytest.raises(ProjectError, match="another driving video, generator, motion model or mode"):
        fast_track(anchors, generator.num_ws, driving, path, predictor)

    # two renders a frame: frame 0's second is of the full step from its first; it reads the frame
    # exactly (no miss left), so the code kept is that input's. Frame 1 starts from frame 0's first
    # miss carried (as with one render) and its second render, reading frame 0, does worse than its
    # first (which reads frame 2) or better: the code kept steps on from the better one.
    two = _ScriptedReader([lm[1], lm[0], lm[2], lm[0]])
    looped = fast_track(anchors, generator.num_ws, DrivingFrames.from_arrays(frames[:2]), tmp_path / "c.npz",
                        predictor, two, feedback=2)
    assert looped.generator_passes == 4
    assert two.batches == [1, 2, 1]     # frame 0's second render shares a batch with frame 1's first
    tried = predictor.clamp(p[0] + m[0])
    torch.testing.assert_close(two.asked[1], ws_at(tried))
    np.testing.assert_allclose(looped.track.ws[0], ws_at(tried)[0].numpy(), atol=1e-5)
    u1 = predictor.clamp(p[1] + FAST_GAIN * m[0])
    first, second = p[1] - p[2], p[1] - p[0]                # its renders read frames 2 and 0
    torch.testing.assert_close(two.asked[2], ws_at(u1))
    torch.testing.assert_close(two.asked[3], ws_at(predictor.clamp(u1 + first)))
    if second.norm() < first.norm():
        kept1 = predictor.clamp(predictor.clamp(u1 + first) + FAST_STEP * second)
    else:
        kept1 = predictor.clamp(u1 + FAST_STEP * 0.5 * first)
    np.testing.assert_allclose(looped.track.ws[1], ws_at(kept1)[0].numpy(), atol=1e-5)


def test_fast_mode_overlaps_the_frames_loops_in_batches_and_keeps_the_codes_of_one_frame_after_another(setup, tmp_path) -> None:
    """The loops of consecutive frames share generator batches (frame t's k-th render with frame
    t+1's (k-1)-th: T + renders - 1 calls for T frames, a faceless driving frame skipped without
    draining them), and every code is the one running ``feedback_loop`` frame after frame gives:
    the oracle below, with a reader whose face moves smoothly with the code and is lost past a
    point (a render without a face ends that frame's loop)."""
    from optimize.fast_reenact import Read, feedback_loop, read_as
    from optimize.losses import keypoints_from_landmarks

    generator, anchors, space, _, trained, _ = setup
    frames = list(render(generator, space, _path(7)))
    frames[4] = np.full_like(frames[4], 128)
    driving = DrivingFrames.from_arrays(frames)
    valid = driving.valid.tolist()
    assert valid == [True, True, True, True, False, True, True]
    predictor = MotionPredictor(trained.files, space)
    base = driving.landmarks[2]
    direction = torch.Generator().manual_seed(3)
    move = torch.randn(space.w_dim, 3, generator=direction).numpy() * 2.0

    def read_one(ws: torch.Tensor) -> np.ndarray | None:
        """(1,num_ws,w_dim) -> (1,478,3): the base face moved and stretched with the code."""
        x, y, s = ws[0].mean(dim=0).numpy() @ move
        if s > 1.5:
            return None
        center = base[:, :2].mean(axis=0)
        moved = base.copy()
        moved[:, :2] = center + (base[:, :2] - center) * (1 + 0.02 * s) + [x, y]
        return moved[None]

    class Reader:
        size = SIZE

        def __init__(self) -> None:
            self.batches: list[int] = []

        def __call__(self, ws: torch.Tensor) -> list[np.ndarray | None]:
            self.batches.append(len(ws))
            return [read_one(row[None]) for row in ws]

    def ws_at(p_hat: torch.Tensor) -> torch.Tensor:
        return space.coefficients_to_ws(predictor.coefficients_at(p_hat))

    p = predictor.inputs(driving.landmarks, SIZE)
    keypoints = keypoints_from_landmarks(torch.from_numpy(driving.landmarks), SIZE)
    for renders in (2, 3):
        reader = Reader()
        result = fast_track(anchors, generator.num_ws, driving, tmp_path / f"{renders}.npz", predictor, reader,
                            feedback=renders)
        correction, oracle_passes = torch.zeros_like(p[:1]), 0
        for t in range(driving.n_frames):
            if not valid[t]:
                correction = torch.zeros_like(correction)
                continue

            def read(u: torch.Tensor) -> Read | None:
                found = read_one(ws_at(u))
                return None if found is None else read_as(found, SIZE, predictor, keypoints[t:t + 1])

            found = feedback_loop(read, p[t:t + 1], predictor.clamp(p[t:t + 1] + correction), renders, predictor.clamp)
            oracle_passes += found.renders
            correction = FAST_CARRY * correction + (0 if found.first_miss is None else FAST_GAIN * found.first_miss)
            np.testing.assert_allclose(result.track.ws[t], ws_at(predictor.clamp(found.step(FAST_STEP)))[0].numpy(),
                                       atol=1e-5, err_msg=f"frame {t}, {renders} renders")
        assert result.generator_passes == oracle_passes == sum(reader.batches)
        assert max(reader.batches) == renders and len(reader.batches) < oracle_passes
        if oracle_passes == 6 * renders:     # no loop ended early: the batches form a full wavefront
            assert len(reader.batches) == 6 + renders - 1


@pytest.mark.slow  # ~20 s idle: 2 + 2 training steps and a stand-in scan
def test_training_resumes_where_it_was_cancelled(setup, tmp_path) -> None:
    """Cancelled after 2 of 4 steps and resumed = 4 steps in one go (same weights)."""
    generator, anchors, _, mesh, trained, folder = setup
    whole = load_motion_model(folder).model.state_dict()   # the fixture: 4 steps, uninterrupted
    assert (folder / CHECKPOINTS_DIR / "last.pt").is_file()
    (tmp_path / "pool.npz").write_bytes((folder / "pool.npz").read_bytes())   # same samples
    token = CancelToken()

    def stop_after_two(done: int, total: int, message: str = "") -> None:
        if done == 2 and "loss" in message:
            token.cancel()

    with pytest.raises(Cancelled):
        _train(generator, anchors, tmp_path, mesh, progress=stop_after_two, cancel=token)
    assert not (tmp_path / "motion.json").exists()            # no finished model yet
    resumed = _train(generator, anchors, tmp_path, mesh)
    assert resumed.resumed_from == 2 and resumed.steps_done == 4
    for name, tensor in resumed.files.model.state_dict().items():
        torch.testing.assert_close(tensor, whole[name], atol=1e-5, rtol=1e-4)
    info = resumed.files.info
    assert info["steps"] == 4 and len(info["source_p"]) == resumed.files.descriptor.dim
    n = anchors.shape[0]   # the reliable-direction projector is saved and read back with the model
    assert resumed.files.reliable is not None and resumed.files.reliable.shape == (n, n)
    assert info["reliable_directions"]["of"] == n - 1


def _train(generator, anchors, folder, mesh, kind="linear", fit_steps=0, **kwargs):
    from optimize.fast_directions import MotionSettings, train_motion_model
    from tests._fast_helpers import standin_scan

    space = PersonalizedSpace(anchors, generator.num_ws)
    settings = MotionSettings(kind=kind, steps=4, pool=32, batch=2, mesh_input=SIZE, checkpoint_every=2,
                              fit_steps=fit_steps)
    return train_motion_model(generator, anchors, standin_scan(generator, space), SIZE, folder, settings,
                              landmarks=mesh, **kwargs)


@pytest.mark.slow  # ~20 s idle: a pool, a short fit, 2 + 2 training steps
def test_a_resumed_mlp_training_keeps_its_fit_and_does_not_fit_again(setup, tmp_path, monkeypatch) -> None:
    """The MLP's fit to the pool happens once, before the first keypoint step: a resumed run
    takes the fitted network from the checkpoint (and its start error) instead of fitting again."""
    import optimize.fast_directions as fast_directions

    generator, anchors, _, mesh, _, _ = setup
    fits = []
    real_fit = fast_directions.fit_to_pool
    monkeypatch.setattr(fast_directions, "fit_to_pool", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    token = CancelToken()

    def stop_after_two(done: int, total: int, message: str = "") -> None:
        if done == 2 and "loss" in message:
            token.cancel()

    with pytest.raises(Cancelled):
        _train(generator, anchors, tmp_path, mesh, kind="mlp", fit_steps=60, progress=stop_after_two, cancel=token)
    assert fits == [1]
    first = torch.load(tmp_path / CHECKPOINTS_DIR / "last.pt", weights_only=True)
    resumed = _train(generator, anchors, tmp_path, mesh, kind="mlp", fit_steps=60)
    assert fits == [1] and resumed.resumed_from == 2 and resumed.steps_done == 4
    assert resumed.files.info["held_out_keypoint_px"]["regression"] == round(first["start_error"], 4)
    assert resumed.files.model.kind == "mlp" and resumed.files.info["settings"]["fit_steps"] == 60
    last = resumed.files.model.mlp[-1].weight                  # fitted: no longer its zero start
    assert float(last.abs().max()) > 0


def test_one_seed_gives_one_motion_model_whatever_the_process_drew_before(setup, tmp_path) -> None:
    """The MLP's start comes from ``MotionSettings.seed``, not torch's global state: two trainings
    with one seed after different global draws give the same weights, and another seed does not."""
    from optimize.fast_directions import MotionSettings, train_motion_model
    from tests._fast_helpers import standin_scan

    generator, anchors, space, mesh, _, _ = setup
    scan = standin_scan(generator, space)
    weights = []
    for run, (global_seed, seed) in enumerate(((1, 0), (2, 0), (1, 1))):
        torch.manual_seed(global_seed)
        settings = MotionSettings(kind="mlp", steps=1, pool=16, batch=2, mesh_input=SIZE, fit_steps=5, seed=seed)
        trained = train_motion_model(generator, anchors, scan, SIZE, tmp_path / str(run), settings, landmarks=mesh)
        weights.append(trained.files.model.mlp[0].weight.detach().clone())
    # (within float noise: two threads' sums are not bit-reproducible; another start differs by ~0.1)
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=1e-4)
    assert float((weights[0] - weights[2]).abs().max()) > 1e-2


def test_a_generator_without_faces_is_reported(tmp_path) -> None:
    class Grey(torch.nn.Module):
        num_ws, w_dim, img_resolution = 2, 4, 64

        def synthesis(self, ws, noise_mode="const"):
            return torch.zeros(ws.shape[0], 3, 64, 64)

    from optimize.fast_directions import MotionSettings, train_motion_model

    scan = np.random.default_rng(0).uniform(0, 64, (4, 478, 3)).astype(np.float32)
    with pytest.raises(UserError, match="found a face in only 0 of 16 samples"):
        train_motion_model(Grey(), np.eye(3, 4, dtype=np.float32), scan, 64, tmp_path,
                           MotionSettings(pool=16, steps=0), landmarks=lambda images: images)
    with pytest.raises(ProjectError, match="no motion model yet"):
        load_motion_model(tmp_path)


def test_live_renders_in_bf16_where_the_cpu_has_it_close_to_fp32() -> None:
    """The live pass's precision (optimize.live): fp16 on CUDA, bf16 on a CPU with native bf16,
    else fp32; the bf16 image stays within a few grey levels of the fp32 one on the same code."""
    from optimize.live import LiveDriver, live_precision
    from personalize.stylegan2.configs import FFHQ256_KWARGS, generator_from_kwargs

    assert live_precision("cuda") == "fp16"
    assert live_precision("cpu", torch.nn.Identity()) == "fp32"  # not the studio's StyleGAN2
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert live_precision("cpu") == ("bf16" if native else "fp32")
    with pytest.raises(ValueError, match="precision"):
        LiveDriver(torch.nn.Identity(), None, precision="int8")  # type: ignore[arg-type]
    torch.manual_seed(0)
    generator = generator_from_kwargs(FFHQ256_KWARGS).eval().requires_grad_(False)
    ws = generator.mapping(torch.randn(2, generator.z_dim), None)
    with LiveDriver(generator, None, precision="bf16") as bf16, LiveDriver(generator, None, precision="fp32") as fp32:  # type: ignore[arg-type]
        with torch.no_grad():
            low = torch.cat([bf16.render(w[None]) for w in ws])
            full = torch.cat([fp32.render(w[None]) for w in ws])
    assert low.dtype == torch.float32 and low.shape == full.shape == (2, 3, 256, 256)
    difference = (low - full).abs()
    assert float(difference.mean()) < 0.03 and float(difference.max()) < 0.3, (difference.mean(), difference.max())
    assert float(full.std()) > 0.05  # the random generator draws something to compare


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_live_render_replayed_as_a_cuda_graph_equals_the_eager_render() -> None:
    """On CUDA the live render is one captured graph replayed per frame (optimize.live): each
    frame's avatar equals the eager render of its own code, also after a render at another
    precision has replaced the layers' weight caches that the graph reads."""
    from optimize.live import LiveDriver
    from personalize.stylegan2 import tiny_generator

    generator = tiny_generator(seed=3, img_resolution=64).requires_grad_(False).cuda()
    ws = generator.mapping(torch.randn(4, generator.z_dim, device="cuda"), None)
    with LiveDriver(generator, None, device="cuda") as graphed, \
            LiveDriver(generator, None, device="cuda", graphed=False) as eager:  # type: ignore[arg-type]
        assert graphed.graphed and graphed.precision == "fp16" and not eager.graphed
        with torch.no_grad():
            for i, w in enumerate(ws):
                if i == 2:
                    generator.synthesis(ws[:1], noise_mode="const")    # fp32: the caches move on
                got = graphed._launch(w[None]).wait()
                want = eager._launch(w[None]).wait()
                assert got.shape == (64, 64, 3) and got.std() > 1
                assert np.abs(got.astype(float) - want).max() <= 1, i     # a grey level: rounding only
        assert len(graphed._graphs) == 1


def test_overlapped_live_frames_show_each_avatar_one_frame_later(setup) -> None:
    """``LiveDriver.overlap`` (a GPU's default): each face's avatar comes from the next frame's
    call, the same pixels as without overlap; the first call waits for its own, a frame without
    a face collects the one in flight, and ``finish`` gives the last."""
    from optimize.live import LiveDriver
    from personalize.video import iter_frames
    from tests._fast_helpers import SELFSCAN

    generator, _, space, _, trained, _ = setup
    predictor = MotionPredictor(trained.files, space)
    faces = [f for _, f in zip(range(4), iter_frames(SELFSCAN))]
    frames = faces[:2] + [np.zeros_like(faces[0])] + faces[2:]
    with LiveDriver(generator, predictor) as serial, LiveDriver(generator, predictor, overlap=True) as overlapped:
        assert not serial.overlap   # a CPU's default
        shown = [serial.process(f) for f in frames]
        late = [overlapped.process(f) for f in frames]
        last = overlapped.finish()
    assert [f.face_found for f in shown] == [f.face_found for f in late] == [True, True, False, True, True]
    for a, b in zip(shown, late):
        assert (a.ws is None) == (b.ws is None)
        if a.ws is not None:
            np.testing.assert_array_equal(a.ws, b.ws)    # each call's code is its own frame's
    avatars = [f.avatar for f in shown]
    assert not np.array_equal(avatars[0], avatars[1]) and not np.array_equal(avatars[3], avatars[4])
    expected = [avatars[0], avatars[0], avatars[1], avatars[1], avatars[3]]
    for got, want in zip([f.avatar for f in late], expected):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(last, avatars[4])
    np.testing.assert_array_equal(overlapped.finish(), last)    # nothing left in flight


def test_the_mlp_is_fitted_to_the_pool_and_learns_what_a_misses() -> None:
    """``fit_to_pool``: on pool samples whose codes saturate in p (as the stand-in's tanh-shaped
    controls do), the fitted MLP predicts the pairs' shifts far better than the ridge start A."""
    from optimize.fast_directions import MotionSettings, fit_to_pool, ridge_directions

    rng = torch.Generator().manual_seed(0)
    n, d, samples = 6, 4, 200
    p_hat = torch.rand(samples, d, generator=rng) * 2 - 1
    p_hat[0] = 0.0                                                    # row 0: the center of P
    mix = torch.randn(d, n, generator=rng)
    codes = torch.softmax(2.0 * torch.tanh(2.0 * p_hat) @ mix, dim=1)  # in P, nonlinear in p
    model = MotionModel(d, n, layers=2, kind="mlp", hidden=64)
    with torch.no_grad():
        model.directions.weight.copy_((ridge_directions(codes, p_hat, 1e-3) * n).T.repeat(2, 1))
    source, target = torch.randint(samples, (512,), generator=rng), torch.randint(samples, (512,), generator=rng)

    def pair_error() -> float:
        with torch.no_grad():
            shift = model(p_hat[target] - p_hat[source], p_hat[source])
            return float(((shift - (codes[target] - codes[source])[:, None]) * n).pow(2).mean())

    start = pair_error()
    fit_to_pool(model, codes, p_hat, MotionSettings(fit_steps=1500, fit_batch=128, lr=3e-3), rng)
    assert pair_error() < 0.25 * start, (pair_error(), start)
    assert float(model(torch.zeros(3, d), p_hat[:3]).detach().abs().max()) == 0.0   # still no motion, no shift


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_refine_and_live_on_cuda_follow_the_driving_frames_as_on_the_cpu(setup, tmp_path) -> None:
    """The fast modes with every network on the GPU (the stand-in, the motion model, the FaceMesh):
    fast (its reader renders a batch in one pass there) and refine follow the driving clip as
    well as on the CPU (renders differ by float rounding, so MediaPipe's reads and the feedback
    do too: errors, not codes, are compared), and a live frame's code equals the CPU driver's."""
    from optimize.fast_directions import load_motion_model
    from optimize.live import LiveDriver
    from personalize.faces.facemesh import FaceMesh
    from personalize.video import iter_frames
    from tests._fast_helpers import SELFSCAN

    generator, anchors, space, mesh, trained, folder = setup
    cuda = torch.device("cuda")
    gpu_generator = warp_face_generator(SIZE).to(cuda)
    gpu_space = PersonalizedSpace(anchors, generator.num_ws, device=cuda)
    gpu_predictor = MotionPredictor(load_motion_model(folder, cuda), gpu_space)
    predictor = MotionPredictor(trained.files, space)
    driving = DrivingFrames.from_arrays(list(render(generator, space, _path(6))))
    settings = ReenactSettings(smooth_sigma=0.0)
    tracks = {}
    with RenderReader(generator) as reader, RenderReader(gpu_generator, cuda) as gpu_reader:
        tracks["fast cpu"] = fast_track(anchors, generator.num_ws, driving, tmp_path / "c.npz", predictor, reader,
                                        settings=settings).track
        tracks["fast cuda"] = fast_track(anchors, generator.num_ws, driving, tmp_path / "g.npz", gpu_predictor,
                                         gpu_reader, settings=settings).track
    gpu_mesh = MeshLandmarks(FaceMesh.from_mediapipe(device=cuda), SIZE)
    tracks["refine cpu"] = refine_track(generator, anchors, driving, tmp_path / "rc.npz", predictor, mesh,
                                        settings=settings).track
    tracks["refine cuda"] = refine_track(gpu_generator, anchors, driving, tmp_path / "rg.npz", gpu_predictor, gpu_mesh,
                                         settings=settings, device=cuda).track
    errors = {name: float(_keypoint_errors(generator, track.ws, driving).mean()) for name, track in tracks.items()}
    for mode in ("fast", "refine"):
        assert errors[f"{mode} cuda"] <= 1.5 * errors[f"{mode} cpu"] + 0.02, errors

    frames = [f for _, f in zip(range(3), iter_frames(SELFSCAN))]
    cpu_avatars, gpu_avatars = [], []
    with LiveDriver(generator, predictor) as cpu_live, LiveDriver(gpu_generator, gpu_predictor, device=cuda) as gpu_live:
        assert gpu_live.overlap     # on CUDA each avatar comes one frame later (its copy waits for nothing)
        for frame in frames:
            on_cpu, on_gpu = cpu_live.process(frame), gpu_live.process(frame)
            assert on_cpu.face_found and on_gpu.face_found
            np.testing.assert_allclose(on_gpu.ws, on_cpu.ws, atol=1e-4)
            assert on_gpu.avatar.shape == on_cpu.avatar.shape == (SIZE, SIZE, 3)
            cpu_avatars.append(on_cpu.avatar)
            gpu_avatars.append(on_gpu.avatar)
        gpu_avatars.append(gpu_live.finish())
    for got, want in zip(gpu_avatars, cpu_avatars[:1] + cpu_avatars):   # the first frame waits for its own
        assert np.abs(got.astype(float) - want).mean() < 1.0    # grey levels: float rounding only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_motion_model_trained_on_cuda_predicts_as_the_cpu_one(setup, tmp_path) -> None:
    """The directions-model stage on the GPU (its sample pool rendered there, the least-squares
    start, the keypoint training through the FaceMesh, with the perceptual term as the studio's job
    trains: a random LPIPS here): a model trained like the fixture's holds out as well and predicts
    about the same codes as the CPU one (the pool's renders, so MediaPipe's reads, differ by float
    rounding, and the fixture has no perceptual term: 4 small steps)."""
    from optimize.fast_directions import MotionSettings, train_motion_model
    from personalize.faces.facemesh import FaceMesh
    from personalize.perceptual import build_lpips
    from tests._fast_helpers import standin_scan

    generator, anchors, space, _, trained, _ = setup
    cuda = torch.device("cuda")
    settings = MotionSettings(kind="linear", steps=4, pool=32, batch=2, mesh_input=SIZE, checkpoint_every=2)  # the fixture's
    on_gpu = train_motion_model(warp_face_generator(SIZE).to(cuda), anchors, standin_scan(generator, space), SIZE,
                                tmp_path, settings, landmarks=MeshLandmarks(FaceMesh.from_mediapipe(device=cuda), SIZE),
                                lpips_model=build_lpips(None, random_backbone=True, seed=0, device=cuda), device=cuda)
    assert on_gpu.files.info["perceptual"]
    assert on_gpu.steps_done == settings.steps and next(on_gpu.files.model.parameters()).device.type == "cuda"
    held_cpu, held_gpu = (t.files.info["held_out_keypoint_px"]["trained"] for t in (trained, on_gpu))
    assert held_gpu <= 1.5 * held_cpu + 0.02, (held_gpu, held_cpu)
    driving = DrivingFrames.from_arrays(list(render(generator, space, _path(6))))
    cpu_codes = MotionPredictor(trained.files, space).coefficients(driving.landmarks, SIZE)
    gpu_codes = MotionPredictor(on_gpu.files, PersonalizedSpace(anchors, generator.num_ws, device=cuda)).coefficients(
        driving.landmarks, SIZE).cpu()
    assert float((gpu_codes - cpu_codes).abs().max()) < 0.1 * float(cpu_codes.abs().max())
