"""``studio-cli prepare``: landmarks, smoothed FFHQ crops and quality flags of a self-scan.

Only argument parsing and printing live here; the work is in ``studio.jobs.prepare``. Ctrl-C
stops after the current frame; running the same command again resumes (finished crops and the
landmark pass are kept).
"""
from __future__ import annotations

import argparse
import sys

from personalize.progress import CancelToken
from studio.cli.common import ProgressBar, ctrl_c_cancels, timed
from studio.project import Project


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prepare", help="align and crop the self-scan (landmarks, smoothing, quality flags)",
        description="Track 478 face landmarks through the self-scan, smooth the FFHQ alignment "
                    "over time and write aligned crops to PROJECT/scan/ (landmarks.npz, crops/, "
                    "quality.json). Re-running re-uses finished work.")
    parser.add_argument("project", help="the project folder (create it with: studio-cli new PATH)")
    parser.add_argument("--video", default=None,
                        help="the self-scan video (default: the copy already in the project)")
    parser.add_argument("--size", type=int, default=1024,
                        help="crop size in pixels (default 1024, the FFHQ generator's size)")
    parser.add_argument("--smooth", type=float, default=2.0,
                        help="temporal smoothing sigma in frames (default 2; 0 turns it off)")
    parser.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from studio.jobs.prepare import prepare_scan

    project = Project.open(args.project)
    token = CancelToken()
    done = timed("prepared")
    with ProgressBar("prepare") as bar, ctrl_c_cancels(token):
        result = prepare_scan(project, args.video, size=args.size, smooth=args.smooth,
                              progress=bar, cancel=token)
    done()
    summary = result.summary
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary["counts"].items() if v)
    print(f"{summary['n_frames']} frames, {summary['n_valid']} with a face, "
          f"{summary['n_usable']} usable" + (f" ({counts})" if counts else ""))
    print(f"crops ({result.size}x{result.size}): {project.scan_crops_dir}")
    if result.reused:
        print("(already prepared with these settings: nothing recomputed)", file=sys.stderr)
    return 0
