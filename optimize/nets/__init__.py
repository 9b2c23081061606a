"""Networks of the one-shot backends (HyperReenact, latent directions) with the official names.

Each module's ``state_dict`` keys and shapes equal the official checkpoints' (listed in
``../shared/reference/oneshot/keys``), so the real files load by name; ``official_checkpoints``
reads them safely.
"""
