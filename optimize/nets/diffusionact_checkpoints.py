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
device and take the file's tensors directly (no 1.3 GB random initialisation first); the reading
and the checks are ``personalize.torch_files``'s, shared with every other official file.
"""
from __future__ import annotations

from pathlib import Path

import torch

from optimize.nets.diffae import FFHQ256, DiffAEConfig, DiffAELitModel
from optimize.nets.emoca import N_EXP, EmocaEncoders
from optimize.nets.gaze import GazeNetwork
from optimize.nets.reenactment_encoder import ReenactmentEncoder
from personalize.errors import Action, CheckpointError, fixed_by
from personalize.torch_files import LoadReport, build_checked, load_torch_file, tensor_dict

# Hints are words; the step that fixes a bad file is the Action naming its weights registry entry.
DIFFUSIONACT_HINT = "Get DiffusionAct's model file (diffusionact_model.pt) again."
DIFFAE_HINT = "Get DiffAE's FFHQ-256 checkpoint (ffhq256_autoenc/last.ckpt) again."
GAZE_HINT = "Get the gaze estimation model (gaze_estimation_model.tar) again."
EMOCA_HINT = ("Get EMOCA v2 (EMOCA_v2_lr_mse_20/detail/checkpoints/*.ckpt) again; its licence is "
              "non-commercial research only.")
# Objects Lightning-era checkpoints carry next to the weights (hyper-parameters, callbacks, configs):
# they are kept as inert data and never used.
LIGHTNING_INERT = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "typing.", "pathlib.",
                   "argparse.", "gdl.", "gdl_apps.", "libs.", "experiment.", "config.", "choices.", "templates.",
                   "enum.")


def load_diffusionact_model(path: str | Path, config: DiffAEConfig = FFHQ256
                            ) -> tuple[DiffAELitModel, ReenactmentEncoder, LoadReport]:
    """DiffusionAct's model file -> (DiffAE with fine-tuned ``model`` and ``ema_model``, encoder, report).

    ``global_noise`` (an optional module of the official code that inference leaves unused) and
    other entries are ignored; so are extra tensors of ``state_dict_diff`` (listed in the report).
    The official code builds its ControlNet from DiffAE's ``last.ckpt`` and then overwrites every
    tensor with ``state_dict_net`` (strict), so that checkpoint is not needed here.
    """
    path = Path(path)
    what = "the DiffusionAct model file"
    with fixed_by(Action("models", "diffusionact-net")):
        ckpt = load_torch_file(path, what, DIFFUSIONACT_HINT, inert_modules=LIGHTNING_INERT)
        diff = tensor_dict(ckpt, path.name, what, DIFFUSIONACT_HINT, key="state_dict_diff")
        net = tensor_dict(ckpt, path.name, what, DIFFUSIONACT_HINT, key="state_dict_net")
        diffae, report = build_checked(lambda: DiffAELitModel(config), diff, f"{path.name}['state_dict_diff']",
                                       "DiffusionAct's diffusion autoencoder", DIFFUSIONACT_HINT,
                                       optional={"x_T"}, ignore_unexpected=True)
        encoder, _ = build_checked(lambda: ReenactmentEncoder(config), net, f"{path.name}['state_dict_net']",
                                   "DiffusionAct's reenactment encoder", DIFFUSIONACT_HINT)
    return diffae, encoder, report


def load_diffae_checkpoint(path: str | Path, config: DiffAEConfig = FFHQ256) -> tuple[DiffAELitModel, LoadReport]:
    """DiffAE's Lightning ``last.ckpt`` (``state_dict``: ``model.*``, ``ema_model.*``, ``x_T``)."""
    path = Path(path)
    what = "a DiffAE Lightning checkpoint"
    with fixed_by(Action("models", "diffae-ffhq256")):
        ckpt = load_torch_file(path, what, DIFFAE_HINT, inert_modules=LIGHTNING_INERT)
        state = tensor_dict(ckpt, path.name, what, DIFFAE_HINT, key="state_dict")
        return build_checked(lambda: DiffAELitModel(config), state, f"{path.name}['state_dict']",
                             "the DiffAE FFHQ-256 autoencoder", DIFFAE_HINT, optional={"x_T"},
                             ignore_unexpected=True)


def load_gaze_network(path: str | Path) -> GazeNetwork:
    """``gaze_estimation_model.tar['model_state']`` (strict, as the official loader)."""
    path = Path(path)
    what = "the gaze estimation model"
    with fixed_by(Action("models", "gaze-xgaze")):
        ckpt = load_torch_file(path, what, GAZE_HINT, inert_modules=LIGHTNING_INERT)
        state = tensor_dict(ckpt, path.name, what, GAZE_HINT, key="model_state")
        net, _ = build_checked(GazeNetwork, state, f"{path.name}['model_state']", what, GAZE_HINT)
    return net


def load_emoca_encoders(path: str | Path, expression_pose: str | None = None) -> tuple[EmocaEncoders, LoadReport]:
    """EMOCA's Lightning checkpoint -> ``EmocaEncoders`` (``deca.E_flame.*``, ``deca.E_expression.*``).

    ``expression_pose`` (see ``EmocaEncoders``) is inferred from the expression head's size when
    None: 50 -> "none", 56 -> "both", 53 -> "jaw" (EMOCA's setting for the models that predict
    one pose part; pass "global" for the other).
    """
    path = Path(path)
    what = "an EMOCA Lightning checkpoint"
    with fixed_by(Action("models", "emoca-v2")):
        ckpt = load_torch_file(path, what, EMOCA_HINT, inert_modules=LIGHTNING_INERT)
        state = tensor_dict(ckpt, path.name, what, EMOCA_HINT, key="state_dict")
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
        return build_checked(lambda: EmocaEncoders(expression_pose), tensors, f"{path.name}['state_dict']",
                             "EMOCA's encoders", EMOCA_HINT)
