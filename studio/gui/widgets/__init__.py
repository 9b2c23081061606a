"""Reusable widgets: loss plot, frame grid, coverage meter, side-by-side player, drop zone, text fitting."""
