"""Live driving: a camera frame in, the avatar out, one generator pass per frame.

Per frame (``LiveDriver.process``): MediaPipe in tracking mode on the camera frame (the subject
is followed as in ``personalize.faces.prepare``) -> the FFHQ alignment square of those landmarks,
smoothed causally (``CausalAlignment``) -> the landmarks in that aligned crop's pixels (mapped by
the alignment transform: no warp and no second MediaPipe pass, the descriptor only needs points)
-> the motion model's code (``optimize.fast_reenact.MotionPredictor``) -> the generator.

Why causal smoothing here: an offline take is smoothed with a centered Gaussian along time, which
needs future frames; live, an exponential filter on the alignment and on the code removes
MediaPipe's jitter at the cost of about ``s / (1 - s)`` frames of lag (one frame at s = 0.5).

Why a lower precision live (``live_precision``): the one generator pass is nearly all of a
frame's time. On a CPU with native bfloat16 (AVX-512 BF16 or AMX) every synthesis block runs in
bf16 with channels-last activations (``SynthesisNetwork.forward(bf16=True, channels_last=True)``;
oneDNN's convolutions, transposed ones above all, are fastest in that layout, and the layers keep
their weights converted once, ``ops.FrozenWeight``): about 0.14-0.16 s instead of 0.24-0.29 s
per 256 px frame on the 2-core CI machine (``bench/fastmode.py``), and the image moves by about
0.012 on [-1, 1] on average (under two grey levels of 255) -- invisible in a preview or a video
call, and a recording keeps the codes, which export renders again in full precision. On a
2-core machine with AMX, live measured 12.0-12.5 fps in bf16 (4.8-5.1 fps in fp32). On CUDA
the generator's own fp16 blocks are used (its mixed precision), channels-last as the official
fp16 blocks are. On one H200 at 1024 px (``bench/fastmode.py``, three runs) they ran as fast as
fp32 with TF32 once the render is one CUDA graph (98-124 against 90-128 fps, the images 0.0023 apart
on [-1, 1] on average): fp16 stays the default for its halved activation memory and for GPUs whose
TF32 rate is well below their fp16 rate (consumer cards). Without the graph the fp16 pass was
no faster (11-19 ms against 9-14 ms over four runs: more kernels, each launched from Python).

Without native bf16 (an AVX2-only CPU such as a 2-core Zen 3 EPYC) live runs in fp32: 0.30-0.40 s
a 256 px pass, 2.6-3.2 fps (``bench/fastmode.py --skip-quality``, two runs). The pass is 30 GFLOP,
which oneDNN already runs at 75-100 GFLOP/s there (the bench prints both); 5 fps would need
about 165 GFLOP/s from the generator alone, more than the two cores' fp32 peak at their 2.45 GHz
base clock (157), and channels-last fp32 measured no consistent gain (the bench times both
layouts alternately). Such a machine drives live below 5 fps unless it has a GPU.

Why live has no feedback, unlike a fast take (``optimize.fast_reenact``): live reads the camera
with MediaPipe's tracker, mapped into the crop, so the avatar would be read by another
instrument (static mode on the aligned render), and the feedback would add up their difference
(``closed_loop`` measured such a difference making faces worse); whether it helps live is not
measured. The read itself would cost about 10 ms a 256 px frame on the 2-core CPU
(``bench/fastmode.py``), and on a GPU it would share a 30 fps frame's 33 ms with the camera's
own MediaPipe pass.

Why a GPU's frames overlap (``LiveDriver.overlap``, on by default on CUDA): a frame's parts run on
two processors, MediaPipe on the CPU and the generator on the GPU, and done one after the other
each waits for the other (the copy of the avatar to the host waits for the GPU). Launched without
waiting, frame t's render runs on the GPU while the CPU reads frame t+1's landmarks, so a frame
costs about the larger of the two instead of their sum; the avatar shown is one frame older
(33 ms at 30 fps), the usual price of a pipeline. On a CPU both parts share its cores, so
there is nothing to overlap. On one H200 at 1024 px it gained little alone (42-53 against 33-46.5 fps, four runs):
the render's time was the CPU's own, launching its kernels one by one from Python.

Why one CUDA graph (``LiveDriver.graphed``, on by default on CUDA for the studio's StyleGAN2): a
batch-1 pass at 1024 px is hundreds of small kernels, and launching them took the CPU 11-19 ms a
frame on the H200 (fp16) while the GPU's arithmetic needs far less. Captured once (``_GraphedRender``)
and replayed, the whole pass is one launch: live ran at 98-124 fps in fp16 (landmarks 4-6 ms,
the motion model 3-4 ms, the render under 1 ms of the CPU's time; 90-128 fps in fp32), against
42-53 fps overlapped without it and 33-46.5 fps with neither (``bench/fastmode.py``, three runs; the issue's target is
30 fps). The graph replays fixed buffers: the code is copied in, and the image copied out on
the same stream before the next replay. A test stand-in is not captured (it makes tensors from
host values inside its pass, which a capture forbids).

A frame without a face keeps the last avatar (``LiveFrame.face_found`` False), so a preview or a
virtual camera never shows a black frame when the person looks away for a moment.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from optimize.driving import uint8_pixels
from optimize.fast_reenact import MotionPredictor

LIVE_SMOOTHING = 0.5
"""Weight of the past in the exponential filters (0: none)."""


def _is_studio_stylegan(generator: torch.nn.Module) -> bool:
    """Whether ``generator`` renders with the studio's StyleGAN2 synthesis network (not a test
    stand-in): the reduced precisions and the CUDA graph were measured, and are only offered, for it."""
    from personalize.stylegan2.networks import SynthesisNetwork

    return isinstance(getattr(generator, "synthesis", None), SynthesisNetwork)


def live_precision(device: torch.device | str, generator: torch.nn.Module | None = None) -> str:
    """'fp16' on CUDA, 'bf16' on a CPU with native bfloat16 kernels, else 'fp32' (module docstring).

    Given a ``generator`` that is not the studio's StyleGAN2 (a test stand-in), 'fp32'."""
    device = torch.device(device)
    if generator is not None and not _is_studio_stylegan(generator):
        return "fp32"
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "fp32"


class CausalAlignment:
    """The FFHQ square of each frame's landmarks, exponentially smoothed over frames."""

    def __init__(self, smoothing: float = LIVE_SMOOTHING) -> None:
        self.smoothing = float(smoothing)
        self._c: np.ndarray | None = None
        self._x: np.ndarray | None = None

    def reset(self) -> None:
        self._c = self._x = None

    def transform(self, landmarks: np.ndarray, size: int) -> np.ndarray:
        """(478,3) frame-pixel landmarks -> the 3x3 frame->crop transform of side ``size``."""
        from personalize.faces.alignment import Quad, alignment_anchors, quad_params_from_anchors, quad_transform

        c, x = quad_params_from_anchors(alignment_anchors(landmarks))
        if self._c is not None and self.smoothing > 0:
            s = self.smoothing
            c, x = s * self._c + (1 - s) * c, s * self._x + (1 - s) * x
        self._c, self._x = c, x
        return quad_transform(Quad(c, x), size)


@dataclass
class LiveFrame:
    """One processed camera frame. avatar (R,R,3) uint8: the newest finished one (this frame's, or
    with ``LiveDriver.overlap`` the previous face's; the last one when no face was found, None
    before the first face); ws (num_ws, w_dim) of this frame's code; seconds per part."""

    avatar: np.ndarray | None
    face_found: bool
    ws: np.ndarray | None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Render:
    """A launched render: its pixels (R,R,3) uint8 on the host, final once ``done`` has passed
    (a CUDA event after their copy; None: already final)."""

    pixels: torch.Tensor
    done: torch.cuda.Event | None

    def wait(self) -> np.ndarray:
        if self.done is not None:
            self.done.synchronize()
        return self.pixels.numpy().copy()


class _GraphedRender:
    """A render function captured once as a CUDA graph and replayed per frame (module docstring).

    The graph reads its input from, and writes its output to, fixed buffers: ``run`` copies ws in
    and returns the same output tensor every time, overwritten by the next replay (the caller
    copies it out on the same stream first). It also reads the tensors the layers' weight caches
    held at capture (``SynthesisLayer.frozen_weight``); ``_kept`` holds them, so that a render at
    another precision, which replaces a layer's cache, cannot free memory the graph still reads.
    The generator's weights must not change while it is replayed (live never changes them)."""

    def __init__(self, render: Callable[[torch.Tensor], torch.Tensor], generator: torch.nn.Module,
                 example: torch.Tensor) -> None:
        from personalize.stylegan2.networks import SynthesisLayer

        self.ws = example.clone()
        for _ in range(2):     # on the caller's side stream: fills the weight caches, picks cuDNN's algorithms
            render(self.ws)
        self._kept = SynthesisLayer.kept_weights(generator)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = render(self.ws)

    def run(self, ws: torch.Tensor) -> torch.Tensor:
        self.ws.copy_(ws)
        self.graph.replay()
        return self.out


class LiveDriver:
    """Camera frames -> avatar frames with the person's generator and motion model.

    ``overlap`` (default: on CUDA) returns each face's avatar from the next frame's call, its render
    having run while that frame's landmarks were read (module docstring); ``finish`` gives the
    last one. ``graphed`` (default: on CUDA, for the studio's StyleGAN2) replays the render as one
    CUDA graph per precision, captured at the first frame (module docstring).

    Not thread-safe (MediaPipe's tracker keeps state): one driver per camera, used by one thread.
    """

    def __init__(self, generator: torch.nn.Module, predictor: MotionPredictor, *,
                 device: torch.device | str = "cpu", smoothing: float = LIVE_SMOOTHING,
                 precision: str | None = None, overlap: bool | None = None, graphed: bool | None = None) -> None:
        from personalize.faces import LandmarkTracker

        self.generator = generator.to(device).eval()
        self.predictor = predictor
        self.device = torch.device(device)
        self.precision = precision or live_precision(self.device, generator)
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, not {self.precision!r}")
        self.size = int(generator.img_resolution)
        self.smoothing = float(smoothing)
        self.alignment = CausalAlignment(smoothing)
        self.tracker = LandmarkTracker(max_faces=1)
        self.overlap = self.device.type == "cuda" if overlap is None else bool(overlap)
        self.graphed = self.device.type == "cuda" and (_is_studio_stylegan(self.generator) if graphed is None
                                                       else bool(graphed))
        self._graphs: dict[str, _GraphedRender] = {}     # CUDA: the render captured, per precision
        self._coefficients: torch.Tensor | None = None
        self._avatar: np.ndarray | None = None
        self._in_flight: _Render | None = None
        self._stream: torch.cuda.Stream | None = None   # CUDA: the renders' stream (``_launch``)
        self._host: list[torch.Tensor] = []     # CUDA: two pinned buffers the copies alternate between

    def process(self, frame_rgb: np.ndarray) -> LiveFrame:
        """(H,W,3) uint8 RGB camera frame -> ``LiveFrame``."""
        from personalize.faces.alignment import transform_points

        t0 = time.perf_counter()
        faces = self.tracker.process(frame_rgb)
        t1 = time.perf_counter()
        if faces.landmarks is None:
            self.alignment.reset()
            self.finish()
            return LiveFrame(self._avatar, False, None, {"landmarks": t1 - t0, "render": time.perf_counter() - t1})
        crop_landmarks = transform_points(self.alignment.transform(faces.landmarks, self.size), faces.landmarks)
        coefficients = self.predictor.coefficients(crop_landmarks[None].astype(np.float32), self.size)
        if self._coefficients is not None and self.smoothing > 0:
            coefficients = self.smoothing * self._coefficients + (1 - self.smoothing) * coefficients
        self._coefficients = coefficients
        with torch.no_grad():
            ws = self.predictor.space.coefficients_to_ws(coefficients)
            code = ws[0].cpu().numpy()
            t2 = time.perf_counter()
            launched = self._launch(ws.to(self.device))
        # the render just launched runs on while the previous one is collected (overlap), so the
        # GPU is never left waiting for this thread; without overlap, or before any avatar, wait
        previous, self._in_flight = self._in_flight, launched
        if previous is not None:
            self._avatar = previous.wait()
        if not self.overlap or self._avatar is None:
            self.finish()
        t3 = time.perf_counter()
        return LiveFrame(self._avatar, True, code, {"landmarks": t1 - t0, "predict": t2 - t1, "render": t3 - t2})

    def finish(self) -> np.ndarray | None:
        """Wait for the render in flight (``overlap``), if any; returns the newest avatar."""
        if self._in_flight is not None:
            self._avatar, self._in_flight = self._in_flight.wait(), None
        return self._avatar

    def _launch(self, ws: torch.Tensor) -> _Render:
        """Start rendering ws (1,num_ws,w_dim) on ``device``; elsewhere than on CUDA it is done here.

        On CUDA the render and its copy to pinned host memory run on a stream of their own, so
        the next frame's work on the default stream (the motion model's, whose copies to the GPU
        wait for that stream) does not wait for this render; ``_Render.done`` marks its end."""
        if self.device.type != "cuda":
            return _Render(self._pixels(ws).cpu(), None)
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
            self._host = [torch.empty((self.size, self.size, 3), dtype=torch.uint8, pin_memory=True)
                          for _ in range(2)]
        self._host.reverse()    # the other buffer than the render collected last (copied out by now)
        self._stream.wait_stream(torch.cuda.current_stream(self.device))    # ws is ready
        with torch.cuda.stream(self._stream):
            if self.graphed:
                if self.precision not in self._graphs:
                    self._graphs[self.precision] = _GraphedRender(self._pixels, self.generator, ws)
                pixels = self._graphs[self.precision].run(ws)
            else:
                pixels = self._pixels(ws)
            self._host[0].copy_(pixels, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._stream)
        ws.record_stream(self._stream)     # made on the default stream, read on this one
        return _Render(self._host[0], done)

    def _pixels(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (1, num_ws, w_dim) -> the avatar (R,R,3) uint8 on ``device``."""
        return uint8_pixels(self.render(ws))[0]

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (1, num_ws, w_dim) -> image (1,3,R,R) float32 in about [-1,1], at ``self.precision``."""
        return self.generator.synthesis(ws, noise_mode="const", fp16=self.precision == "fp16",
                                        bf16=self.precision == "bf16",
                                        channels_last=self.precision != "fp32").float()

    def close(self) -> None:
        self._in_flight = None
        self._graphs.clear()    # their buffers and the weights they keep
        self.tracker.close()

    def __enter__(self) -> "LiveDriver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LiveDriver", "LiveFrame", "CausalAlignment", "LIVE_SMOOTHING", "live_precision"]
