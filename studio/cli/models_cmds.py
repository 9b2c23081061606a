"""``studio-cli models list|fetch|import``: see, download and bring in the pretrained weights."""
from __future__ import annotations

import argparse
import sys
import textwrap

from personalize.errors import MissingWeightsError, UserError
from studio.cli.common import ProgressBar
from studio.weights import (BACKENDS, REGISTRY, LicenceNotAcceptedError, accept_licence, cache_dir,
                            fetch_weights, files_for, get_entry, import_weights, is_present,
                            list_weights, pending_licences)
from studio.weights.store import CACHE_ENV, how_to_get

_MIB = 1 << 20


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models", help="list, download or import the pretrained weights",
        description="Pretrained weights live in a cache folder shared by all projects "
                    f"(override with ${CACHE_ENV}). Downloads resume and are hash-checked; files "
                    "with a research-only licence note ask you to accept it once first.")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="show which weights are present, their size and path")
    ls.add_argument("--backend", choices=BACKENDS, help="only the files this mode needs")
    ls.set_defaults(handler=cmd_list)

    names = sorted(REGISTRY)
    fetch = sub.add_parser("fetch", help="download weights (resumes an interrupted download)")
    fetch.add_argument("names", metavar="NAME", nargs="*", help=f"any of: {', '.join(names)}")
    fetch.add_argument("--backend", choices=BACKENDS,
                       help="every file this mode needs (personal = personalization)")
    fetch.add_argument("--landmarks", choices=("flame", "mediapipe"), default="flame",
                       help="with --backend diffusionact: 'mediapipe' skips EMOCA and FLAME")
    fetch.add_argument("--url", help="download NAME from this mirror or Drive link instead "
                                     "(same file, same hash)")
    fetch.add_argument("--accept-licence", action="store_true",
                       help="accept the files' licence notes without asking (needed when not "
                            "run in a terminal)")
    fetch.set_defaults(handler=cmd_fetch)

    imp = sub.add_parser("import", help="copy a file you downloaded yourself into the cache")
    imp.add_argument("name", metavar="NAME", help=f"one of: {', '.join(names)}")
    imp.add_argument("file", metavar="FILE",
                     help="the downloaded file, or the archive that holds it; it is checked")
    imp.set_defaults(handler=cmd_import)


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / _MIB:.1f} MiB" if size >= _MIB // 10 else f"{size / 1024:.1f} KiB"


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_weights(files_for(args.backend) if args.backend else None)
    table = [("NAME", "STATUS", "SIZE", "LICENCE", "PURPOSE", "PATH")]
    for row in rows:
        status = "present" if row.present else (
            "missing" if row.source != "manual" else "missing (import)")
        licence = "-" if row.licence is None else ("accepted" if row.licence_accepted else "note")
        path = f"{row.path}" + (f"  ({row.where})" if row.where and row.where != "studio cache"
                                else "")
        table.append((row.name, status, _human_size(row.size), licence, row.purpose, path))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths)) + "  " + r[5])
    print(f"\ncache: {cache_dir()}  (set ${CACHE_ENV} to use another folder)")
    if any(row.licence for row in rows):
        print("LICENCE 'note': a research / non-commercial licence note is shown, and must be "
              "accepted, before the first download; SIZE '?': unknown until the first download.")
    if any(not row.present for row in rows):
        print("get missing ones with: studio-cli models fetch NAME  (or --backend MODE; or: "
              "studio-cli models import NAME FILE)")
    return 0


def _names_to_fetch(args: argparse.Namespace) -> list[str]:
    if bool(args.names) == bool(args.backend):
        raise UserError("name the files to fetch, or give --backend (not both).",
                        f"Example: studio-cli models fetch ffhq  |  studio-cli models fetch "
                        f"--backend hyperreenact. Backends: {', '.join(BACKENDS)}.")
    if args.url and (args.backend or len(args.names) != 1):
        raise UserError("--url works with exactly one NAME.", "Fetch the others separately.")
    names = list(files_for(args.backend, args.landmarks)) if args.backend else args.names
    for name in names:
        get_entry(name)  # unknown names fail before anything is downloaded
    return names


def _settle_licences(names: list[str], accept_flag: bool) -> None:
    """Get every pending licence note accepted before the first byte is downloaded."""
    pending = pending_licences(names)
    if not pending:
        return
    if accept_flag:
        for note, covered in pending.items():
            print(f"licence note for {', '.join(covered)} (accepted with --accept-licence):\n"
                  f"{textwrap.fill(note, 96)}\n", file=sys.stderr)
        accept_licence(*[name for covered in pending.values() for name in covered])
        return
    if not sys.stdin.isatty():
        covered_all = [name for covered in pending.values() for name in covered]
        raise LicenceNotAcceptedError(covered_all, "\n\n".join(pending))
    for note, covered in pending.items():
        print(f"\nLicence note for {', '.join(covered)}:\n{textwrap.fill(note, 96)}\n",
              file=sys.stderr)
        print("Accept? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise UserError("the licence note was not accepted; nothing was downloaded.",
                            "You can still bring the file yourself: studio-cli models import "
                            "NAME FILE.")
        accept_licence(*covered)


def cmd_fetch(args: argparse.Namespace) -> int:
    names = _names_to_fetch(args)
    manual = [n for n in names if not get_entry(n).downloadable and not args.url
              and not is_present(n)]
    to_fetch = [n for n in names if n not in manual]
    _settle_licences([n for n in to_fetch if not is_present(n)], args.accept_licence)
    for name in to_fetch:
        entry = get_entry(name)
        if not is_present(name):
            print(f"fetching {entry.name} from {args.url or entry.url}", file=sys.stderr)
        with ProgressBar(entry.name, unit="B", unit_scale=True) as bar:
            path = fetch_weights(entry.name, progress=bar, url=args.url)
        print(f"{entry.name}: verified, at {path}")
    if manual:
        steps = "\n\n".join(how_to_get(get_entry(n), cache_dir() / get_entry(n).filename)
                            for n in manual)
        done = " The other files are ready." if to_fetch else ""
        raise MissingWeightsError(f"{', '.join(manual)} cannot be downloaded by the studio.{done}",
                                  steps)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    entry = get_entry(args.name)
    with ProgressBar(entry.name, unit="B", unit_scale=True) as bar:
        path = import_weights(entry.name, args.file, progress=bar)
    print(f"{entry.name}: verified and imported to {path}")
    if entry.licence:
        print(f"reminder, the licence of {entry.name}:\n{textwrap.fill(entry.licence, 96)}",
              file=sys.stderr)
    return 0
