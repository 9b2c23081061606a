"""Work around a reference-counting bug in PySide6 6.12.0 on Python < 3.12.

Measured here (PySide6 6.12.0, Python 3.11.7): every Python call of a Qt method that returns
``void`` drops one reference to ``None`` it never took, and every ``Signal.emit`` does the same to
``True``. After a few thousand calls (``sys.getrefcount(None)`` is ~5,000 in a fresh interpreter)
CPython aborts with "Fatal Python error: none_dealloc". PySide6 6.11.2 does not have the bug, and
on Python >= 3.12 these singletons are immortal, so nothing happens there.

The real fix is the dependency pin (PySide6 != 6.12.0). Until every install has it, this makes the
three singletons practically immortal — what Python 3.12 does by design — by adding 2**40 to their
reference counts once. They are never deallocated anyway, so the extra count changes nothing else.
"""
from __future__ import annotations

import ctypes
import sys

AFFECTED_VERSIONS = ("6.12.0",)
_BOOST = 1 << 40
_applied = False


def needs_guard(pyside_version: str, python: tuple[int, int] = sys.version_info[:2]) -> bool:
    return python < (3, 12) and pyside_version.split("+")[0] in AFFECTED_VERSIONS


def guard_singleton_refcounts() -> bool:
    """Apply the workaround once if this PySide6/Python pair needs it; returns True if applied."""
    global _applied
    import PySide6

    if _applied or not needs_guard(PySide6.__version__):
        return _applied
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _BOOST
    _applied = True
    return True
