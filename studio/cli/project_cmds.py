"""``studio-cli new PATH`` and ``studio-cli info PATH``: create a project folder, show its state."""
from __future__ import annotations

import argparse
import json
import shlex

from studio.project import PIPELINE, Project


def register(sub: argparse._SubParsersAction) -> None:
    new = sub.add_parser("new", help="create a project folder for one person",
                         description="Create a new, empty project folder (one per person).")
    new.add_argument("path", help="folder to create, e.g. ~/Avatars/anna.studio")
    new.add_argument("--name", help="display name (default: the folder name)")
    new.set_defaults(handler=_new)

    info = sub.add_parser("info", help="show a project's stages and artifacts",
                          description="Show which stages of a project are done, stale or missing.")
    info.add_argument("path", help="the project folder")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(handler=_info)


def _new(args: argparse.Namespace) -> int:
    project = Project.create(args.path, name=args.name)
    print(f"created project '{project.name}' at {project.root}")
    print(f"next: studio-cli prepare {shlex.quote(str(project.root))} --video YOUR_SELFSCAN.mp4")
    return 0


def _info(args: argparse.Namespace) -> int:
    from editing.directions import direction_names

    project = Project.open(args.path)
    statuses = project.statuses()
    takes, styles = project.takes(), project.styles()
    directions = direction_names(project.directions_dir)
    if args.json:
        print(json.dumps({"name": project.name, "root": str(project.root), "stages": statuses,
                          "takes": takes, "styles": styles, "directions": directions}, indent=2))
        return 0
    print(f"project '{project.name}' at {project.root}")
    for stage in PIPELINE:
        info = project.stage_info(stage)
        detail = ", ".join(f"{k}={v}" for k, v in info.items() if not isinstance(v, (dict, list)))
        print(f"  {stage:<12} {statuses[stage]:<9} {detail}")
    print(f"  takes: {', '.join(takes) or '-'}")
    print(f"  styles: {', '.join(styles) or '-'}")
    print(f"  directions: {', '.join(directions) or '-'}")
    return 0
