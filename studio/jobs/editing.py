"""Jobs 'directions' and 'stylize': semantic directions and NADA styles of a personalized generator.

Shared by the CLI and the GUI. The work is in ``editing.directions`` / ``editing.learn_direction``
/ ``editing.nada``; this module resolves project files and pretrained weights (CLIP through
``studio.weights``) and writes the results:

    directions/<name>.npy + <name>.json     imported or learned directions
    directions/.learn_<attribute>.npz       partial sample scores of an interrupted 'learn' (resume)
    styles/<name>/generator.safetensors+.json, style.json, nada_checkpoint.pt (while training)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from editing.directions import (Direction, direction_exists, list_directions, load_direction,
                                make_ws_edit, parse_edit, project_direction, read_direction_file,
                                reliability, save_direction)
from editing.render import WsEdit
from optimize.track import load_track
from personalize.errors import Action, ProjectError, UserError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.project import Project, safe_name


# ----------------------------------------------------------------------------- project files
def load_personalized(project: Project, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, np.ndarray]:
    """(personalized generator in eval mode, anchors); a module-level function so tests can substitute."""
    from personalize.stylegan2 import load_generator

    project.require("personalize", "Editing")
    G = load_generator(project.require_generator(), device=device).eval()
    return G, project.load_anchors()


def build_clip(device: torch.device | str = "cpu"):
    """Real CLIP ViT-B/32 from the weights cache (MissingWeightsError saying how to fetch it)."""
    from editing.clip_model import load_clip
    from studio.weights import require_weights

    return load_clip(require_weights("clip-vit-b32"), device=device)


# ----------------------------------------------------------------------------- directions
def import_direction(project: Project, file: str | Path, name: str, *, project_to_anchors: bool = True,
                     force: bool = False, progress: ProgressFn = no_progress,
                     cancel: CancelToken = NEVER_CANCELLED) -> Direction:
    """Import a published W/W+ direction into ``directions/<name>``.

    Checked against the personalized generator's w_dim/num_ws when it exists. Its reliability
    (cosine to its projection onto the anchors' span) is recorded when anchors exist. By default
    the projected direction is stored (MyStyle and the paper edit within the person's space);
    ``project_to_anchors=False`` (``--no-project``) keeps the FFHQ-wide original.
    """
    name = safe_name(name, "direction")
    cancel.check()
    w_dim, num_ws = project.generator_shape()
    vector = read_direction_file(file, w_dim=w_dim, num_ws=num_ws)
    meta: dict[str, Any] = {"source": "imported", "file": str(Path(file).resolve()), "attribute": name,
                            "projected": False, "reliability": None}
    anchors = None
    if project.has_anchors() or project_to_anchors:
        try:
            anchors = project.load_anchors()
        except ProjectError as exc:
            raise ProjectError(f"{exc.message} Importing projects the direction onto them.",
                               "Personalize first, or import the direction without projection.",
                               exc.action) from exc
    if anchors is not None:
        if anchors.shape[1] != vector.shape[-1]:
            raise UserError(f"The direction has dimension {vector.shape[-1]}, this person's anchors {anchors.shape[1]}.",
                            "Use a direction made for this generator.")
        if project_to_anchors:
            vector, rel = project_direction(vector, anchors)
            meta.update(projected=True, reliability=rel)
        else:
            meta["reliability"] = reliability(vector, anchors) if anchors.shape[0] >= 2 else None
    direction = Direction(name=name, vector=vector, meta=meta)
    save_direction(project.directions_dir, direction, force=force)
    progress(1, 1, f"imported '{name}'")
    if project.status("personalize") == "done":
        project.mark_done("edit", last=f"direction {name}")
    return direction


def learn_direction(project: Project, attribute: str, *, name: str | None = None, samples: int = 2000,
                    seed: int = 0, batch_size: int = 8, force: bool = False,
                    device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                    cancel: CancelToken = NEVER_CANCELLED):
    """Learn ``attribute``'s direction for this person's generator and save it (resumable)."""
    from editing.attributes import ATTRIBUTES
    from editing.learn_direction import learn_direction as learn

    if attribute not in ATTRIBUTES:
        raise UserError(f"Unknown attribute '{attribute}'.", f"Choose one of: {', '.join(ATTRIBUTES)}.")
    name = safe_name(name or attribute, "direction")
    if not force and direction_exists(project.directions_dir, name):
        raise UserError(f"A direction named '{name}' already exists.",
                        "Choose another name, or replace it.", Action("force"))
    clip_model = build_clip(device) if attribute == "age" else None  # fail before rendering anything
    G, anchors = load_personalized(project, device)
    cache = project.learn_cache_path(attribute)
    project.mark_running("edit")
    try:
        result = learn(G, anchors, attribute, clip_model=clip_model, n_samples=samples, seed=seed,
                       batch_size=batch_size, device=device, name=name, cache_path=cache,
                       progress=progress, cancel=cancel)
        save_direction(project.directions_dir, result.direction, force=force)
    except BaseException:
        project.mark_stopped("edit")
        raise
    if cache.exists():
        cache.unlink()
    project.mark_done("edit", last=f"direction {name}", accuracy=result.accuracy)
    return result


def directions_table(project: Project) -> list[dict[str, Any]]:
    """One row per saved direction (for `directions list` and the GUI's sliders)."""
    rows = []
    for d in list_directions(project.directions_dir):
        rows.append({"name": d.name, "source": d.meta.get("source", "?"), "attribute": d.meta.get("attribute"),
                     "shape": list(d.vector.shape), "reliability": d.meta.get("reliability"),
                     "accuracy": d.meta.get("accuracy"), "projected": d.meta.get("projected", False)})
    return rows


# ----------------------------------------------------------------------------- styles
def stylize(project: Project, prompt: str, name: str, *, source_prompt: str = "photo", iterations: int = 300,
            lr: float = 0.002, batch_size: int = 2, layers_k: int | None = None, seed: int = 0,
            force: bool = False, device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
            cancel: CancelToken = NEVER_CANCELLED) -> Path:
    """Fine-tune a NADA-stylized copy of the personalized generator into ``styles/<name>/`` (resumable)."""
    from editing.nada import NadaConfig, check_style_target, save_style, train_nada

    config = NadaConfig(target_prompt=prompt, source_prompt=source_prompt, iterations=iterations, lr=lr,
                        batch_size=batch_size, layers_k=layers_k, seed=seed)
    config.validate()
    style_dir = project.style_dir(name)
    check_style_target(style_dir, force)
    clip_model = build_clip(device)
    G, anchors = load_personalized(project, device)
    project.mark_running("edit")
    try:
        result = train_nada(G, anchors, clip_model, config, device=device, checkpoint_dir=style_dir,
                            progress=progress, cancel=cancel)
        path = save_style(result, style_dir, config, force=force,
                          extra={"clip_random_weights": bool(getattr(clip_model, "random_weights", False))})
    except BaseException:
        project.mark_stopped("edit")
        raise
    project.mark_done("edit", last=f"style {name}", final_loss=result.losses[-1])
    return path


def styles_table(project: Project) -> list[dict[str, Any]]:
    """One row per finished style (for `directions list`)."""
    from editing.nada import read_style_meta

    rows = []
    for name in project.styles():
        try:
            meta = read_style_meta(project.style_dir(name))
        except UserError:
            continue
        rows.append({"name": name, "prompt": meta.get("prompt"),
                     "iterations": meta.get("iterations"), "final_loss": meta.get("final_loss")})
    return rows


# ----------------------------------------------------------------------------- edits
EditSpec = Mapping[str, float] | Iterable[str] | Iterable[tuple[str, float]] | None


def edits_to_ws_edit(project: Project, edits: EditSpec, w_dim: int, num_ws: int) -> WsEdit | None:
    """``edits`` ({'smile': 1.5}, ['smile=1.5'] or [('smile', 1.5)]) -> a ws-edit function, or None."""
    if not edits:
        return None
    pairs: list[tuple[str, float]] = []
    items = edits.items() if isinstance(edits, Mapping) else edits
    for item in items:
        if isinstance(item, str):
            pairs.append(parse_edit(item))
        else:
            name, strength = item
            pairs.append((str(name), float(strength)))
    chosen = [(load_direction(project.directions_dir, n, w_dim=w_dim, num_ws=num_ws), s)
              for n, s in pairs if s != 0.0]
    return make_ws_edit(chosen, anchors=project.load_anchors()) if chosen else None  # inside P_beta


# ----------------------------------------------------------------------------- preview
_GENERATOR_CACHE: dict[tuple[str, int, str], torch.nn.Module] = {}


def _cached_generator(path: Path, device: torch.device | str) -> torch.nn.Module:
    """Previews re-render often; keep the last generator per (file, mtime, device) in memory."""
    from personalize.stylegan2 import load_generator

    key = (str(path), path.stat().st_mtime_ns, str(device))
    if key not in _GENERATOR_CACHE:
        _GENERATOR_CACHE.clear()  # one generator at a time: a 1024 px generator is ~120 MB
        _GENERATOR_CACHE[key] = load_generator(path, device=device).eval()
    return _GENERATOR_CACHE[key]


def preview_frame(project: Project, take: str, frame: int = 0, edits: dict[str, float] | None = None,
                  style: str | None = None, device: torch.device | str = "cpu",
                  progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> np.ndarray:
    """One frame of a take with ``edits`` (direction name -> strength) and optional ``style``:
    (R, R, 3) uint8 RGB aligned crop (the GUI's live preview)."""
    if project.take_output(take) == "images":
        raise UserError(f"The take '{take}' was made by a one-shot mode: it holds images, not codes of your "
                        "generator, so edits and styles do not apply to it.",
                        "Choose a take of the personal generator.")
    track = load_track(project.track_path(take)).best_ws()
    if not 0 <= int(frame) < track.shape[0]:
        raise UserError(f"Frame {frame} is outside the take (0..{track.shape[0] - 1}).", "Choose another frame.")
    path = project.style_generator_path(style) if style else project.require_generator()
    cancel.check()
    G = _cached_generator(path, device)
    ws = torch.from_numpy(np.ascontiguousarray(track[int(frame)][None])).float()
    edit = edits_to_ws_edit(project, edits, int(ws.shape[-1]), int(ws.shape[1]))
    ws = (edit(ws) if edit is not None else ws).to(device)
    with torch.no_grad():
        image = G.synthesis(ws, noise_mode="const")
    return ((image[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
