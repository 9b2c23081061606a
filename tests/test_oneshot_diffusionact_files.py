"""DiffusionAct's official files (model file, DiffAE/EMOCA Lightning checkpoints, gaze model, FLAME)
load safely into our networks; FLAME's landmark layer and EMOCA's conditioning path follow the
official formulas.

The files are written here in the official formats (torch.save of the official dict layouts,
FLAME's Python-2-era chumpy pickle) with filled or random values; hostile and truncated copies must
be refused with a clear message and nothing from them may run.
"""
from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optimize.backends.diffusionact import EmocaConditioner
from optimize.nets.diffae import DiffAELitModel
from optimize.nets.diffusionact_checkpoints import (load_diffae_checkpoint, load_diffusionact_model,
                                                    load_emoca_encoders, load_gaze_network)
from optimize.face_crops import DECA_SIZE as CROP_SIZE, deca_crop
from optimize.nets.emoca import EmocaEncoders
from optimize.nets.flame import FlameLandmarks, project_to_crop, read_flame_model, read_landmark_embedding
from optimize.nets.gaze import GazeNetwork
from optimize.nets.reenactment_encoder import ReenactmentEncoder
from optimize.stickman import draw_stickman, estimate_gaze, gaze_points
from personalize.errors import Action, CheckpointError, MissingWeightsError
from tests._diffusionact_helpers import (TINY, filled_state, lightning_checkpoint, synthetic_embedding,
                                         synthetic_flame, write_embedding_npy, write_flame_pkl)
from tests._stylegan2_helpers import ShellCommand


def _truncate(path: Path) -> Path:
    out = path.with_name("truncated_" + path.name)
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


# ----------------------------------------------------------------------------- FLAME files
@pytest.fixture()
def flame_files(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    rng = np.random.default_rng(0)
    arrays, embedding = synthetic_flame(rng), synthetic_embedding(rng)
    model_path, emb_path = tmp_path / "generic_model.pkl", tmp_path / "landmark_embedding.npy"
    write_flame_pkl(arrays, model_path)
    write_embedding_npy(embedding, emb_path)
    return model_path, emb_path, arrays, embedding


def test_flame_pickle_is_read_without_chumpy(flame_files: tuple) -> None:
    model_path, emb_path, arrays, embedding = flame_files
    assert "chumpy" not in sys.modules
    model = read_flame_model(model_path)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f"):
        np.testing.assert_array_equal(model[key], arrays[key])
    emb = read_landmark_embedding(emb_path)
    np.testing.assert_array_equal(emb["dynamic_lmk_faces_idx"], embedding["dynamic_lmk_faces_idx"])
    assert "chumpy" not in sys.modules


def test_flame_npz_variant(tmp_path: Path, flame_files: tuple) -> None:
    _, _, arrays, embedding = flame_files
    np.savez(tmp_path / "flame.npz", **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    np.testing.assert_array_equal(read_flame_model(tmp_path / "flame.npz")["shapedirs"], arrays["shapedirs"])
    np.savez(tmp_path / "emb.npz", **embedding)
    assert read_landmark_embedding(tmp_path / "emb.npz")["static_lmk_faces_idx"].shape == (51,)
    np.savez(tmp_path / "bad.npz", v_template=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="plain arrays"):
        read_flame_model(tmp_path / "bad.npz")


def test_flame_file_errors(tmp_path: Path, flame_files: tuple) -> None:
    model_path, emb_path, arrays, _ = flame_files
    with pytest.raises(MissingWeightsError, match="flame.is.tue.mpg.de"):
        read_flame_model(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        read_flame_model(_truncate(model_path))
    with pytest.raises(CheckpointError, match="lacks"):
        read_flame_model(emb_path)                               # a file, but not the model
    marker = tmp_path / "pwned.txt"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({**{k: v for k, v in arrays.items()}, "x": ShellCommand(f"touch {marker}")},
                                     protocol=2))
    with pytest.raises(CheckpointError, match="Refusing to load"):
        read_flame_model(hostile)
    assert not marker.exists()


# ----------------------------------------------------------------------------- FLAME landmarks
@pytest.fixture()
def flame(flame_files: tuple) -> FlameLandmarks:
    model_path, emb_path, _, _ = flame_files
    return FlameLandmarks(read_flame_model(model_path), read_landmark_embedding(emb_path))


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def test_flame_rest_pose_landmarks_are_barycentric_template_points(flame: FlameLandmarks, flame_files: tuple) -> None:
    _, _, arrays, emb = flame_files
    z = torch.zeros(1, 100), torch.zeros(1, 50), torch.zeros(1, 6)
    verts, _ = flame.vertices(*z)
    np.testing.assert_allclose(verts[0].numpy(), arrays["v_template"], atol=1e-6)
    faces = np.concatenate([emb["dynamic_lmk_faces_idx"][0], emb["static_lmk_faces_idx"]])
    bary = np.concatenate([emb["dynamic_lmk_bary_coords"][0], emb["static_lmk_bary_coords"]])
    want = np.einsum("lfi,lf->li", arrays["v_template"][arrays["f"][faces].astype(np.int64)], bary)
    np.testing.assert_allclose(flame(*z)[0].numpy(), want, atol=1e-6)


def test_flame_global_rotation_and_contour_rows(flame: FlameLandmarks, flame_files: tuple) -> None:
    """A global yaw rotates the mesh about the root joint and picks contour row yaw (or 39 - yaw if negative)."""
    _, _, arrays, _ = flame_files
    pose = torch.zeros(3, 6)
    for i, deg in enumerate((20.0, -20.0, 60.0)):
        pose[i, 1] = math.radians(deg)
    assert flame._contour_rows(torch.cat([pose[:, :3], torch.zeros(3, 12)], 1)).tolist() == [20, 59, 39]
    verts, _ = flame.vertices(torch.zeros(3, 100), torch.zeros(3, 50), pose)
    j0 = arrays["J_regressor"][0] @ arrays["v_template"]
    want = (arrays["v_template"] - j0) @ _rot_y(20.0).T + j0
    np.testing.assert_allclose(verts[0].numpy(), want, atol=1e-5)


def test_flame_shape_and_expression_blend(flame: FlameLandmarks, flame_files: tuple) -> None:
    _, _, arrays, _ = flame_files
    shape, exp = torch.zeros(1, 100), torch.zeros(1, 50)
    shape[0, 7], exp[0, 3] = 2.0, -1.5
    verts, _ = flame.vertices(shape, exp, torch.zeros(1, 6))
    want = arrays["v_template"] + 2.0 * arrays["shapedirs"][:, :, 7] - 1.5 * arrays["shapedirs"][:, :, 303]
    np.testing.assert_allclose(verts[0].numpy(), want, atol=1e-6)


def test_orthographic_projection_to_the_crop() -> None:
    pts = torch.tensor([[[0.1, 0.2, 5.0]]])
    cam = torch.tensor([[8.0, 0.05, -0.1]])
    out = project_to_crop(pts, cam)[0, 0]
    assert torch.allclose(out, torch.tensor([(0.15 * 8) * 112 + 112, -(0.1 * 8) * 112 + 112]))


# ----------------------------------------------------------------------------- EMOCA
def test_deca_crop_centres_the_landmark_box() -> None:
    lm = torch.zeros(1, 68, 2)
    lm[0, :, 0] = torch.linspace(80, 160, 68)
    lm[0, :, 1] = torch.linspace(90, 170, 68)
    img = -torch.ones(1, 3, 256, 256)
    img[0, :, 128:132, 118:122] = 1.0                    # a white square at the box centre (120, 130)
    crop = deca_crop(img, lm)
    assert crop.shape == (1, 3, CROP_SIZE, CROP_SIZE) and crop.min() >= 0 and crop.max() <= 1
    yy, xx = np.unravel_index(crop[0, 0].argmax().item(), (CROP_SIZE, CROP_SIZE))
    assert abs(xx - 111.5) <= 3 and abs(yy - 111.5) <= 3
    size = int(80 * 1.1 * 1.25)                          # the box side in source pixels
    assert crop[0, 0].gt(0.5).sum().item() == pytest.approx((4 * 223 / size) ** 2, rel=0.6)


class _FixedEncoder(torch.nn.Module):
    """Stands in for a ``DecaResnetEncoder``: fixed codes, no features."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.out.expand(x.shape[0], -1), None


@pytest.mark.parametrize("mode, extra", [("none", 0), ("jaw", 3), ("global", 3), ("both", 6)])
def test_emoca_code_split(mode: str, extra: int) -> None:
    with torch.device("meta"):
        enc = EmocaEncoders(mode)
    flame_code = torch.arange(236.0)[None]
    exp_code = 1000 + torch.arange(50.0 + extra)[None]
    enc.E_flame, enc.E_expression = _FixedEncoder(flame_code), _FixedEncoder(exp_code)
    out = enc(torch.zeros(2, 3, 224, 224))
    assert torch.equal(out["shape"][0], flame_code[0, :100]) and torch.equal(out["exp"][0], exp_code[0, :50])
    assert torch.equal(out["cam"][0], flame_code[0, 206:209]) and out["light"].shape == (2, 9, 3)
    pose = {"none": flame_code[0, 200:206], "both": exp_code[0, 50:],
            "jaw": torch.cat([flame_code[0, 200:203], exp_code[0, 50:]]),
            "global": torch.cat([exp_code[0, 50:], flame_code[0, 203:206]])}[mode]
    assert torch.equal(out["pose"][0], pose)


def test_conditioner_uses_source_shape_and_frame_pose(flame: FlameLandmarks) -> None:
    """The official recipe: FLAME(source shape, frame expression+pose), frame camera, gaze from the frame."""
    torch.manual_seed(0)       # a small stand-in gaze net: the real one is checked against the goldens
    gaze = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 2)).eval()
    with torch.device("meta"):
        emoca = EmocaEncoders("none")
    code = torch.zeros(1, 236)
    code[0, 150:153] = torch.tensor([1.0, -2.0, 0.5])           # expression
    code[0, 200:206] = torch.tensor([0.0, 0.3, 0.0, 0.1, 0.0, 0.0])   # yaw + jaw
    code[0, 206:209] = torch.tensor([9.0, 0.01, -0.02])         # camera
    emoca.E_flame, emoca.E_expression = _FixedEncoder(code), _FixedEncoder(code[:, 150:200])
    conditioner = EmocaConditioner(emoca, flame, gaze)
    frames = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lm = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(1)) * 100 + 70
    source_shape = torch.zeros(1, 100)
    source_shape[0, 0] = 3.0
    stickman, codes = conditioner(frames, lm, source_shape)
    lm3 = project_to_crop(flame(source_shape.expand(2, -1), codes["exp"], codes["pose"]), codes["cam"])
    right, left = gaze_points(estimate_gaze(gaze, frames, lm)[0], lm3)
    assert torch.equal(stickman, draw_stickman(lm3, right, left))
    own = conditioner.landmarks(codes)                                # without: the frame's own shape
    assert not torch.allclose(own, lm3)


# ----------------------------------------------------------------------------- checkpoint files
@pytest.fixture(scope="module")
def tiny_states() -> tuple[dict, dict]:
    return (filled_state(lambda: DiffAELitModel(TINY), seed=1), filled_state(lambda: ReenactmentEncoder(TINY), seed=2))


def test_diffusionact_model_file_loads(tmp_path: Path, tiny_states: tuple) -> None:
    diff, net = tiny_states
    path = tmp_path / "diffusionact_model.pt"
    torch.save({"state_dict_diff": diff, "state_dict_net": net, "best_val_loss": 0.25,
                "global_noise": {"noise": torch.randn(3, 8, 8)}}, path)
    diffae, encoder, report = load_diffusionact_model(path, TINY)
    assert report.extra == [] and report.filled_in == []
    for key, value in diffae.state_dict().items():
        assert torch.equal(value, diff[key]), key
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, net[key]), key
    assert not any(p.requires_grad for p in diffae.parameters()) and not diffae.training


def test_diffusionact_model_file_key_problems(tmp_path: Path, tiny_states: tuple) -> None:
    diff, net = tiny_states
    path = tmp_path / "m.pt"
    no_xt = {k: v for k, v in diff.items() if k != "x_T"}
    torch.save({"state_dict_diff": {**no_xt, "conds_mean": torch.zeros(4)}, "state_dict_net": net}, path)
    diffae, _, report = load_diffusionact_model(path, TINY)          # x_T unused at inference: zero-filled
    assert report.extra == ["conds_mean"] and not diffae.x_T.any()
    torch.save({"state_dict_diff": {k: v for k, v in diff.items() if k != "model.out.2.weight"},
                "state_dict_net": net}, path)
    with pytest.raises(CheckpointError, match=r"tensor 'model\.out\.2\.weight' is missing"):
        load_diffusionact_model(path, TINY)
    torch.save({"state_dict_diff": {**diff, "ema_model.out.2.bias": torch.zeros(4)}, "state_dict_net": net}, path)
    with pytest.raises(CheckpointError, match=r"'ema_model\.out\.2\.bias' has shape \(4,\), but .* expects \(3,\)"):
        load_diffusionact_model(path, TINY)
    torch.save({"state_dict_diff": diff, "state_dict_net": {**net, "extra.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="holds 1 tensors that .* does not have"):
        load_diffusionact_model(path, TINY)
    torch.save({"state_dict": diff}, path)
    with pytest.raises(CheckpointError, match="no 'state_dict_diff' entry"):
        load_diffusionact_model(path, TINY)


def test_damaged_and_hostile_model_files_are_refused(tmp_path: Path, tiny_states: tuple) -> None:
    diff, net = tiny_states
    path = tmp_path / "m.pt"
    torch.save({"state_dict_diff": diff, "state_dict_net": net}, path)
    with pytest.raises(CheckpointError, match="truncated or damaged") as caught:
        load_diffusionact_model(_truncate(path), TINY)
    assert caught.value.action == Action("models", "diffusionact-net")
    with pytest.raises(CheckpointError, match="was not found"):
        load_diffusionact_model(tmp_path / "missing.pt", TINY)
    marker = tmp_path / "pwned.txt"
    torch.save({"state_dict_diff": diff, "state_dict_net": net, "opt": ShellCommand(f"touch {marker}")}, path)
    with pytest.raises(CheckpointError, match=r"Refusing to load m\.pt: .*system"):
        load_diffusionact_model(path, TINY)
    assert not marker.exists()


def test_diffae_lightning_checkpoint_with_hyperparameter_objects(tmp_path: Path, tiny_states: tuple) -> None:
    diff, _ = tiny_states
    path = tmp_path / "last.ckpt"
    lightning_checkpoint(diff, path)
    assert "pytorch_lightning" not in sys.modules
    with pytest.raises(Exception):                      # weights_only alone refuses the hyper-parameters
        torch.load(path, weights_only=True)
    diffae, report = load_diffae_checkpoint(path, TINY)
    assert report.extra == [] and torch.equal(diffae.ema_model.out[2].weight, diff["ema_model.out.2.weight"])
    assert "pytorch_lightning" not in sys.modules       # nothing was imported


@pytest.mark.parametrize("legacy", [False, True])
def test_gaze_model_file(tmp_path: Path, legacy: bool) -> None:
    state = filled_state(GazeNetwork, seed=5)
    path = tmp_path / "gaze_estimation_model.tar"
    torch.save({"model_state": state, "epoch": 24}, path, _use_new_zipfile_serialization=not legacy)
    net = load_gaze_network(path)
    assert torch.equal(net.gaze_fc[0].weight, state["gaze_fc.0.weight"])
    assert torch.equal(net.gaze_network.layer4[2].bn3.running_var, state["gaze_network.layer4.2.bn3.running_var"])
    if not legacy:
        with pytest.raises(CheckpointError, match="truncated or damaged"):
            load_gaze_network(_truncate(path))


def test_emoca_lightning_checkpoint(tmp_path: Path) -> None:
    with torch.device("meta"):
        names = {k: tuple(v.shape) for k, v in EmocaEncoders("none").state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {f"deca.{k}": torch.randn(s, generator=g) if len(s) else torch.tensor(0) for k, s in names.items()}
    state["deca.flame.v_template"] = torch.zeros(5, 3)                 # other EMOCA parts: ignored
    state["deca.D_detail.layer.weight"] = torch.zeros(2)
    path = tmp_path / "deca-epoch=03.ckpt"
    lightning_checkpoint(state, path)
    encoders, report = load_emoca_encoders(path)
    assert encoders.expression_pose == "none" and report.extra == []
    assert torch.equal(encoders.E_expression.layers[2].bias, state["deca.E_expression.layers.2.bias"])
    assert torch.equal(encoders.E_flame.encoder.conv1.weight, state["deca.E_flame.encoder.conv1.weight"])
