"""``python -m studio.cli``: the same as ``studio-cli`` (what ``torchrun ... -m studio.cli`` runs)."""
import sys

from studio.cli import main

sys.exit(main())
