"""Loading DiffusionAct's official files, unchanged, into our networks (no code from them runs).

| file (official name) | what is read | official loader |
|---|---|---|
| DiffusionAct model file (``diffusionact_model.pt``) | ``state_dict_diff`` -> ``DiffAELitModel``, ``state_dict_net`` -> ``ReenactmentEncoder`` | strict=False / strict=True |
| DiffAE ``checkpoints/ffhq256_autoenc/last.ckpt`` (Lightning) | ``state_dict`` -> ``DiffAELitModel`` | strict=False |
| ``gaze_estimation_model.tar`` | ``model_state`` -> ``GazeNetwork`` | strict=True |
| EMOCA ``EMOCA_v2_lr_mse_20/detail/checkpoints/*.ckpt`` (Lightning) | ``state_dict``: ``deca.E_flame.*``, ``deca.E_expression.*`` -> ``EmocaEncoders`` | strict=False |

Where the official code loads with strict=False, tensors it does not have stay as freshly
initialised (random) weights, which would silently wreck the output; so here every tensor of our
module must be in the file except the ``x_T`` sample buffer, which inference never uses. Extra
tensors are ignored and listed in the returned ``LoadReport``. Networks are built on the meta
device and take the file's tensors directly (no 1.3 GB random initialisation first).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import torch
from torch import nn

from personalize.errors import CheckpointError
from personalize.torch_checkpoint import load_torch_file
from optimize.nets.diffae import FFHQ256, DiffAEConfig, DiffAELitModel
from optimize.nets.emoca import N_EXP, EmocaEncoders
from optimize.nets.gaze import GazeNetwork
from optimize.nets.reenactment_encoder import ReenactmentEncoder

DIFFUSIONACT_HINT = ("Run: studio-cli models fetch diffusionact-net   "
                     "(or: studio-cli models import diffusionact-net FILE with diffusionact_model.pt)")
DIFFAE_HINT = "Run: studio-cli models fetch diffae-ffhq256   (DiffAE's ffhq256_autoenc/last.ckpt)"
GAZE_HINT = "Run: studio-cli models fetch gaze-xgaze   (gaze_estimation_model.tar)"
EMOCA_HINT = ("Run: studio-cli models fetch emoca-v2   (EMOCA_v2_lr_mse_20/detail/checkpoints/*.ckpt; "
              "EMOCA's licence is non-commercial research only)")
# Objects Lightning-era checkpoints carry next to the weights (hyper-parameters, callbacks, configs):
# they are kept as inert data and never used.
LIGHTNING_INERT = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "typing.", "pathlib.",
                   "argparse.", "gdl.", "gdl_apps.", "libs.", "experiment.", "config.", "choices.", "templates.",
                   "enum.")
M = TypeVar("M", bound=nn.Module)


@dataclass
class LoadReport:
    """Which file tensors were not used (``extra``) and which module tensors were absent (``missing``)."""

    extra: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def build_from_state(factory: Callable[[], M], tensors: Mapping[str, torch.Tensor], *, source: str, hint: str,
                     allow_missing: frozenset[str] = frozenset()) -> tuple[M, LoadReport]:
    """Build ``factory()`` on the meta device and give it ``tensors`` (checked: names, shapes).

    Missing tensors other than ``allow_missing`` (zero-filled) and shape mismatches raise a
    ``CheckpointError`` naming the file, the tensor and both shapes. Floating tensors become float32.
    """
    with torch.device("meta"):
        module = factory()
    expected = module.state_dict()
    report = LoadReport(extra=sorted(k for k in tensors if k not in expected))
    state: dict[str, torch.Tensor] = {}
    for name, ref in expected.items():
        value = tensors.get(name)
        if value is None:
            if name not in allow_missing:
                report.missing.append(name)
                continue
            value = torch.zeros(ref.shape, dtype=ref.dtype)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: '{name}' is a {type(value).__name__}, not a tensor.", hint)
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: tensor '{name}' has the wrong shape {tuple(value.shape)}; "
                                  f"expected {tuple(ref.shape)}. This is not the expected file.", hint)
        state[name] = value.float() if value.is_floating_point() else value.to(ref.dtype)
    if report.missing:
        few = ", ".join(report.missing[:5]) + (" ..." if len(report.missing) > 5 else "")
        raise CheckpointError(f"{source} lacks {len(report.missing)} tensors the network needs ({few}).", hint)
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False), report


def _dict_entry(obj: object, key: str, path: Path, what: str, hint: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, dict) or key not in obj:
        found = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path.name} is not {what}: no '{key}' entry (found {found}).", hint)
    entry = obj[key]
    if not isinstance(entry, Mapping):
        raise CheckpointError(f"{path.name}: '{key}' is not a dictionary of tensors.", hint)
    return entry


def load_diffusionact_model(path: str | Path, config: DiffAEConfig = FFHQ256
                            ) -> tuple[DiffAELitModel, ReenactmentEncoder, LoadReport]:
    """DiffusionAct's model file -> (DiffAE with fine-tuned ``model`` and ``ema_model``, encoder, report).

    ``global_noise`` (an optional module of the official code that inference leaves unused) and
    other entries are ignored.
    """
    path = Path(path)
    what = "the DiffusionAct model file"
    ckpt = load_torch_file(path, what=what, hint=DIFFUSIONACT_HINT, inert_modules=LIGHTNING_INERT)
    diff = _dict_entry(ckpt, "state_dict_diff", path, what, DIFFUSIONACT_HINT)
    net = _dict_entry(ckpt, "state_dict_net", path, what, DIFFUSIONACT_HINT)
    diffae, report = build_from_state(lambda: DiffAELitModel(config), diff, source=f"{path.name}['state_dict_diff']",
                                      hint=DIFFUSIONACT_HINT, allow_missing=frozenset({"x_T"}))
    encoder, net_report = build_from_state(lambda: ReenactmentEncoder(config), net,
                                           source=f"{path.name}['state_dict_net']", hint=DIFFUSIONACT_HINT)
    if net_report.extra:   # the official loader is strict here
        raise CheckpointError(f"{path.name}['state_dict_net'] has unexpected tensors "
                              f"({', '.join(net_report.extra[:5])}); not a DiffusionAct model file.",
                              DIFFUSIONACT_HINT)
    return diffae, encoder, report


def load_diffae_checkpoint(path: str | Path, config: DiffAEConfig = FFHQ256) -> tuple[DiffAELitModel, LoadReport]:
    """DiffAE's Lightning ``last.ckpt`` (``state_dict``: ``model.*``, ``ema_model.*``, ``x_T``)."""
    path = Path(path)
    ckpt = load_torch_file(path, what="the DiffAE checkpoint", hint=DIFFAE_HINT, inert_modules=LIGHTNING_INERT)
    state = _dict_entry(ckpt, "state_dict", path, "a DiffAE Lightning checkpoint", DIFFAE_HINT)
    return build_from_state(lambda: DiffAELitModel(config), state, source=f"{path.name}['state_dict']",
                            hint=DIFFAE_HINT, allow_missing=frozenset({"x_T"}))


def load_gaze_network(path: str | Path) -> GazeNetwork:
    """``gaze_estimation_model.tar['model_state']`` (strict, as the official loader)."""
    path = Path(path)
    ckpt = load_torch_file(path, what="the gaze estimation model", hint=GAZE_HINT, inert_modules=LIGHTNING_INERT)
    state = _dict_entry(ckpt, "model_state", path, "the gaze estimation model", GAZE_HINT)
    net, report = build_from_state(GazeNetwork, state, source=f"{path.name}['model_state']", hint=GAZE_HINT)
    if report.extra:
        raise CheckpointError(f"{path.name}['model_state'] has unexpected tensors ({', '.join(report.extra[:5])}).",
                              GAZE_HINT)
    return net


def load_emoca_encoders(path: str | Path, expression_pose: str | None = None) -> tuple[EmocaEncoders, LoadReport]:
    """EMOCA's Lightning checkpoint -> ``EmocaEncoders`` (``deca.E_flame.*``, ``deca.E_expression.*``).

    ``expression_pose`` (see ``EmocaEncoders``) is inferred from the expression head's size when
    None: 50 -> "none", 56 -> "both", 53 -> "jaw" (EMOCA's setting for the models that predict
    one pose part; pass "global" for the other).
    """
    path = Path(path)
    ckpt = load_torch_file(path, what="the EMOCA checkpoint", hint=EMOCA_HINT, inert_modules=LIGHTNING_INERT)
    state = _dict_entry(ckpt, "state_dict", path, "an EMOCA Lightning checkpoint", EMOCA_HINT)
    prefix = "deca."
    tensors = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix + "E_flame.") or k.startswith(prefix + "E_expression.")}
    if expression_pose is None:
        head = tensors.get("E_expression.layers.2.weight")
        size = int(head.shape[0]) if isinstance(head, torch.Tensor) else N_EXP
        expression_pose = {N_EXP: "none", N_EXP + 3: "jaw", N_EXP + 6: "both"}.get(size)
        if expression_pose is None:
            raise CheckpointError(f"{path.name}: the expression encoder predicts {size} values; EMOCA's have "
                                  f"{N_EXP}, {N_EXP + 3} or {N_EXP + 6}.", EMOCA_HINT)
    return build_from_state(lambda: EmocaEncoders(expression_pose), tensors, source=f"{path.name}['state_dict']",
                            hint=EMOCA_HINT)
