"""``--gpus N``: run the same command as N processes under ``torchrun``, one per GPU.

Why a subprocess and not an in-process launcher: ``torchrun`` (``python -m torch.distributed.run``)
is PyTorch's own launcher; starting it as it is keeps multi-machine runs and single-machine runs
identical (on several machines users call ``torchrun ... -m studio.cli ...`` themselves, see the
README), and a crashed worker cannot take the terminal's process down with it.

What the launcher adds around torchrun:
- **Progress**: the workers write to this terminal; only rank 0 draws the progress bar.
- **Ctrl-C**: torchrun runs in its own session, so the terminal's Ctrl-C reaches only this
  process, which forwards ONE SIGINT to torchrun; torchrun passes it to every worker, each stops
  at its next step boundary, rank 0 saves, and this command exits 130. A second Ctrl-C only says
  that they are saving (torchrun kills workers that take longer than 30 s).
- **Restarts after a crash**: each attempt runs with ``--max-restarts 0``; when a worker died
  (killed, out of memory, a bug) and rank 0 did not record a result, all workers are started again
  (``MAX_ATTEMPTS`` in all) and resume from rank 0's last checkpoint. A user error or a cancel is
  recorded by rank 0 in a result file and never retried.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from personalize.distributed import launched_by_torchrun
from personalize.errors import UserError
from personalize.fileio import atomic_write_json

RESULT_ENV = "STUDIO_LAUNCH_RESULT"
"""Set by the launcher for its workers: the file where rank 0 records the command's exit code."""
MAX_ATTEMPTS = 4
CANCELLED = 130


def add_gpus_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--gpus", type=int, default=1, metavar="N",
                        help=f"{what} with N processes, one per GPU of this machine, started with "
                             "torchrun (with --device cpu: N CPU processes, for testing). On several "
                             "machines start torchrun yourself (see the README)")


def wants_launch(args: argparse.Namespace) -> bool:
    """True when this process should start torchrun instead of working itself."""
    return getattr(args, "gpus", 1) > 1 and not launched_by_torchrun()


def check_gpus(gpus: int, device: str) -> None:
    """UserError unless this machine can run ``gpus`` processes on ``device``."""
    import torch

    if gpus < 1:
        raise UserError(f"--gpus must be at least 1 (got {gpus}).")
    if device == "cpu":
        return
    if device not in ("auto", "cuda") and not device.startswith("cuda"):
        raise UserError(f"--gpus runs one process per CUDA GPU; the device '{device}' is not one.",
                        "Use --device auto or cuda, or --device cpu for CPU processes (testing).")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available < gpus:
        raise UserError(f"--gpus {gpus} needs {gpus} CUDA GPUs; this machine has {available}.",
                        f"Use --gpus {max(1, available)}" + (" or" if available else ",") +
                        " add --device cpu to run CPU processes instead (slow; for testing).")


def torchrun_command(argv: Sequence[str], processes: int) -> list[str]:
    """The torchrun command line that runs ``studio-cli ARGV`` as ``processes`` workers here
    (``studio.cli.torchrun_agent`` is torchrun with a quiet exit on a user's stop)."""
    return [sys.executable, "-m", "studio.cli.torchrun_agent", "--standalone",
            f"--nproc-per-node={processes}", "--max-restarts=0", "-m", "studio.cli", *argv]


def launch(argv: Sequence[str], processes: int, device: str, *, module_argv: Sequence[str] | None = None) -> int:
    """Run ``studio-cli ARGV`` under torchrun with ``processes`` workers; returns the exit code.

    ``module_argv`` (tests): the command after ``-m`` instead of ``studio.cli ARGV``.
    """
    check_gpus(processes, device)
    command = torchrun_command(argv, processes)
    if module_argv is not None:
        command = command[:command.index("-m", 3) + 1] + list(module_argv)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                    env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="studio-launch-") as folder:
        result_file = Path(folder) / "result.json"
        env[RESULT_ENV] = str(result_file)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            code, stopped = _run_once(command, env)
            recorded = _read_result(result_file)
            if recorded is not None:
                return recorded
            if stopped:
                return CANCELLED
            if code == 0:
                return 0
            if attempt < MAX_ATTEMPTS:
                print(f"\na process stopped unexpectedly (exit {code}); starting all {processes} again "
                      f"from the last checkpoint (attempt {attempt + 1} of {MAX_ATTEMPTS})", file=sys.stderr)
        print(f"error: the processes failed {MAX_ATTEMPTS} times; the output above shows why.",
              file=sys.stderr)
        return 1


def _run_once(command: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """One torchrun attempt: (exit code, whether the user asked to stop)."""
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    asked = [0]

    def on_signal(signum, frame):  # noqa: ANN001
        asked[0] += 1
        if asked[0] == 1:
            print("\nstopping: every process finishes its step and the progress is saved...", file=sys.stderr)
            proc.send_signal(signal.SIGINT)
        else:
            print("\nstill saving (processes that take longer than 30 s are killed)...", file=sys.stderr)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, asked[0] > 0


def _read_result(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------- worker side
def is_quiet_rank() -> bool:
    """Workers other than rank 0 print no messages (every rank meets the same errors)."""
    return launched_by_torchrun() and int(os.environ.get("RANK", "0")) != 0


def finish_worker(code: int) -> int:
    """A worker's exit code: under the launcher, rank 0 records ``code`` for it and user errors
    and cancels exit 0 (torchrun then reports no crash and nothing is retried); elsewhere ``code``."""
    target = os.environ.get(RESULT_ENV)
    if not (target and launched_by_torchrun()):
        return code
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(target, {"code": code})
    return 0 if code in (0, 2, CANCELLED) else code
