"""Several processes on one job: ``torch.distributed`` as launched by ``torchrun``.

Why PyTorch's own engine: ``torchrun`` already starts one process per GPU (and per machine),
sets the rendezvous environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...),
restarts every worker when one of them dies (``--max-restarts``), and
``DistributedDataParallel`` averages gradients with NCCL (GPUs) or gloo (CPU). The studio adds
nothing but a small object, ``DistContext``, that the long jobs take so the same code runs in one
process (``SINGLE``: every collective is the identity) and in many.

Rules every distributed job here follows:
- **Rank 0 reads resumable state and writes every file** (checkpoints, logs, previews, the
  project manifest); the others receive what they need from it (``broadcast``), so they never
  read a file rank 0 may be replacing (shared file systems cache attributes).
- **Collectives are reached by every rank in the same order**; a decision one rank makes alone
  (a cancel request, an error while reading a file) is shared first (``any``, ``broadcast_call``)
  so no rank waits forever in a collective the others left.
- A user's cancel (Ctrl-C, SIGTERM from ``torchrun`` when it shuts down) sets the job's cancel
  token; jobs check it collectively at step boundaries, save, and stop together.
"""
from __future__ import annotations

import datetime
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

import torch

from personalize.errors import UserError

T = TypeVar("T")

ENV_TIMEOUT_MINUTES = "STUDIO_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 240
"""How long a rank waits in a collective for the others. Long on purpose: rank 0 alone selects
frames or prepares a driving video (minutes) while the others wait for its result."""


def launched_by_torchrun() -> bool:
    """True inside a worker that ``torchrun`` (or ``torch.distributed.run``) started."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


@dataclass
class DistContext:
    """Who this process is among ``world_size`` and the collectives the jobs use.

    ``rank`` 0..world_size-1 (global), ``local_rank`` (the GPU index on this machine), ``device``
    (where this rank computes). With ``world_size`` 1 (``SINGLE``) every method is local.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reads resumable state, writes files and reports progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------------ work sharing
    def share(self, items: Sequence[T]) -> tuple[list[T], float]:
        """This rank's contiguous share of a global batch, and the loss scale that makes the
        averaged gradient equal the gradient of the mean over the whole batch.

        Shares differ by at most one item (the first ``len % world`` ranks take one more).
        DistributedDataParallel averages gradients over ranks, so a rank whose loss is the mean
        over ``n_r`` items must scale it by ``n_r * world / len(items)``.
        """
        n = len(items)
        if n < self.world_size:
            raise ValueError(f"a batch of {n} cannot be shared by {self.world_size} processes")
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        count = base + (1 if self.rank < extra else 0)
        return list(items[start:start + count]), count * self.world_size / n

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` under DistributedDataParallel (gradients averaged over ranks), or as it is.

        Buffers are not re-broadcast at every forward (``broadcast_buffers=False``): the ones
        the jobs train through (StyleGAN2's constant noise) never change.
        """
        if not self.is_distributed:
            return module
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")
        return DistributedDataParallel(module, device_ids=ids, **{no_sync: False})

    # ------------------------------------------------------------------------ collectives
    def sum(self, values: Sequence[float | torch.Tensor]) -> list[float]:
        """Element-wise sum of ``values`` over ranks (float64 on the collective's device)."""
        tensor = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().cpu() for v in values])
        if self.is_distributed:
            import torch.distributed as dist

            tensor = tensor.to(self._collective_device())
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.cpu()]

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on at least one (e.g. a cancel request)."""
        return self.sum([1.0 if flag else 0.0])[0] > 0 if self.is_distributed else bool(flag)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects; tensors go through as CPU tensors)."""
        if not self.is_distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._collective_device())
        return box[0]

    def broadcast_call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result, or the exception it raised, to every
        rank: a file rank 0 cannot read fails every rank with the same message, instead of
        leaving the others waiting."""
        if not self.is_distributed:
            return fn()
        outcome: tuple[str, Any] | None = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                outcome = ("error", transportable(exc))
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise value
        return value

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()

    def _collective_device(self) -> torch.device:
        """NCCL moves collective data through the rank's GPU; gloo through the CPU."""
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE = DistContext()
"""The one-process context: every collective is local."""


def transportable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (to send it to the other ranks), else a RuntimeError saying it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def init_from_env(device: str = "auto", backend: str | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment; returns this rank's context.

    ``device``: 'auto' (this machine's GPU number ``LOCAL_RANK`` when CUDA is present, else the
    CPU), 'cpu', or 'cuda'. GPUs talk through NCCL, CPU processes through gloo, unless
    ``backend`` says otherwise (gloo for jobs that only exchange small objects between long,
    independent pieces of work). Raises UserError when this machine has fewer GPUs than processes.
    """
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = torch.cuda.is_available() if device in ("auto", "", None) else device.startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise UserError("CUDA was requested but no CUDA GPU is available.", "Use --device cpu.")
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"Process {local_rank} of this machine has no GPU: only "
                            f"{torch.cuda.device_count()} GPU(s) here.",
                            "Start at most one process per GPU on each machine.")
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
        backend = backend or "nccl"
    else:
        target = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        minutes = float(os.environ.get(ENV_TIMEOUT_MINUTES, DEFAULT_TIMEOUT_MINUTES))
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes),
                                device_id=target if backend == "nccl" else None)
    return DistContext(rank, world, local_rank, target)


def shutdown() -> None:
    """Leave the process group (every rank, at the end of a run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
