"""Loading the official one-shot checkpoints, unchanged, without running code from them.

Every file is read by ``personalize.torch_files.load_torch_file`` (PyTorch's ``weights_only``
loader; an ``argparse.Namespace`` of stored options becomes inert data) and checked tensor by
tensor before use, so a wrong, truncated or hostile file raises a ``CheckpointError`` that names
the file, the tensor and the expected vs found shape. Networks are built on the ``meta`` device
and take the file's tensors as they are (no random init, no copy of the 1 GB hypernetwork).

File layouts (facts of the official loaders):

| file | entry | module names |
|---|---|---|
| ``stylegan-voxceleb.pt`` | ``['g_ema']`` (official ``strict=False``) | rosinality Generator(256, 512, 8, 1) |
| ``hypernetwork.pt`` | ``['state_dict']`` or the top level, keys ``hypernet.*`` | HypernetworkBlocks_edit |
| ``e4e-voxceleb.pt`` | ``['e']`` | Encoder4Editing(50, 'ir_se', 256) |
| ``insight_face.pth`` | flat ``Backbone`` dict (no ``facenet.`` prefix) | ArcFaceEncoder.facenet |
| ``deca_model.tar`` | ``['E_flame']`` (and ``['E_detail']``) | DECA ResnetEncoder(236 / 128) |
| ``A_matrix.pt`` | ``['A_matrix']`` + ``learned_directions`` 15, ``shift_scale`` 6.0, ``w_plus``, ``num_layers_shift`` 8, ``shift_dim`` 512 | DirectionMatrix |
| ``e4e_ffhq_encode.pt`` | pSp ``state_dict`` (``encoder.*``), ``latent_avg`` | see ``personalize.encoders.e4e.load_e4e`` |

Why the generator is loaded leniently, as officially: rosinality checkpoints written before the
noise buffers were registered lack ``noises.noise_0..12`` (with ``strict=False`` the official code
then keeps freshly drawn, unseeded random noise); older ones may also lack the constant blur
kernels, and training files may hold extra entries. Missing noise buffers are drawn here from a
fixed seed (``NOISE_SEED``) so results repeat; missing blur kernels get their constant
[1,3,3,1] value; extra tensors are ignored. ``load_generator`` reports what it filled in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from optimize.backends.directions import DirectionsModel
from optimize.backends.hyperreenact import HyperReenactModel
from optimize.backends.voxceleb_base import VoxCelebComposition
from optimize.nets.arcface import ArcFaceEncoder
from optimize.nets.deca import E_DETAIL_SIZE, E_FLAME_SIZE, DecaResnetEncoder
from optimize.nets.direction_matrix import N_DIRECTIONS, N_LAYERS, SHIFT_DIM, DirectionMatrix, voxceleb_coefficients
from optimize.nets.hypernet import HyperNetwork
from optimize.nets.stylegan2_rosinality import RosinalityGenerator, rosinality_blur_kernel
from personalize.encoders.e4e import Encoder4Editing, load_e4e
from personalize.errors import Action, CheckpointError, fixed_by
from personalize.torch_files import load_checked, load_torch_file, tensor_dict

NOISE_SEED = 1234
_HR = "Get the file again from the HyperReenact release (its pretrained_models/ folder)."
_DIR = "Get the file again from the latent-directions release (its pretrained_models/ folder)."


@dataclass
class GeneratorLoad:
    generator: RosinalityGenerator
    filled_in: list[str] = field(default_factory=list)   # module keys the file lacked (defaults used)
    ignored: list[str] = field(default_factory=list)     # file tensors the network does not have
    latent_avg: torch.Tensor | None = None               # stored in some files; unused by the official inference


def _generator_defaults(g: RosinalityGenerator) -> dict[str, torch.Tensor]:
    """Seeded noise buffers and the constant blur kernels, for files that lack them."""
    gen = torch.Generator().manual_seed(NOISE_SEED)
    out = {}
    for i in range(g.num_layers):
        res = 2 ** ((i + 5) // 2)
        out[f"noises.noise_{i}"] = torch.randn(1, 1, res, res, generator=gen)
    for name in g.state_dict():
        if name.endswith("blur.kernel") or name.endswith("upsample.kernel"):
            out[name] = rosinality_blur_kernel(4.0)
    return out


@fixed_by(Action("models", "stylegan2-voxceleb"))
def load_generator(path: str | Path) -> GeneratorLoad:
    """``stylegan-voxceleb.pt`` -> the 256 px VoxCeleb generator (eval, CPU) and a load report."""
    path = Path(path)
    what = "the VoxCeleb StyleGAN2 generator (stylegan-voxceleb.pt)"
    ckpt = load_torch_file(path, what, _HR)
    tensors = tensor_dict(ckpt, path.name, what, _HR, key="g_ema")
    with torch.device("meta"):
        g = RosinalityGenerator(256, 512, 8, channel_multiplier=1)
    report = load_checked(g, tensors, path.name, what, _HR, defaults=_generator_defaults(g), ignore_unexpected=True)
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt, Mapping) else None
    latent_avg = latent_avg.float() if isinstance(latent_avg, torch.Tensor) else None
    return GeneratorLoad(g.eval().requires_grad_(False), report.filled_in, report.extra, latent_avg)


@fixed_by(Action("models", "hyperreenact-net"))
def load_hypernetwork(path: str | Path) -> HyperNetwork:
    """``hypernetwork.pt`` -> HyperNetwork (keys ``hypernet.*`` of ``['state_dict']`` or the top level)."""
    path = Path(path)
    what = "the HyperReenact hypernetwork (hypernetwork.pt)"
    ckpt = load_torch_file(path, what, _HR)
    key = "state_dict" if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping) else None
    tensors = tensor_dict(ckpt, path.name, what, _HR, key=key, strip_prefix="hypernet.")
    with torch.device("meta"):
        net = HyperNetwork()
    load_checked(net, tensors, path.name, what, _HR)
    return net.eval().requires_grad_(False)


@fixed_by(Action("models", "e4e-voxceleb"))
def load_e4e_voxceleb(path: str | Path) -> Encoder4Editing:
    """``e4e-voxceleb.pt`` -> the 256 px e4e (14 styles). No latent_avg is used by the one-shot modes."""
    encoder, _ = load_e4e(path)
    if encoder.style_count != 14:
        raise CheckpointError(f"{Path(path).name} is an e4e for {encoder.resolution} px generators; the one-shot "
                              "modes need the 256 px VoxCeleb e4e (e4e-voxceleb.pt).", _HR)
    return encoder


@fixed_by(Action("models", "arcface-irse50"))
def load_arcface(path: str | Path) -> ArcFaceEncoder:
    """``insight_face.pth`` (flat IR-SE-50 ``Backbone`` dict) -> ArcFaceEncoder."""
    path = Path(path)
    what = "the ArcFace IR-SE-50 network (insight_face.pth)"
    flat = tensor_dict(load_torch_file(path, what, _HR), path.name, what, _HR)
    tensors = {k if k.startswith("facenet.") else f"facenet.{k}": v for k, v in flat.items()}
    with torch.device("meta"):
        net = ArcFaceEncoder()
    load_checked(net, tensors, path.name, what, _HR)
    return net.eval().requires_grad_(False)


@fixed_by(Action("models", "deca"))
def load_deca(path: str | Path, part: str = "E_flame") -> DecaResnetEncoder:
    """``deca_model.tar`` -> DECA's ``E_flame`` (236 codes) or ``E_detail`` (128) encoder."""
    path = Path(path)
    what = f"the DECA model (deca_model.tar, '{part}')"
    tensors = tensor_dict(load_torch_file(path, what, _HR), path.name, what, _HR, key=part)
    with torch.device("meta"):
        net = DecaResnetEncoder(E_FLAME_SIZE if part == "E_flame" else E_DETAIL_SIZE)
    load_checked(net, tensors, path.name, what, _HR)
    return net.eval().requires_grad_(False)


@fixed_by(Action("models", "directions-a"))
def load_direction_matrix(path: str | Path) -> tuple[DirectionMatrix, dict[str, Any]]:
    """``A_matrix.pt`` -> (DirectionMatrix, its stored settings); settings other than the VoxCeleb
    model's (15 directions, W+, 8 layers, 512, shift scale 6) are refused."""
    path = Path(path)
    what = "the latent-directions matrix (A_matrix.pt)"
    ckpt = load_torch_file(path, what, _DIR)
    tensors = tensor_dict(ckpt, path.name, what, _DIR, key="A_matrix")
    settings = {k: ckpt.get(k) for k in ("learned_directions", "shift_scale", "w_plus", "num_layers_shift", "shift_dim")}
    wanted = {"learned_directions": N_DIRECTIONS, "shift_scale": voxceleb_coefficients().shift_scale, "w_plus": True,
              "num_layers_shift": N_LAYERS, "shift_dim": SHIFT_DIM}
    for key, value in wanted.items():
        got = settings[key]
        if got is None or float(got) != float(value):
            raise CheckpointError(f"{path.name}: '{key}' is {got!r}, the studio's latent-directions mode needs "
                                  f"{value!r} (the VoxCeleb model).", _DIR)
    with torch.device("meta"):
        net = DirectionMatrix()
    load_checked(net, tensors, path.name, what, _DIR)
    return net.eval().requires_grad_(False), settings


@dataclass
class OneShotWeights:
    """Paths of the official files (names as in the official ``pretrained_models/``)."""

    generator: Path          # stylegan-voxceleb.pt
    e4e: Path                # e4e-voxceleb.pt
    deca: Path               # deca_model.tar
    arcface: Path | None = None       # insight_face.pth (HyperReenact)
    hypernetwork: Path | None = None  # hypernetwork.pt (HyperReenact)
    a_matrix: Path | None = None      # A_matrix.pt (directions)


def _with_shared_parts(model: VoxCelebComposition, weights: OneShotWeights,
                       device: torch.device | str) -> VoxCelebComposition:
    """Load DECA, e4e and the generator into a meta-built composition, move it, set the truncation target."""
    model.deca = load_deca(weights.deca)
    model.e4e = load_e4e_voxceleb(weights.e4e)
    model.generator = load_generator(weights.generator).generator
    model.truncation_target = torch.zeros(1, 512)
    model = model.to(device).eval()
    model.init_truncation_target()
    return model


def build_hyperreenact(weights: OneShotWeights, device: torch.device | str = "cpu") -> HyperReenactModel:
    """The full HyperReenact composition from the official files, truncation target initialised."""
    if weights.arcface is None or weights.hypernetwork is None:
        raise CheckpointError("HyperReenact needs insight_face.pth and hypernetwork.pt.", _HR)
    with torch.device("meta"):
        model = HyperReenactModel()
    model.arcface = load_arcface(weights.arcface)
    model.hypernet = load_hypernetwork(weights.hypernetwork)
    return _with_shared_parts(model, weights, device)


def build_directions(weights: OneShotWeights, device: torch.device | str = "cpu") -> DirectionsModel:
    """The full latent-directions composition from the official files."""
    if weights.a_matrix is None:
        raise CheckpointError("The latent-directions mode needs A_matrix.pt.", _DIR)
    with torch.device("meta"):
        model = DirectionsModel()
    model.a_matrix, _ = load_direction_matrix(weights.a_matrix)
    return _with_shared_parts(model, weights, device)
