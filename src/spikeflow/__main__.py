"""``python -m spikeflow`` runs the ``spikeflow`` command (train, eval)."""

import sys

from spikeflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
