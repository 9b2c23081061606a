"""StyleGAN-NADA: text-driven stylization of the personalized generator (Gal et al. 2021).

Why: the paper (Sec. 4.2) renders the re-enacted latent track through a copy of the personalized
generator fine-tuned towards a text prompt ("a sketch", "the Joker"). Fine-tuned copies stay
*aligned* with their parent, so the latents found with the personalized generator render the same
pose and expression in the new style.

Recipe: a frozen source copy and a trainable target copy of the generator. For codes sampled in P
(the anchors' convex hull), the directional CLIP loss

    L = 1 - cos(E_I(G_target(w)) - E_I(G_frozen(w)),  E_T(target text) - E_T(source text))

aligns the image change with the text change. Adaptive layer selection (NADA Sec. 4): before each
step, a few *plain gradient* steps on W+ codes of the global CLIP loss
(1 - cos(E_I(G_target(w+)), E_T(target))) show which latent layers must move most to reach the
target; only the synthesis layers fed by the top-k of them (ranked by the mean absolute change of
their codes) are trained, the rest (mapping, toRGB and the other convolutions) stay frozen.
Why plain gradient steps, not Adam: Adam's first step moves every coordinate by about its step
size whatever the gradient, so every layer would move about equally and the ranking would be
noise; a gradient step moves each code in proportion to how much the loss needs it.
Defaults follow the NADA authors: Adam(lr 0.002, betas (0, 0.99)) for the weights, batch 2, ~300
iterations, one gradient step (lr 0.01) for the selection. Deviation: one CLIP model (ViT-B/32,
the one the studio ships) instead of NADA's ViT-B/32 + ViT-B/16 pair.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from personalize.errors import Action, UserError
from personalize.fileio import atomic_path, atomic_write_json, read_json
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.pspace import sample_convex

STYLE_META = "style.json"
STYLE_GENERATOR = "generator.safetensors"
CHECKPOINT = "nada_checkpoint.pt"
DIRECTION_FLOOR = 1e-2
"""|ΔI| below this (in normalized CLIP units) counts as this size in the cosine: at the first step
target == source, ΔI = 0 and the plain cosine has an exploding gradient that would wreck Adam's
second-moment estimate; below the floor the loss simply pushes ΔI along the text direction."""


@dataclass
class NadaConfig:
    target_prompt: str
    source_prompt: str = "photo"
    iterations: int = 300
    lr: float = 0.002
    batch_size: int = 2
    layers_k: int | None = None         # None: two thirds of the latent layers (12 of 18 at 1024 px)
    selection_iters: int = 1
    selection_lr: float = 0.01
    reselect_every: int = 1             # NADA re-selects every step; 0 = select once at the start
    concentration: float = 0.3          # Dirichlet concentration for sampling codes in P
    seed: int = 0
    checkpoint_every: int = 50

    def validate(self) -> None:
        for label, text in (("prompt", self.target_prompt), ("source prompt", self.source_prompt)):
            if not isinstance(text, str) or not text.strip():
                raise UserError(f"The {label} is empty.", 'Describe the style, e.g. --prompt "a pencil sketch".')
        if self.target_prompt.strip().lower() == self.source_prompt.strip().lower():
            raise UserError("The prompt equals the source prompt, so there is no direction to follow.",
                            'Use a different --prompt (e.g. "a sketch") or --source-prompt (e.g. "photo").')
        if self.iterations < 1 or self.batch_size < 1 or not (self.lr > 0):
            raise UserError("Iterations and batch size must be >= 1 and the learning rate > 0.",
                            "The defaults are 300 iterations, batch 2, lr 0.002.")


@dataclass
class NadaResult:
    generator: nn.Module
    losses: list[float]
    trained_layers: list[str]           # module names, e.g. "synthesis.b64.conv0"
    selected_ws: list[list[int]] = field(default_factory=list)
    seconds_per_iteration: float = 0.0
    resumed_from: int = 0


# --------------------------------------------------------------------------- layers
def conv_layer_names(G: nn.Module) -> list[tuple[int, str]]:
    """(ws index, module name) of each synthesis convolution, in ws order.

    Follows the official block order: b4.conv1 takes ws[0]; each later block's conv0 and conv1
    take the next two codes. toRGB layers are not listed: NADA never trains them, so the last
    code (read only by the final toRGB) has no trainable layer.
    """
    out: list[tuple[int, str]] = []
    w_idx = 0
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        names = (["conv0"] if hasattr(block, "conv0") else []) + ["conv1"]
        for offset, conv in enumerate(names):
            out.append((w_idx + offset, f"synthesis.b{res}.{conv}"))
        w_idx += block.num_conv
    return out


def default_k(G: nn.Module) -> int:
    return max(1, min(len(conv_layer_names(G)), round(2 * int(G.num_ws) / 3)))


def _set_trainable(G: nn.Module, names: set[str]) -> None:
    for p in G.parameters():
        p.requires_grad_(False)
    for name in names:
        for p in G.get_submodule(name).parameters():
            p.requires_grad_(True)


# --------------------------------------------------------------------------- losses
@torch.no_grad()
def text_direction(clip_model, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit ΔT (D,), target embedding (D,)) from the two prompts."""
    feats = clip_model.encode_text([source.strip(), target.strip()])
    delta = feats[1] - feats[0]
    norm = float(delta.norm())
    if norm < 1e-6:
        raise UserError("CLIP sees no difference between the prompt and the source prompt.",
                        "Use prompts that describe different looks.")
    return delta / norm, feats[1]


def directional_loss(clip_model, target_images: torch.Tensor, source_images: torch.Tensor,
                     text_dir: torch.Tensor, source_feats: torch.Tensor | None = None) -> torch.Tensor:
    """mean over the batch of 1 - cos(E_I(target) - E_I(source), ΔT); images (B, 3, H, W) in [-1, 1]."""
    if source_feats is None:
        source_feats = clip_model.encode_image(source_images)
    delta = clip_model.encode_image(target_images) - source_feats
    cos = (delta @ text_dir) / delta.norm(dim=-1).clamp_min(DIRECTION_FLOOR)
    return (1.0 - cos).mean()


def global_loss(clip_model, images: torch.Tensor, target_feat: torch.Tensor) -> torch.Tensor:
    """mean of 1 - cos(E_I(image), E_T(target)): NADA's loss for choosing layers."""
    return (1.0 - clip_model.encode_image(images) @ target_feat).mean()


def layers_moved_most(loss_of_ws: Callable[[torch.Tensor], torch.Tensor], ws: torch.Tensor,
                      candidates: Sequence[int], k: int, iters: int = 1, lr: float = 0.01) -> list[int]:
    """The k ``candidates`` (ws indices) whose codes move most under plain gradient steps (SGD).

    ``ws`` (B, num_ws, w_dim) W+ codes; ``loss_of_ws`` maps such codes to a scalar. Movement of a
    layer = mean |change| over the batch and w_dim (NADA's ranking). The steps are taken on an
    offset that starts at 0, so tiny steps (CLIP gradients w.r.t. w are ~1e-5) are not lost to
    float32 rounding of ``w + step``. Ties go to the lower index; the result is sorted.
    """
    offset = torch.zeros_like(ws, requires_grad=True)
    base = ws.detach()
    sgd = torch.optim.SGD([offset], lr=lr)
    for _ in range(max(1, iters)):
        sgd.zero_grad(set_to_none=True)
        loss_of_ws(base + offset).backward()
        sgd.step()
    moved = offset.detach().abs().mean(dim=(0, 2))  # (num_ws,)
    ranked = sorted(candidates, key=lambda i: (-float(moved[i]), i))
    return sorted(ranked[: max(1, min(k, len(candidates)))])


def select_layers(G_train: nn.Module, clip_model, ws: torch.Tensor, target_feat: torch.Tensor, k: int,
                  iters: int = 1, lr: float = 0.01) -> list[int]:
    """ws indices of the k layers whose codes move most under gradient steps of the global loss.

    ``ws`` (B, num_ws, w_dim). The generator's weights are not touched (gradients only reach the
    codes). The last index (toRGB only) is never chosen.
    """
    candidates = [i for i, _ in conv_layer_names(G_train)]
    for p in G_train.parameters():
        p.requires_grad_(False)

    def loss_of_ws(w_plus: torch.Tensor) -> torch.Tensor:
        return global_loss(clip_model, G_train.synthesis(w_plus, noise_mode="const"), target_feat)

    return layers_moved_most(loss_of_ws, ws, candidates, k, iters, lr)


# --------------------------------------------------------------------------- training
def train_nada(G: nn.Module, anchors: torch.Tensor | np.ndarray, clip_model, config: NadaConfig, *,
               device: torch.device | str = "cpu", checkpoint_dir: str | os.PathLike[str] | None = None,
               progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> NadaResult:
    """Fine-tune a copy of ``G`` towards ``config.target_prompt``; ``G`` itself is not modified.

    ``anchors`` (N, w_dim): the person's anchors (codes are sampled in their convex hull).
    ``checkpoint_dir``: where ``nada_checkpoint.pt`` is written every ``checkpoint_every`` steps and
    on cancel; a later call with the same config resumes from it.
    """
    config.validate()
    device = torch.device(device)
    anchors_t = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
    if anchors_t.ndim != 2 or anchors_t.shape[1] != int(G.w_dim) or anchors_t.shape[0] < 1:
        raise UserError(f"Anchors of shape {tuple(anchors_t.shape)} do not match the generator (w_dim={G.w_dim}).",
                        "Re-run the select stage for this generator.")
    clip_model = clip_model.to(device)
    frozen = copy.deepcopy(G).to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    target = copy.deepcopy(G).to(device).eval()
    layers = conv_layer_names(target)
    name_of = dict(layers)
    k = config.layers_k or default_k(target)
    trainable_params = [p for _, name in layers for p in target.get_submodule(name).parameters()]
    opt = torch.optim.Adam(trainable_params, lr=config.lr, betas=(0.0, 0.99))
    text_dir, target_feat = text_direction(clip_model, config.source_prompt, config.target_prompt)
    text_dir, target_feat = text_dir.to(device), target_feat.to(device)

    losses: list[float] = []
    selected_history: list[list[int]] = []
    trained: set[str] = set()
    start = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if ckpt_path is not None and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state.get("config") == _config_key(config):
            target.load_state_dict(state["generator"])
            opt.load_state_dict(state["optimizer"])
            start, losses = int(state["iteration"]), [float(v) for v in state["losses"]]
            trained = set(state["trained"])
    resumed_from = start
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(start):  # keep the code sequence identical to an uninterrupted run
        sample_convex(anchors_t, config.batch_size, generator=gen, concentration=config.concentration)

    def save_checkpoint(iteration: int) -> None:
        if ckpt_path is None:
            return
        with atomic_path(ckpt_path) as tmp:
            torch.save({"iteration": iteration, "generator": target.state_dict(), "optimizer": opt.state_dict(),
                        "losses": losses, "trained": sorted(trained), "config": _config_key(config)}, tmp)

    chosen: list[int] = []
    timer = time.perf_counter()
    for it in range(start, config.iterations):
        try:
            cancel.check()
        except BaseException:
            save_checkpoint(it)
            raise
        codes = sample_convex(anchors_t, config.batch_size, generator=gen, concentration=config.concentration)
        ws = codes.to(device).unsqueeze(1).repeat(1, int(target.num_ws), 1)
        if not chosen or (config.reselect_every and (it - start) % config.reselect_every == 0):
            chosen = select_layers(target, clip_model, ws, target_feat, k, config.selection_iters,
                                   config.selection_lr)
            selected_history.append(chosen)
        names = {name_of[i] for i in chosen}
        trained |= names
        _set_trainable(target, names)
        with torch.no_grad():
            source_feats = clip_model.encode_image(frozen.synthesis(ws, noise_mode="const"))
        opt.zero_grad(set_to_none=True)
        loss = directional_loss(clip_model, target.synthesis(ws, noise_mode="const"), None, text_dir, source_feats)
        if not torch.isfinite(loss):
            raise UserError("Stylization diverged (the loss became NaN).", "Try a lower learning rate or fewer iterations.")
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        done = it + 1
        progress(done, config.iterations, f"CLIP loss {losses[-1]:.4f}")
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.iterations:
            save_checkpoint(done)
    steps = max(1, config.iterations - start)
    for p in target.parameters():
        p.requires_grad_(False)
    if ckpt_path is not None and ckpt_path.is_file():
        ckpt_path.unlink()
    return NadaResult(target.cpu().eval(), losses, sorted(trained), selected_history,
                      (time.perf_counter() - timer) / steps, resumed_from)


def _config_key(config: NadaConfig) -> dict[str, Any]:
    key = asdict(config)
    key.pop("checkpoint_every", None)
    return key


# --------------------------------------------------------------------------- saving
def check_style_target(style_dir: str | os.PathLike[str], force: bool) -> None:
    """Refuse to overwrite a finished style unless ``force`` (call before training, to fail fast)."""
    style_dir = Path(style_dir)
    if (style_dir / STYLE_META).exists() and not force:
        raise UserError(f"A style named '{style_dir.name}' already exists ({style_dir}).",
                        "Choose another name, or replace it.", Action("force"))


def save_style(result: NadaResult, style_dir: str | os.PathLike[str], config: NadaConfig,
               force: bool = False, extra: dict[str, Any] | None = None) -> Path:
    """Write ``generator.safetensors`` (+ ``.json``) via ``save_generator`` and then ``style.json``.

    ``style.json`` is written last: a style counts as present only when complete.
    """
    from personalize.stylegan2 import save_generator

    style_dir = Path(style_dir)
    check_style_target(style_dir, force)
    style_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "prompt": config.target_prompt, "source_prompt": config.source_prompt,
        "iterations": config.iterations, "lr": config.lr, "batch_size": config.batch_size,
        "layers_k": config.layers_k, "trained_layers": result.trained_layers,
        "final_loss": result.losses[-1] if result.losses else None,
        "first_loss": result.losses[0] if result.losses else None,
        "seconds_per_iteration": result.seconds_per_iteration,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {}),
    }
    if (style_dir / STYLE_META).exists():
        (style_dir / STYLE_META).unlink()  # forced: mark incomplete while the generator is replaced
    path = save_generator(result.generator, style_dir / STYLE_GENERATOR, extra={"style": config.target_prompt})
    atomic_write_json(style_dir / STYLE_META, meta)
    return Path(path)


def read_style_meta(style_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(style_dir) / STYLE_META
    try:
        meta = read_json(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is missing or unreadable.", "Create the style again (replacing it).", Action("force")) from exc
    return meta if isinstance(meta, dict) else {}


def seconds_per_iteration(G: nn.Module, clip_model, iterations: int = 2, batch_size: int = 2,
                          device: torch.device | str = "cpu") -> float:
    """Time a few NADA steps on ``G`` (anchors drawn around w_avg): for benchmarks."""
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(8, int(G.w_dim), generator=g)
    config = NadaConfig(target_prompt="a sketch", iterations=iterations + 1, batch_size=batch_size)
    started = [time.perf_counter()]

    def tick(done: int, total: int, message: str = "") -> None:
        if done == 1:
            started[0] = time.perf_counter()  # the first (warm-up) step is not counted

    train_nada(G, anchors, clip_model, config, device=device, progress=tick)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started[0]) / iterations
