"""The personal generator as a backend: per-frame optimization in the person's P+ space.

The algorithm is ``optimize.reenact`` (the main paper's re-enactment); this module only declares
it to the registry, so the job, the CLI and the GUI list it beside the one-shot modes. It yields
a latent track (``optimize.track``), rendered later with the personalized or a stylized generator,
optionally through semantic edits. It needs no weights at re-enactment time besides the project's
own generator; ``setup_weights`` are what personalization reads (the FFHQ generator, LPIPS, and
the FFHQ e4e encoder for encoder anchors).
"""
from __future__ import annotations

from optimize.backends.base import BackendInfo

INFO = BackendInfo(
    name="personal",
    title="Personal generator",
    summary="best likeness, at the generator's full resolution; semantic edits and styles apply; "
            "needs personalization first; Exact is slow, Fast needs the motion model",
    output="latents", needs_personalization=True, resolution=None, crop="ffhq",
    setup_weights=("ffhq", "lpips-alex", "e4e-ffhq"))
