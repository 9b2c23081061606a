"""torchrun as ``studio.cli.launch`` runs it: ``torch.distributed.run`` unchanged, except that
its own notices are kept to errors (unless ``LOGLEVEL`` says otherwise) and a stop the user asked
for (the SIGINT the launcher forwards) ends with exit code 130 and no traceback.
``python -m studio.cli.torchrun_agent ARGS`` takes torchrun's own arguments."""
from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("LOGLEVEL", "ERROR")  # read by torchrun's loggers when they are created

from torch.distributed.elastic.multiprocessing.api import SignalException  # noqa: E402
from torch.distributed.run import main  # noqa: E402

if __name__ == "__main__":
    logging.getLogger("torch.distributed.elastic").setLevel(os.environ["LOGLEVEL"])
    try:
        main()
    except SignalException:
        sys.exit(130)
