"""Keeping unbreakable text to a bounded width (the smallest window is 1024x640).

Why: a page's minimum width is the sum of its widest unbreakable parts. A file name (no spaces to
wrap at) or a combo box (as wide as its longest item by default) can push a page past the window
and make it scroll sideways, cutting the controls at its right edge.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget


def elided(text: str, widget: QWidget, chars: int) -> str:
    """``text`` shortened in the middle to about ``chars`` average characters of ``widget``'s font
    (unchanged when it fits). Show the full text in a tooltip."""
    metrics = widget.fontMetrics()
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, metrics.averageCharWidth() * chars)


def shrinkable(box: QComboBox, chars: int = 24) -> QComboBox:
    """Let ``box`` shrink to about ``chars`` characters when space is short (it still asks for its
    longest item's width when there is room); each item's full text is its tooltip in the list."""
    box.setMinimumWidth(box.fontMetrics().averageCharWidth() * chars)
    for i in range(box.count()):
        box.setItemData(i, box.itemText(i), Qt.ItemDataRole.ToolTipRole)
    return box
