"""``python -m langtransfer`` (also what ``accelerate launch -m langtransfer`` runs)."""

import sys

from langtransfer.cli import main

sys.exit(main())
