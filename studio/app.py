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
    parser.add_argument("--self-test", action="store_true",
                        help="build the window off-screen, import every job and the face models, "
                             "print what works and exit (checks an installation or a bundle)")
    return parser


def self_test() -> int:
    """Exercise what a bundle could lack (Qt plugins, job modules, torch, MediaPipe's models)."""
    import os
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from dataclasses import fields

    from studio.gui.main_window import StudioWindow
    from studio.gui.settings import StudioSettings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        window = StudioWindow(StudioSettings.at(os.path.join(tmp, "settings.ini")))
        window.new_project(os.path.join(tmp, "self-test.studio"))
        print(f"window: ok ({len(window.pages)} pages); device: {window.device_label.text()}")
        jobs = [f.name for f in fields(window.ctx.jobs) if callable(getattr(window.ctx.jobs, f.name))]
        print(f"jobs: ok ({len(jobs)} imported)")
        try:
            import numpy as np

            from personalize.faces import detect_landmarks
            detect_landmarks(np.zeros((64, 64, 3), np.uint8))
            print("face models: ok")
        except Exception as exc:  # noqa: BLE001
            cause = f" (cause: {exc.__cause__!r})" if exc.__cause__ is not None else ""
            failures.append(f"face models: {exc}{cause}")
        window.close()
    app.processEvents()
    for failure in failures:
        print("FAILED", failure)
    print("self-test ok" if not failures else "self-test failed")
    return 0 if not failures else 1


def main(argv: Sequence[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(argv)
    if args.self_test:
        return self_test()
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
