"""``studio-cli models list|fetch|import``: see, download and bring in the pretrained weights."""
from __future__ import annotations

import argparse
import sys

from studio.cli.common import ProgressBar
from studio.weights import (REGISTRY, cache_dir, fetch_weights, get_entry, import_weights,
                            list_weights)
from studio.weights.store import CACHE_ENV

_MIB = 1 << 20


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models", help="list, download or import the pretrained weights",
        description="Pretrained weights live in a cache folder shared by all projects "
                    f"(override with ${CACHE_ENV}). Downloads resume and are hash-checked.")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="show which weights are present, their size and path")
    ls.set_defaults(handler=cmd_list)

    names = sorted(REGISTRY)
    fetch = sub.add_parser("fetch", help="download weights (resumes an interrupted download)")
    fetch.add_argument("name", metavar="NAME", help=f"one of: {', '.join(names)}")
    fetch.add_argument("--url", help="download from this mirror instead (same file, same hash)")
    fetch.set_defaults(handler=cmd_fetch)

    imp = sub.add_parser("import", help="copy a file you downloaded yourself into the cache")
    imp.add_argument("name", metavar="NAME", help=f"one of: {', '.join(names)}")
    imp.add_argument("file", metavar="FILE", help="the downloaded file; its hash is checked")
    imp.set_defaults(handler=cmd_import)


def _human_size(size: int | None) -> str:
    return "?" if size is None else f"{size / _MIB:.1f} MiB"


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_weights()
    table = [("NAME", "STATUS", "SIZE", "PURPOSE", "PATH")]
    for row in rows:
        status = "present" if row.present else "missing"
        path = f"{row.path}" + (f"  ({row.where})" if row.where and row.where != "studio cache"
                                else "")
        table.append((row.name, status, _human_size(row.size), row.purpose, path))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4])
    print(f"\ncache: {cache_dir()}  (set ${CACHE_ENV} to use another folder)")
    missing = [row.name for row in rows if not row.present]
    if missing:
        print(f"get missing ones with: studio-cli models fetch NAME  "
              f"(or: studio-cli models import NAME FILE)")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    entry = get_entry(args.name)
    print(f"fetching {entry.name} from {args.url or entry.url}", file=sys.stderr)
    with ProgressBar(entry.name, unit="B", unit_scale=True) as bar:
        path = fetch_weights(entry.name, progress=bar, url=args.url)
    print(f"{entry.name}: verified, at {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    entry = get_entry(args.name)
    with ProgressBar(entry.name, unit="B", unit_scale=True) as bar:
        path = import_weights(entry.name, args.file, progress=bar)
    print(f"{entry.name}: verified and imported to {path}")
    return 0
