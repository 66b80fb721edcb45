"""``python -m bench.worker floor|drain|publish ...``: one child measurement, printed as one JSON object.

Only the entry point: the commands are in ``cli``, which the scenario also uses to run them.
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
