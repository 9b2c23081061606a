"""``studio-cli`` as a torchrun worker for the distributed tests (``python -m tests._ddp_worker ARGS``).

``python -m tests._ddp_worker --launch N ARGS`` is ``studio-cli ARGS --gpus N`` whose workers are
this module (the launcher in a process of its own, so a test can send it Ctrl-C).

Two test hooks, set explicitly here and nowhere in the studio:
- LPIPS with a random AlexNet backbone (no pretrained weights on a test machine), seeded, so
  every rank and the single-process reference use the same metric;
- ``STUDIO_TEST_KILL="RANK:STEP"`` with ``STUDIO_TEST_KILL_MARKER=FILE``: that rank kills itself
  with SIGKILL (no chance to save anything) when it starts tuning step STEP+1, as a crashed GPU
  process would, once: the marker file it leaves keeps the restarted attempt alive.
"""
from __future__ import annotations

import os
import signal
import sys


def _install_hooks() -> None:
    import studio.jobs.personalize as job
    from personalize import tuning
    from personalize.perceptual import build_lpips

    metric = build_lpips(None, random_backbone=True, seed=0)
    job.build_project_lpips = lambda device="cpu": metric
    kill = os.environ.get("STUDIO_TEST_KILL")
    if kill:
        rank, step = (int(v) for v in kill.split(":"))
        if int(os.environ.get("RANK", "0")) == rank:
            calls = [0]
            real = tuning.synthesize

            def synthesize(G, w, synthesis=None):
                if synthesis is not None:  # a training step (previews pass no wrapper)
                    calls[0] += 1
                    if calls[0] > step and _first_attempt():
                        os.kill(os.getpid(), signal.SIGKILL)
                return real(G, w, synthesis)

            tuning.synthesize = synthesize


def _first_attempt() -> bool:
    marker = os.environ["STUDIO_TEST_KILL_MARKER"]
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


if __name__ == "__main__":
    if sys.argv[1] == "--launch":
        from studio.cli.launch import launch

        processes, argv = int(sys.argv[2]), sys.argv[3:]
        sys.exit(launch(argv, processes, "cpu", module_argv=["tests._ddp_worker", *argv]))
    _install_hooks()
    from studio.cli import main

    sys.exit(main(sys.argv[1:]))
