"""``studio-cli reenact`` and ``studio-cli render``: driving video -> latent track -> video.

Only argument parsing and printing live here; the work is in ``studio.jobs.reenact``. Ctrl-C
stops after the current frame (the track is saved every few frames); running the same command
again resumes at the first unfinished frame.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from personalize.progress import CancelToken
from studio.cli.common import ProgressBar, add_device_arg, ctrl_c_cancels, resolve_device, timed
from studio.project import Project


def register(sub: argparse._SubParsersAction) -> None:
    re = sub.add_parser(
        "reenact", help="re-enact the person from a driving video (per-frame latent optimization)",
        description="Prepare the driving video with the self-scan's smoothed alignment, then find, "
                    "frame by frame, the code of the personalized generator (in its P+ space) that "
                    "matches the frame's keypoints, mouth and irises. Writes PROJECT/takes/TAKE/. "
                    "Interrupted runs resume where they stopped.")
    re.add_argument("project", help="the project folder (personalized already)")
    re.add_argument("--driving", default=None,
                    help="the driving video (default: the take's copy, to resume a take)")
    re.add_argument("--name", required=True, help="take name (folder PROJECT/takes/NAME/)")
    re.add_argument("--steps", type=int, default=None,
                    help="optimization steps per frame at most (default 40; early stopping may end sooner)")
    re.add_argument("--lr", type=float, default=None, help="Adam learning rate of the warm-started frames (default 0.05, cosine-decayed "
                         "within each frame; the first frame uses 4x this)")
    re.add_argument("--no-smooth", action="store_true",
                    help="skip the temporal filter on the latent codes (sigma 2 frames)")
    re.add_argument("--first-frame", choices=("nearest-anchor", "center"), default=None,
                    help="where the first frame starts: the anchor with the nearest keypoints "
                         "(default) or the center of the person's space")
    re.add_argument("--restart", action="store_true",
                    help="discard an existing track of this take and start over")
    add_device_arg(re)
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
                    help="apply a semantic direction from PROJECT/directions (repeatable), e.g. smile=1.5")
    rd.add_argument("--style", default=None, metavar="NAME",
                    help="render with the stylized generator PROJECT/styles/NAME")
    rd.add_argument("--raw", action="store_true", help="render the codes before temporal smoothing")
    rd.add_argument("--feather", type=float, default=0.08,
                    help="soft edge of the pasted face, as a fraction of the crop (default 0.08)")
    rd.add_argument("--height", type=int, default=None, metavar="PX",
                    help="output height in pixels, e.g. 1080 or 720 (the width keeps the aspect "
                         "ratio; default: the crop's size, or the driving video's with --paste-back)")
    rd.add_argument("--out", required=True, help="output: FILE.mp4, FILE.gif or a folder for PNG frames")
    add_device_arg(rd)
    rd.set_defaults(handler=_render)


def _reenact(args: argparse.Namespace) -> int:
    from optimize.reenact_settings import ReenactSettings
    from studio.jobs.reenact import reenact_take

    project = Project.open(args.project)
    device = resolve_device(args)
    settings = ReenactSettings().adjusted(steps=args.steps, lr=args.lr, smooth=not args.no_smooth,
                                          first_frame=args.first_frame)
    token = CancelToken()
    done = timed("re-enacted")
    with ProgressBar(f"reenact {args.name}") as bar, ctrl_c_cancels(token):
        record = reenact_take(project, args.driving, args.name, settings, device=device,
                              progress=bar, cancel=token, restart=args.restart,
                              notify=lambda m: print(m, file=sys.stderr))
    done()
    print(f"take '{record['take']}': {record['n_frames']} frames at {record['fps']:g} fps, "
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
    return 0
