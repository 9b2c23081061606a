"""``studio-cli motion-model`` and ``studio-cli live``: the fast modes' model and live driving.

Only argument parsing and printing live here; the work is in ``studio.jobs.motion`` and
``studio.jobs.live``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

from personalize.progress import CancelToken
from studio.cli.common import ProgressBar, add_device_arg, ctrl_c_cancels, resolve_device, timed
from studio.project import Project


def register(sub: argparse._SubParsersAction) -> None:
    mm = sub.add_parser(
        "motion-model", help="learn the person's pose/expression directions (fast modes, live)",
        description="Learn how the person's head pose and expressions move their code in the "
                    "personalized generator (one learned matrix of latent directions, trained on "
                    "the generator's own samples). Needed by 'reenact --mode fast|refine' and "
                    "'live'. Writes PROJECT/model/motion/. Interrupted runs resume.")
    mm.add_argument("project", help="the project folder (personalized already)")
    mm.add_argument("--kind", choices=("linear", "mlp"), default=None,
                    help="mlp: the paper's matrix A plus a small network for what A misses (default); "
                         "linear: A alone")
    mm.add_argument("--steps", type=int, default=None, help="training steps (default 1500; 0: the start "
                                                            "alone)")
    mm.add_argument("--batch", type=int, default=None, help="samples per step (default 8)")
    mm.add_argument("--fit-steps", type=int, default=None,
                    help="mlp only: steps fitting the network to the samples before the training "
                         "(default 10000: a minute or two on a CPU, seconds on a GPU)")
    mm.add_argument("--samples", type=int, default=None,
                    help="generated samples measured for the descriptor's ranges and the start (default 512)")
    mm.add_argument("--restart", action="store_true", help="discard the samples and checkpoint, start over")
    add_device_arg(mm)
    mm.set_defaults(handler=_motion_model)

    lv = sub.add_parser(
        "live", help="drive the avatar live from a webcam or a video file",
        description="Webcam (or video) -> MediaPipe -> pose/expression -> motion model -> generator, "
                    "one generator pass per frame. Shows nothing itself: write the avatar to a video "
                    "(--out), to a virtual camera for video calls (--virtual-camera), and/or keep the "
                    "session as a take (--record). Ctrl-C ends a webcam session.")
    lv.add_argument("project", help="the project folder (with a motion model)")
    source = lv.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="drive from this video file")
    source.add_argument("--camera", type=int, metavar="INDEX", help="drive from this webcam (0: the first)")
    lv.add_argument("--out", default=None, help="write camera | avatar side by side to this MP4")
    lv.add_argument("--virtual-camera", action="store_true",
                    help="send the avatar to the system's virtual camera (needs the 'live' extra: pyvirtualcam)")
    lv.add_argument("--record", metavar="TAKE", default=None,
                    help="keep the session as a take (the driving video with its audio, re-enacted in fast mode)")
    lv.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    add_device_arg(lv)
    lv.set_defaults(handler=_live)


def _motion_model(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from optimize.fast_directions import MotionSettings
    from studio.jobs.motion import train_motion_job

    project = Project.open(args.project)
    device = resolve_device(args)
    given = {"kind": args.kind, "steps": args.steps, "batch": args.batch, "pool": args.samples,
             "fit_steps": args.fit_steps}
    changes = {k: v for k, v in given.items() if v is not None}
    settings = replace(MotionSettings(), **changes)
    token = CancelToken()
    done = timed("trained")
    with ProgressBar("motion model") as bar, ctrl_c_cancels(token):
        info = train_motion_job(project, settings, device=device, progress=bar, cancel=token,
                                restart=args.restart, notify=lambda m: print(m, file=sys.stderr))
    done()
    errors = info["held_out_keypoint_px"]
    print(f"motion model ({settings.kind}): held-out keypoint error {errors['trained']:.3f} px "
          f"(start {errors['regression']:.3f} px), {len(info['descriptor']['names'])} "
          f"descriptor elements")
    print(f"use it with: studio-cli reenact {shlex.quote(str(project.root))} --driving FILE --name NAME --mode fast")
    return 0


def _live(args: argparse.Namespace) -> int:
    from personalize.video import iter_frames, probe_video
    from studio.jobs.live import (VideoFileSink, VirtualCamera, camera_frames, open_live_driver, run_live,
                                  save_live_take, side_by_side_frame)

    project = Project.open(args.project)
    device = resolve_device(args)
    if args.record:
        project.take_dir(args.record)  # a bad name is reported before the session
    token = CancelToken()
    fps = 30.0
    if args.video:
        fps = probe_video(args.video).fps
        frames = iter_frames(args.video)
        total = probe_video(args.video).n_frames
    else:
        frames = camera_frames(args.camera, token)
        total = 0
    if args.seconds:
        frames = _for_seconds(frames, args.seconds)
    driver = open_live_driver(project, device)
    sinks = []
    out_sink = None
    recorder = None
    recording = None
    if args.virtual_camera:
        sinks.append(VirtualCamera.open(driver.size, driver.size, fps))
        print(f"virtual camera: {sinks[-1].device}", file=sys.stderr)
    if args.out:
        out_sink = VideoFileSink(args.out, fps)
    if args.record and args.camera is not None:
        recording = project.live_recording_path(time.strftime("%Y%m%d_%H%M%S"))
        recorder = VideoFileSink(recording, fps)

    def on_frame(camera, live, _fps) -> None:  # noqa: ANN001
        if out_sink is not None:
            out_sink.send(side_by_side_frame(camera, live.avatar))

    with ProgressBar("live") as bar, ctrl_c_cancels(token):
        try:
            report = run_live(driver, frames, sinks=sinks, recorder=recorder, on_frame=on_frame, total=total,
                              progress=bar, cancel=token)
        finally:
            driver.close()
            if out_sink is not None:
                out_sink.close()
    print(f"{report.frames} frames ({report.faces} with a face) in {report.seconds:.1f} s: {report.fps:.1f} fps; "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report.part_seconds.items()))
    if report.stopped_by == "source":
        print(f"the source stopped: {report.source_error}", file=sys.stderr)
    if args.record and report.frames:
        source = args.video if args.video else recording
        record = save_live_take(project, source, args.record, device=device)
        print(f"take '{record['take']}': {record['n_frames']} frames; render it with: studio-cli render "
              f"{shlex.quote(str(project.root))} --take {shlex.quote(record['take'])} --out FILE.mp4")
    return 0


def _for_seconds(frames, seconds: float):  # noqa: ANN001, ANN202
    end = time.monotonic() + seconds
    for frame in frames:
        if time.monotonic() > end:
            return
        yield frame
