"""Layer 4: the product shell — CLI, GUI (studio/gui only imports Qt), project folders, jobs, weights."""

__version__ = "0.1.0"
