"""One-shot re-enactment backends (HyperReenact, DiffusionAct)."""
