"""``studio-cli select`` and ``studio-cli personalize``: diverse frames, anchors, pivotal tuning.

Only argument parsing and printing live here; the work is in ``studio.jobs.personalize``.
Ctrl-C asks the job to stop at the next step (it checkpoints first), so running the same
command again resumes where it stopped.
"""
from __future__ import annotations

import argparse
import sys

from personalize.progress import CancelToken
from studio.cli.common import ProgressBar, add_device_arg, ctrl_c_cancels, resolve_device
from studio.project import Project


def register(sub: argparse._SubParsersAction) -> None:
    select = sub.add_parser("select", help="pick the most diverse self-scan frames (LPIPS)",
                            description="Greedy max-min LPIPS selection of training frames "
                                        "(paper Alg. 1); writes dataset/selection.json.")
    select.add_argument("project", help="the project folder")
    select.add_argument("--count", type=int, default=250, help="frames to keep (default 250)")
    select.add_argument("--work-size", type=int, default=None,
                        help="crop size used for LPIPS (default 128)")
    add_device_arg(select)
    select.set_defaults(handler=_select)

    pers = sub.add_parser("personalize", help="tune a personalized generator (MyStyle)",
                          description="Select frames and invert them if not done yet, then "
                                      "fine-tune the base generator on them (resumable).")
    pers.add_argument("project", help="the project folder")
    pers.add_argument("--base", required=True,
                      help="'ffhq' (the official FFHQ StyleGAN2, see studio-cli models) or a "
                           ".pkl/.safetensors generator file")
    pers.add_argument("--frames", type=int, default=250, help="training frames (default 250)")
    pers.add_argument("--steps", type=int, default=None,
                      help="tuning steps (default by resolution: 3000 at 1024 px)")
    pers.add_argument("--batch", type=int, default=4, help="frames per step (lower it if the GPU runs out of memory)")
    pers.add_argument("--inversion-steps", type=int, default=500, help="projection steps per frame batch")
    pers.add_argument("--checkpoint-every", type=int, default=100,
                      help="steps between checkpoints and preview grids")
    add_device_arg(pers)
    pers.set_defaults(handler=_personalize)


def _notify(message: str) -> None:
    print(message, file=sys.stderr)


def _select(args: argparse.Namespace) -> int:
    from studio.jobs.personalize import select_frames

    project = Project.open(args.project)
    device = resolve_device(args)
    token = CancelToken()
    with ProgressBar("select") as bar, ctrl_c_cancels(token):
        info = select_frames(project, args.count, work_size=args.work_size, device=device,
                             progress=bar, cancel=token, notify=_notify)
    print(f"selected {info['count']} of {info['usable_frames']} frames in {info['seconds']} s "
          f"-> {project.selection_path}")
    for name, c in info.get("coverage", {}).items():
        print(f"  {name:<11} spread (std) chosen {c['chosen_std']:.3f} vs all {c['all_std']:.3f}")
    return 0


def _personalize(args: argparse.Namespace) -> int:
    from studio.jobs.personalize import personalize_project

    project = Project.open(args.project)
    device = resolve_device(args)
    token = CancelToken()
    with ProgressBar("personalize") as bar, ctrl_c_cancels(token):
        config = personalize_project(project, args.base, frames=args.frames, steps=args.steps,
                                     batch=args.batch, device=device,
                                     inversion_steps=args.inversion_steps,
                                     checkpoint_every=args.checkpoint_every,
                                     progress=bar, cancel=token, notify=_notify)
    print(f"personalized generator ({config['resolution']} px, {config['frames']} frames, "
          f"final loss {config['final_loss']:.4f}) -> {project.generator_path}")
    return 0
