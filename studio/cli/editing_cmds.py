"""``studio-cli directions import|list|learn`` and ``studio-cli stylize``.

Only argument parsing and printing live here; the work is in ``studio.jobs.editing``. Edits and
styles are applied at render time: ``studio-cli render PROJECT --take T --edit smile=1.5 --style sketch``.
Ctrl-C asks a long job to stop after the current step (it saves its progress first), so running
the same command again resumes.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from editing.attributes import ATTRIBUTES
from personalize.progress import CancelToken
from studio.cli.common import ProgressBar, add_device_arg, ctrl_c_cancels, resolve_device
from studio.project import Project



def register(sub: argparse._SubParsersAction) -> None:
    directions = sub.add_parser("directions", help="semantic edit directions (import, list, learn)",
                                description="InterFaceGAN directions used by 'render --edit NAME=STRENGTH'.")
    dsub = directions.add_subparsers(dest="directions_command", metavar="ACTION")

    imp = dsub.add_parser("import", help="import a published W / W+ direction (.pt or .npy)",
                          description="Import an InterFaceGAN direction of shape (512,), (1, 512) or "
                                      "(1, num_ws, 512) into PROJECT/directions/NAME.npy.")
    imp.add_argument("project", help="the project folder")
    imp.add_argument("file", help="the direction file (.pt / .pth torch tensor, or .npy)")
    imp.add_argument("--name", required=True, help="name used by --edit NAME=STRENGTH")
    imp.add_argument("--no-project", dest="project_to_anchors", action="store_false",
                     help="keep the FFHQ-wide direction as it is (default: keep only its part inside "
                          "this person's latent space P, as MyStyle and the paper edit)")
    imp.add_argument("--project-to-anchors", dest="project_to_anchors", action="store_true", default=True,
                     help=argparse.SUPPRESS)  # older scripts: projecting is the default now
    imp.add_argument("--force", action="store_true", help="replace an existing direction of that name")
    imp.set_defaults(handler=_import)

    lst = dsub.add_parser("list", help="list the project's directions and styles")
    lst.add_argument("project", help="the project folder")
    lst.set_defaults(handler=_list)

    learn = dsub.add_parser("learn", help="learn a direction for this person's generator",
                            description="Sample codes in P, render them, score an attribute (landmarks; "
                                        "CLIP for age) and fit a linear boundary (InterFaceGAN).")
    learn.add_argument("project", help="the project folder")
    learn.add_argument("--attribute", required=True, choices=ATTRIBUTES)
    learn.add_argument("--samples", type=int, default=2000, help="rendered samples (default 2000)")
    learn.add_argument("--name", default=None, help="direction name (default: the attribute)")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--batch", type=int, default=8, help="samples rendered at once")
    learn.add_argument("--force", action="store_true", help="replace an existing direction of that name")
    add_device_arg(learn)
    learn.set_defaults(handler=_learn)
    directions.set_defaults(handler=lambda args: _usage(directions))

    sty = sub.add_parser("stylize", help="make a text-stylized copy of the generator (StyleGAN-NADA)",
                         description="Fine-tune a copy of the personalized generator towards a text prompt; "
                                     "render any take through it with 'render --style NAME'.")
    sty.add_argument("project", help="the project folder")
    sty.add_argument("--prompt", required=True, help='target text, e.g. "a sketch"')
    sty.add_argument("--name", required=True, help="style name (styles/NAME/)")
    sty.add_argument("--source-prompt", default="photo", help='text describing the current look (default "photo")')
    sty.add_argument("--iters", type=int, default=300, help="training iterations (default 300)")
    sty.add_argument("--lr", type=float, default=0.002, help="learning rate (default 0.002)")
    sty.add_argument("--batch", type=int, default=2, help="codes per iteration (default 2)")
    sty.add_argument("--layers", type=int, default=None,
                     help="how many synthesis layers to train per step (default: 2/3 of the latent layers)")
    sty.add_argument("--seed", type=int, default=0)
    sty.add_argument("--force", action="store_true", help="replace an existing style of that name")
    add_device_arg(sty)
    sty.set_defaults(handler=_stylize)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _import(args: argparse.Namespace) -> int:
    from studio.jobs.editing import import_direction

    project = Project.open(args.project)
    d = import_direction(project, args.file, args.name, project_to_anchors=args.project_to_anchors,
                         force=args.force)
    rel = d.meta.get("reliability")
    print(f"imported direction '{d.name}' {tuple(d.vector.shape)}"
          + (f", reliability in this person's space {rel:.3f}" if rel is not None else "")
          + (" (projected)" if d.meta.get("projected") else ""))
    if rel is not None and rel < 0.5 and not d.meta.get("projected"):
        print("note: much of this direction points outside the person's space; edits may change identity. "
              "Consider importing it without --no-project, or 'directions learn'.", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from studio.jobs.editing import directions_table, styles_table

    project = Project.open(args.project)
    rows = directions_table(project)
    print("directions:" if rows else "directions: none")
    for r in rows:
        print(f"  {r['name']:<16} {r['source']:<9} shape={tuple(r['shape'])} "
              f"reliability={_fmt(r['reliability'])} accuracy={_fmt(r['accuracy'])}"
              + (" projected" if r["projected"] else ""))
    styles = styles_table(project)
    print("styles:" if styles else "styles: none")
    for s in styles:
        print(f"  {s['name']:<16} prompt={s['prompt']!r} iterations={s['iterations']} final_loss={_fmt(s['final_loss'])}")
    return 0


def _learn(args: argparse.Namespace) -> int:
    from studio.jobs.editing import learn_direction

    project = Project.open(args.project)
    device = resolve_device(args)
    token = CancelToken()
    with ProgressBar(f"learn {args.attribute}") as bar, ctrl_c_cancels(token):
        result = learn_direction(project, args.attribute, name=args.name, samples=args.samples, seed=args.seed,
                                 batch_size=args.batch, force=args.force, device=device, progress=bar, cancel=token)
    d = result.direction
    print(f"learned direction '{d.name}': held-out accuracy {_fmt(result.accuracy)} "
          f"({result.n_test} test samples), scored {result.n_scored}/{result.n_samples}, "
          f"reliability {_fmt(d.meta.get('reliability'))}, {result.seconds:.0f} s")
    return 0


def _stylize(args: argparse.Namespace) -> int:
    from studio.jobs.editing import stylize

    project = Project.open(args.project)
    device = resolve_device(args)
    token = CancelToken()
    with ProgressBar(f"stylize {args.name}") as bar, ctrl_c_cancels(token):
        path = stylize(project, args.prompt, args.name, source_prompt=args.source_prompt, iterations=args.iters,
                       lr=args.lr, batch_size=args.batch, layers_k=args.layers, seed=args.seed, force=args.force,
                       device=device, progress=bar, cancel=token)
    print(f"style '{args.name}' saved to {path.parent}; render with: "
          f"studio-cli render {shlex.quote(str(project.root))} --take TAKE "
          f"--style {shlex.quote(args.name)} --out FILE.mp4")
    return 0
