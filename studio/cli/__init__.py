"""``studio-cli``: every stage of the studio, headless (for GPU servers and scripts).

Each command group lives in its own module exposing ``register(subparsers)``; the handler it sets
returns an exit code. ``main`` turns user errors into a clear message on stderr (exit 2) and a
Ctrl-C / cancel into exit 130 after the job saved its progress: never a traceback for bad input.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from personalize.errors import Cancelled, UserError

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "studio.cli.project_cmds",     # new, info
    "studio.cli.models_cmds",      # models list|fetch|import
    "studio.cli.generate_cmd",     # generate
    "studio.cli.prepare_cmd",      # prepare
    "studio.cli.personalize_cmds", # select, personalize
    "studio.cli.motion_cmds",      # motion-model, live
    "studio.cli.reenact_cmds",     # reenact, render
    "studio.cli.editing_cmds",     # directions, stylize
)


def build_parser() -> argparse.ArgumentParser:
    from studio import __version__

    parser = argparse.ArgumentParser(
        prog="studio-cli",
        description="Self-Scan Avatar Studio, headless: prepare a self-scan, personalize a "
                    "StyleGAN2 generator, re-enact it from driving videos, edit and export.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from studio.cli.launch import finish_worker

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # the command as typed: --gpus N starts it again under torchrun
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    return finish_worker(_run(args))


def _run(args: argparse.Namespace) -> int:
    from studio.cli.launch import is_quiet_rank

    quiet = is_quiet_rank()  # under torchrun only rank 0 speaks
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        if not quiet:
            print(f"error: {err}", file=sys.stderr)
            if err.action is not None:
                from studio.cli.common import next_step

                project = getattr(args, "project", None) or getattr(args, "path", None)
                step = next_step(err.action, project, getattr(args, "name", None) or getattr(args, "take", None))
                if step:
                    print(step, file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt) as exc:
        kept = getattr(exc, "kept", None)
        if not quiet:
            said = f"{kept} R" if kept else "stopped; progress so far is saved — r"
            print(f"\n{said}un the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
