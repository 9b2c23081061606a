"""``studio-cli reenact`` and ``studio-cli render``: driving video -> latent track -> video.

Only argument parsing and printing live here; the work is in ``studio.jobs.reenact``. Ctrl-C
stops after the current frame (the track is saved every few frames); running the same command
again resumes at the first unfinished frame.

Several ``--driving``/``--name`` pairs queue several takes; ``--gpus N`` runs them as N processes
under torchrun, each take split into chunks spread over the processes
(``studio.jobs.reenact_chunks``).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from personalize.progress import CancelToken
from studio.cli.common import ProgressBar, add_device_arg, ctrl_c_cancels, resolve_device, timed
from studio.cli.launch import add_gpus_arg, launch, wants_launch
from studio.project import Project


def register(sub: argparse._SubParsersAction) -> None:
    from optimize.backends import BACKENDS
    from optimize.fast_reenact import REFINE_STEPS
    from optimize.reenact_settings import FIRST_FRAME_STARTS

    modes = "; ".join(f"{name}: {info.one_line}" for name, info in BACKENDS.items())
    re = sub.add_parser(
        "reenact", help="re-enact the person from a driving video (personal generator or a one-shot mode)",
        description="Prepare the driving video with the self-scan's smoothed alignment, then re-enact it "
                    "with a mode (--backend). 'personal' finds, frame by frame, the code of the "
                    "personalized generator (in its P+ space) that matches the frame's keypoints, mouth "
                    "and irises; the one-shot modes need no personalization (only a prepared self-scan "
                    "or a --source photo) and write the re-enacted face crops. Writes "
                    f"PROJECT/takes/TAKE/. Interrupted runs resume where they stopped. Modes: {modes}.")
    re.add_argument("project", help="the project folder (personalized already for --backend personal)")
    re.add_argument("--driving", action="append", default=None,
                    help="the driving video (default: the take's copy, to resume a take); give "
                         "--driving and --name again to queue more takes")
    re.add_argument("--name", action="append", required=True, help="take name (folder PROJECT/takes/NAME/)")
    re.add_argument("--backend", choices=tuple(BACKENDS), default=None,
                    help="the re-enactment mode (default: the take's own mode when resuming it, else personal)")
    re.add_argument("--source", default=None, metavar="FRAME_OR_IMAGE",
                    help="one-shot modes: the face to animate, a self-scan frame number or an image file "
                         "(default: the self-scan's sharpest frontal frame)")
    re.add_argument("--landmarks", choices=("flame", "mediapipe"), default=None,
                    help="diffusionact: draw the conditioning from EMOCA + FLAME (official; FLAME needs a "
                         "registration) or from MediaPipe's landmarks and irises (not the official path)")
    re.add_argument("--steps", type=int, default=None,
                    help="personal: optimization steps per frame at most (default 40; early stopping may "
                         "end sooner); diffusionact: diffusion steps per frame (default 20)")
    presets = BACKENDS["diffusionact"].step_presets
    re.add_argument("--quality", choices=tuple(presets), default=None,
                    help="diffusionact: " + ", ".join(f"'{k}' = {v} steps" for k, v in presets.items())
                         + " (the official inference uses 20)")
    re.add_argument("--inversion-steps", type=int, default=None, metavar="N",
                    help="diffusionact: steps of the source's inversion, done once per take (default 50)")
    re.add_argument("--lr", type=float, default=None, help="personal: Adam learning rate of the warm-started frames "
                         "(default 0.05, cosine-decayed within each frame; the first frame uses 4x this)")
    re.add_argument("--no-smooth", action="store_true",
                    help="personal: skip the temporal filter on the latent codes (sigma 2 frames)")
    re.add_argument("--first-frame", choices=FIRST_FRAME_STARTS, default=None,
                    help="personal: where the first frame starts: the anchor with the nearest keypoints "
                         "(default), the mixture of anchors whose keypoints come nearest the frame's "
                         "(keypoint-mix: converges more often in the exact mode), or the center of the "
                         "person's space")
    re.add_argument("--restart", action="store_true",
                    help="discard an existing take of this name and start over")
    re.add_argument("--chunks", type=int, default=None, metavar="K",
                    help="personal, exact mode: split each take into K overlapping chunks, each started from "
                         "its own first frame and blended where they overlap (default: one per process with --gpus)")
    re.add_argument("--mode", choices=("exact", "fast", "refine"), default="exact",
                    help="personal: exact: optimize every frame (default); fast: the motion model's "
                         "prediction, corrected by its own renders' misses and the earlier frames' (2 generator passes a frame); refine: the first frame as exact, then the "
                         "prediction corrected in a closed loop (5 passes), scored by the optimizer (fast and refine need 'studio-cli "
                         "motion-model' first)")
    re.add_argument("--refine-steps", type=int, default=None,
                    help=f"personal, refine mode: optimizer passes per frame after the closed loop, the loop's code scored "
                         f"included (default {REFINE_STEPS}: scored and kept, no update)")
    add_device_arg(re)
    add_gpus_arg(re, "re-enact")
    re.set_defaults(handler=_reenact)

    rd = sub.add_parser(
        "render", help="render a take to MP4 (with the driving audio), GIF or PNG frames",
        description="Generate the take's frames from its latent track (optionally edited or "
                    "stylized), as aligned crops or pasted back into the driving video, and "
                    "export them. The MP4 has the driving video's frame rate and audio.")
    rd.add_argument("project", help="the project folder")
    rd.add_argument("--take", required=True, help="the take to render")
    layout = rd.add_mutually_exclusive_group()
    layout.add_argument("--paste-back", action="store_true",
                        help="paste the generated face back into the driving video's full frames")
    layout.add_argument("--crops", action="store_true", help="output the aligned crops (the default)")
    rd.add_argument("--side-by-side", action="store_true", help="driving | result, side by side")
    rd.add_argument("--edit", action="append", default=[], metavar="NAME=STRENGTH",
                    help="apply a semantic direction from PROJECT/directions (repeatable), e.g. smile=1.5 "
                         "(takes of the personal generator only)")
    rd.add_argument("--style", default=None, metavar="NAME",
                    help="render with the stylized generator PROJECT/styles/NAME (personal takes only)")
    rd.add_argument("--raw", action="store_true",
                    help="render the codes before temporal smoothing (personal takes only)")
    rd.add_argument("--feather", type=float, default=0.08,
                    help="soft edge of the pasted face, as a fraction of the crop (default 0.08)")
    rd.add_argument("--height", type=int, default=None, metavar="PX",
                    help="output height in pixels, e.g. 1080 or 720 (the width keeps the aspect "
                         "ratio; default: the crop's size, or the driving video's with --paste-back)")
    rd.add_argument("--out", required=True, help="output: FILE.mp4, FILE.gif or a folder for PNG frames")
    add_device_arg(rd)
    rd.set_defaults(handler=_render)


def _reenact(args: argparse.Namespace) -> int:
    from optimize.backends import BACKENDS
    from optimize.reenact_settings import ReenactSettings
    from personalize.distributed import SINGLE, init_from_env, launched_by_torchrun, shutdown
    from personalize.errors import UserError
    from studio.jobs.oneshot import OneShotOptions
    from studio.jobs.reenact_chunks import reenact_queue

    names, drivings = args.name, args.driving or []
    args.name = names[0] if len(names) == 1 else None  # the take an error's next step names
    project = Project.open(args.project)
    if drivings and len(drivings) != len(names):
        raise UserError(f"{len(drivings)} driving videos for {len(names)} take names.",
                        "Give one --driving per --name (or none, to resume the takes).")
    if args.chunks is not None and args.chunks < 1:
        raise UserError(f"--chunks must be at least 1 (got {args.chunks}).")
    first = names[0]
    backend = args.backend or (project.take_backend(first) if first in project.takes() else "personal")
    if backend not in BACKENDS:
        raise UserError(f"The take '{first}' does not say which mode made it.", "Give the mode with --backend.")
    personal = backend == "personal"
    if personal:
        only_oneshot = [flag for flag, value in (("--source", args.source), ("--quality", args.quality),
                                                 ("--landmarks", args.landmarks),
                                                 ("--inversion-steps", args.inversion_steps)) if value is not None]
        if only_oneshot:
            raise UserError(f"{', '.join(only_oneshot)} apply to the one-shot modes, not to the personal generator.",
                            "Choose a one-shot mode with --backend, or leave them out.")
    elif (args.lr is not None or args.no_smooth or args.first_frame is not None or args.mode != "exact"
          or args.refine_steps is not None):
        raise UserError("--lr, --no-smooth, --first-frame, --mode and --refine-steps apply to the personal "
                        "generator only.", "Leave them out for a one-shot mode.")
    if (args.gpus > 1 or (args.chunks or 1) > 1) and not (personal and args.mode == "exact"):
        raise UserError("--gpus and --chunks serve the personal generator's exact mode only.",
                        "Leave them out for this mode.")
    if wants_launch(args):
        return launch(args.argv, args.gpus, args.device)
    dist = init_from_env(args.device, backend="gloo") if launched_by_torchrun() else SINGLE
    settings = ReenactSettings().adjusted(steps=args.steps if personal else None, lr=args.lr,
                                          smooth=not args.no_smooth, first_frame=args.first_frame)
    oneshot = OneShotOptions(source=args.source, landmarks=args.landmarks, steps=None if personal else args.steps,
                             quality=args.quality, inversion_steps=args.inversion_steps)
    token = CancelToken()
    done = timed("re-enacted")
    try:
        device = dist.device if dist.is_distributed else resolve_device(args)
        with ProgressBar(f"reenact {first}" if len(names) == 1 else "reenact") as bar, \
                ctrl_c_cancels(token, quiet=not dist.is_main):
            records = reenact_queue(project, list(zip(drivings or [None] * len(names), names)), settings,
                                    device, chunks=args.chunks or dist.world_size, dist=dist, restart=args.restart,
                                    progress=bar, cancel=token, notify=lambda m: print(m, file=sys.stderr),
                                    backend=backend, oneshot=oneshot, mode=args.mode,
                                    refine_steps=args.refine_steps)
    finally:
        if dist.is_distributed:
            shutdown()
    if not dist.is_main:
        return 0
    done()
    for record in records:
        if record.get("output") == "images":
            print(f"take '{record['take']}' ({record['backend']}, source: {record['source']}): "
                  f"{record['n_frames']} frames at {record['fps']:g} fps, {record['frames_rendered_this_run']} "
                  f"rendered this run ({record['seconds_per_frame']:.2f} s/frame"
                  + ("; the cached source was reused)" if record["source_reused"]
                     else f"; source encoded in {record['source_seconds']:.1f} s)"))
            if record["flagged_frames"]:
                print(f"{len(record['flagged_frames'])} frame(s) without a face used interpolated landmarks")
        else:
            print(f"take '{record['take']}' ({record['mode']}): {record['n_frames']} frames at {record['fps']:g} fps, "
                  f"{record['frames_optimized_this_run']} optimized this run "
                  f"({record['seconds_per_frame']:.2f} s/frame)")
            if record["flagged_frames"]:
                print(f"{len(record['flagged_frames'])} frame(s) without a face held the previous code")
        print(f"render it with: studio-cli render {shlex.quote(str(project.root))} "
              f"--take {shlex.quote(record['take'])} --paste-back --out FILE.mp4")
    return 0


def _render(args: argparse.Namespace) -> int:
    from studio.jobs.reenact import render_take_job

    project = Project.open(args.project)
    device = resolve_device(args)
    token = CancelToken()
    done = timed("rendered")
    with ProgressBar(f"render {args.take}") as bar, ctrl_c_cancels(token):
        result = render_take_job(project, args.take, args.out, paste_back=args.paste_back,
                                 side_by_side=args.side_by_side, edits=args.edit or None,
                                 style=args.style, device=device, raw=args.raw,
                                 feather=args.feather, height=args.height, progress=bar,
                                 cancel=token)
    done()
    print(f"{result.frames} frames at {result.fps:g} fps -> {result.path} ({result.kind})")
    if result.edit_report:
        print(f"edits: {result.edit_report}")
    return 0
