"""The studio's desktop GUI (PySide6). The only package in the project that imports Qt.

It holds no algorithm: every long action calls the same ``studio.jobs`` functions as
``studio-cli``, through ``studio.gui.worker.JobRunner`` (a background thread with progress, ETA
and cancel) so the window never freezes.
"""

from studio.gui.qt_compat import guard_singleton_refcounts as _guard

_guard()  # PySide6 6.12.0 + Python 3.11 refcount bug: see qt_compat.py
