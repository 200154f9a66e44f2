"""tests/deploy shares the process helpers of tests/cli (``cli_helpers``: start servers and
Ray heads, clean up exactly what was started); make them importable when this directory runs
alone."""

from __future__ import annotations

import sys
from pathlib import Path

_CLI_TESTS = str(Path(__file__).resolve().parents[1] / "cli")
if _CLI_TESTS not in sys.path:
    sys.path.insert(0, _CLI_TESTS)
