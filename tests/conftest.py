"""pytest's hook file for the whole suite: makes tests/helpers.py importable and shares its fixtures.

Helpers live in helpers.py, not here: tests/unit has a conftest.py too, and two modules named
`conftest` can't both be imported by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import have_gdb, workdir  # noqa: E402,F401  (fixtures, registered by import)
