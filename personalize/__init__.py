"""Layer 1 of the studio: from a self-scan video to a personalized StyleGAN2 generator.

Owns the networks (``stylegan2``), faces (``faces``), video I/O, frame selection, inversion and
pivotal tuning. Never imports Qt or the later layers (``optimize``, ``editing``, ``studio``).
"""
