"""``studio``: the desktop app. ``studio --version`` prints the version without opening a window
(the packaging smoke test relies on that); ``studio [PROJECT]`` opens the window (and the project)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    from studio import __version__

    parser = argparse.ArgumentParser(prog="studio", description="Self-Scan Avatar Studio (desktop app).")
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    parser.add_argument("project", nargs="?", help="a project folder to open")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(argv)
    # Qt is imported only here, so `studio --version` works without a display.
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from studio.gui.main_window import StudioWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Self-Scan Avatar Studio")
    app.setOrganizationName("SelfScanAvatarStudio")
    app.setWindowIcon(QIcon.fromTheme("camera-web"))
    window = StudioWindow()
    window.show()
    if args.project:
        window.open_project(args.project)
    return app.exec()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
