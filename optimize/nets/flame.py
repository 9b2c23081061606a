"""FLAME's 68 image landmarks (the layer EMOCA and DiffusionAct use), and safe FLAME file readers.

The model (Li et al. 2017) is ``v = LBS(template + S*[shape, expression] + P(pose), pose)``; the 68
landmarks are barycentric points on mesh triangles: 51 fixed ones (brows, eyes, nose, mouth) and
17 jaw-contour ones picked from a look-up table by the head's yaw (the "dynamic" contour, so the
contour follows the silhouette). Projection is EMOCA's orthographic camera (s, tx, ty) onto a
224-px crop: ``((x + t) * s) * 112 + 112`` with y flipped.

FLAME's files need a registration at flame.is.tue.mpg.de, so the user provides them:
``generic_model.pkl`` (a Python-2 pickle with ``chumpy`` arrays and a ``scipy`` sparse
regressor) and ``landmark_embedding.npy`` (a pickled dict inside a .npy, distributed with DECA and
EMOCA). Both are read with the project's restricted unpickler: chumpy arrays become numpy arrays
and the sparse matrix a dense one, built by our code from the stored arrays; no code from the
files runs, and neither chumpy nor scipy's unpickling is used. ``.npz`` variants with the same
keys are read with ``allow_pickle=False``.

Shapes: shape (B,100), expression (B,50), pose (B,6) = global rotation + jaw (axis-angle),
camera (B,3); landmarks (B,68,2) pixels of the 224-px EMOCA crop.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from personalize.errors import Action, CheckpointError, MissingWeightsError, fixed_by
from personalize.stylegan2.checkpoint_pkl import UnsafePickleError, unpickle_safely
from personalize.torch_files import SAFE_DATA_GLOBALS

FLAME_HINT = ("FLAME needs a free registration: download FLAME 2020 from https://flame.is.tue.mpg.de "
              "and import FLAME2020.zip (or the generic_model.pkl inside it) as the 'flame' weights.")
EMBEDDING_HINT = "Get FLAME's landmark embedding (DECA's data/landmark_embedding.npy) again."
MODEL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")
EMBEDDING_KEYS = ("static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx",
                  "dynamic_lmk_bary_coords")
NECK_JOINT = 1
CROP_SIZE = 224


# --------------------------------------------------------------------------- safe file reading
class _ChumpyStandIn:
    """A pickled ``chumpy`` object: only its attribute dict is kept (a plain ``Ch`` stores ``x``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SparseStandIn:
    """A pickled ``scipy.sparse`` matrix: its stored arrays, turned dense by ``_plain_array``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copy_reg._reconstructor`` (protocol 0/1 pickles), only for our stand-ins."""
    if cls not in (_ChumpyStandIn, _SparseStandIn) or base is not object:
        raise UnsafePickleError("an unexpected copy_reg._reconstructor call")
    return cls.__new__(cls)


def _flame_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = dict(SAFE_DATA_GLOBALS)
    for module in ("copy_reg", "copyreg"):
        table[(module, "_reconstructor")] = _reconstructor
    for name in ("Ch", "Select", "Reorder", "Concatenate", "Transpose", "Permute"):
        table[("chumpy.ch", name)] = _ChumpyStandIn
        table[("chumpy.reordering", name)] = _ChumpyStandIn
    for module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"):
        table[(module, module.rsplit(".", 1)[1].lstrip("_") + "_matrix")] = _SparseStandIn
    return table


def _plain_array(value: Any, key: str, name: str) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise CheckpointError(f"{name}: '{key}' is a derived chumpy expression the studio cannot evaluate.",
                                  FLAME_HINT)
        value = state["x"]
    if isinstance(value, _SparseStandIn):
        import scipy.sparse

        s = value.state if isinstance(value.state, dict) else {}
        shape = s.get("_shape", s.get("shape"))
        fmt = s.get("format", "csc")
        if shape is None or not all(k in s for k in ("data", "indices", "indptr")) or fmt not in ("csc", "csr"):
            raise CheckpointError(f"{name}: '{key}' is a sparse matrix in an unknown layout.", FLAME_HINT)
        cls = scipy.sparse.csc_matrix if fmt == "csc" else scipy.sparse.csr_matrix
        value = cls((np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])),
                    shape=tuple(int(v) for v in shape)).toarray()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise CheckpointError(f"{name}: '{key}' is not a numeric array.", FLAME_HINT)
    return arr


def _read_pickled_dict(data: bytes, name: str, hint: str) -> dict[str, Any]:
    try:
        obj = unpickle_safely(data, extra_globals=_flame_globals(), encoding="latin1", what="a FLAME file")
    except UnsafePickleError as exc:
        raise CheckpointError(f"Refusing to load {name}: {exc}. It may be damaged or unsafe; nothing from it "
                              "was run.", hint) from None
    except Exception as exc:  # noqa: BLE001 - truncated/damaged pickle stream
        raise CheckpointError(f"{name} is truncated or damaged ({type(exc).__name__}: {exc}).",
                              f"Download it again. {hint}") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a FLAME dictionary.", hint)
    return obj


def _read_file(path: str | Path, keys: tuple[str, ...], what: str, hint: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what} is missing: {path}", hint)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                raw: dict[str, Any] = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise CheckpointError(f"{path.name}: an .npz {what} must hold plain arrays ({exc}).", hint) from None
        except Exception as exc:  # noqa: BLE001 - zip errors of a damaged file
            raise CheckpointError(f"{path.name} is truncated or damaged ({type(exc).__name__}).", hint) from None
    else:
        data = path.read_bytes()
        if path.suffix == ".npy":
            data = _npy_payload(data, path.name, hint)
        raw = _read_pickled_dict(data, path.name, hint)
    missing = [k for k in keys if k not in raw]
    if missing:
        raise CheckpointError(f"{path.name} is not {what}: it lacks {', '.join(missing)}.", hint)
    return {k: _plain_array(raw[k], k, path.name) for k in raw if k in keys}


def _npy_payload(data: bytes, name: str, hint: str) -> bytes:
    """The pickle inside an object-array .npy (``np.save`` of a dict), header checked by numpy."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)(stream)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{name} is not a .npy file ({exc}).", hint) from None
    if header[2] != np.dtype(object):
        raise CheckpointError(f"{name} holds a plain array, not the landmark-embedding dictionary.", hint)
    return data[stream.tell():]


def read_flame_model(path: str | Path) -> dict[str, np.ndarray]:
    """FLAME's arrays (``MODEL_KEYS``) from ``generic_model.pkl`` (chumpy pickle) or an .npz."""
    with fixed_by(Action("models", "flame")):
        return _read_file(path, MODEL_KEYS, "the FLAME model", FLAME_HINT)


def read_landmark_embedding(path: str | Path) -> dict[str, np.ndarray]:
    """FLAME's 68-landmark embedding (``EMBEDDING_KEYS``) from ``landmark_embedding.npy`` or an .npz."""
    with fixed_by(Action("models", "flame-landmarks")):
        return _read_file(path, EMBEDDING_KEYS, "FLAME's landmark embedding", EMBEDDING_HINT)


# --------------------------------------------------------------------------- the model
def batch_rodrigues(rot_vecs: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N,3) -> rotation matrices (N,3,3); the +1e-8 keeps zero rotations finite (as FLAME's)."""
    angle = torch.norm(rot_vecs + 1e-8, dim=1, keepdim=True)
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = axis.split(1, dim=1)
    zeros = torch.zeros_like(rx)
    k = torch.cat([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * k + (1 - cos) * torch.bmm(k, k)


def _rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """World transforms of the joints (B,J,4,4), expressed relative to the rest-pose joints."""
    b, j = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = rel[:, 1:] - joints[:, parents[1:]]
    local = torch.zeros(b, j, 4, 4, dtype=joints.dtype, device=joints.device)
    local[:, :, :3, :3] = rot_mats
    local[:, :, :3, 3] = rel
    local[:, :, 3, 3] = 1
    chain = [local[:, 0]]
    for i in range(1, j):
        chain.append(chain[int(parents[i])] @ local[:, i])
    world = torch.stack(chain, dim=1)
    rest = torch.cat([joints, torch.zeros_like(joints[..., :1])], dim=-1)[..., None]   # (B,J,4,1)
    world = world.clone()
    world[..., :, 3:] = world[..., :, 3:] - world @ rest
    return world


class FlameLandmarks(nn.Module):
    """FLAME -> 68 landmarks (17 dynamic contour + 51 static), EMOCA's ``landmarks2d``, in model space.

    Buffers keep the official ``FLAME`` module's names, so an EMOCA checkpoint's ``deca.flame.*``
    tensors line up with them.
    """

    def __init__(self, model: dict[str, np.ndarray], embedding: dict[str, np.ndarray],
                 n_shape: int = 100, n_exp: int = 50) -> None:
        super().__init__()
        f32 = torch.float32
        shapedirs = torch.as_tensor(model["shapedirs"], dtype=f32)
        if shapedirs.shape[-1] < 300 + n_exp:
            raise CheckpointError(f"The FLAME model has {shapedirs.shape[-1]} blend shapes; EMOCA needs 300 "
                                  f"identity + {n_exp} expression components (FLAME 2020).", FLAME_HINT)
        self.register_buffer("faces_tensor", torch.as_tensor(model["f"].astype(np.int64)))
        self.register_buffer("v_template", torch.as_tensor(model["v_template"], dtype=f32))
        self.register_buffer("shapedirs", torch.cat([shapedirs[:, :, :n_shape], shapedirs[:, :, 300:300 + n_exp]], 2))
        posedirs = np.asarray(model["posedirs"])
        self.register_buffer("posedirs", torch.as_tensor(posedirs.reshape(-1, posedirs.shape[-1]).T, dtype=f32))
        self.register_buffer("J_regressor", torch.as_tensor(model["J_regressor"], dtype=f32))
        parents = torch.as_tensor(np.asarray(model["kintree_table"])[0].astype(np.int64))
        parents[0] = -1
        self.register_buffer("parents", parents)
        self.register_buffer("lbs_weights", torch.as_tensor(model["weights"], dtype=f32))
        self.register_buffer("lmk_faces_idx", torch.as_tensor(embedding["static_lmk_faces_idx"].astype(np.int64)))
        self.register_buffer("lmk_bary_coords", torch.as_tensor(embedding["static_lmk_bary_coords"], dtype=f32))
        self.register_buffer("dynamic_lmk_faces_idx",
                             torch.as_tensor(embedding["dynamic_lmk_faces_idx"].astype(np.int64)))
        self.register_buffer("dynamic_lmk_bary_coords",
                             torch.as_tensor(embedding["dynamic_lmk_bary_coords"], dtype=f32))
        chain, joint = [], NECK_JOINT
        while joint != -1:
            chain.append(joint)
            joint = int(parents[joint])
        self.register_buffer("neck_kin_chain", torch.tensor(chain, dtype=torch.long))
        self.n_exp = n_exp

    def vertices(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed vertices (B,V,3) and the full pose (B,15): global, neck (0), jaw, eyes (0)."""
        b = shape.shape[0]
        zeros3 = pose.new_zeros(b, 3)
        full_pose = torch.cat([pose[:, :3], zeros3, pose[:, 3:], zeros3, zeros3], dim=1)
        betas = torch.cat([shape, expression], dim=1)
        v_shaped = self.v_template[None] + torch.einsum("bl,mkl->bmk", betas, self.shapedirs)
        joints = torch.einsum("bik,ji->bjk", v_shaped, self.J_regressor)
        rot = batch_rodrigues(full_pose.reshape(-1, 3)).view(b, -1, 3, 3)
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        pose_offsets = ((rot[:, 1:] - eye).reshape(b, -1) @ self.posedirs).view(b, -1, 3)
        v_posed = v_shaped + pose_offsets
        transforms = _rigid_transforms(rot, joints, self.parents)
        per_vertex = (self.lbs_weights[None] @ transforms.view(b, -1, 16)).view(b, -1, 4, 4)
        homo = torch.cat([v_posed, torch.ones_like(v_posed[..., :1])], dim=2)
        return (per_vertex @ homo[..., None])[:, :, :3, 0], full_pose

    def _contour_rows(self, full_pose: torch.Tensor) -> torch.Tensor:
        """Row of the dynamic-contour table for each frame, from the head's yaw (degrees, rounded)."""
        b = full_pose.shape[0]
        rot = batch_rodrigues(full_pose.view(b, -1, 3)[:, self.neck_kin_chain].reshape(-1, 3)).view(b, -1, 3, 3)
        rel = torch.eye(3, dtype=rot.dtype, device=rot.device).expand(b, 3, 3)
        for i in range(rot.shape[1]):
            rel = torch.bmm(rot[:, i], rel)
        yaw = torch.atan2(-rel[:, 2, 0], torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2))
        angle = torch.round(torch.clamp(yaw * 180.0 / np.pi, max=39)).long()
        negative = angle < 0
        return torch.where(negative, torch.where(angle < -39, torch.full_like(angle, 78), 39 - angle), angle)

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B,68,3) landmarks in FLAME's model space."""
        verts, full_pose = self.vertices(shape, expression, pose)
        b = verts.shape[0]
        rows = self._contour_rows(full_pose)
        faces_idx = torch.cat([self.dynamic_lmk_faces_idx[rows], self.lmk_faces_idx[None].expand(b, -1)], 1)
        bary = torch.cat([self.dynamic_lmk_bary_coords[rows], self.lmk_bary_coords[None].expand(b, -1, -1)], 1)
        tri = self.faces_tensor[faces_idx]                                    # (B,68,3) vertex ids
        tri_verts = torch.gather(verts, 1, tri.reshape(b, -1, 1).expand(-1, -1, 3)).view(b, -1, 3, 3)
        return torch.einsum("blfi,blf->bli", tri_verts, bary)


def project_to_crop(points: torch.Tensor, cam: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """EMOCA's orthographic camera: (B,N,3) model points, (B,3) [s, tx, ty] -> (B,N,2) crop pixels."""
    xy = (points[:, :, :2] + cam[:, None, 1:]) * cam[:, None, :1]
    xy = torch.stack([xy[..., 0], -xy[..., 1]], dim=-1)
    return xy * size / 2 + size / 2
