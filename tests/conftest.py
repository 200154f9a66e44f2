"""Shared by every test directory: the per-directory helper modules, importable from anywhere.

Each test directory keeps its helpers in a plain module next to its tests (``wk_helpers``,
``cli_helpers``, ``svc_helpers``). Suites that cut across the tree (tests/reliability,
tests/security) reuse them instead of copying them: this puts those directories on the import
path (appended, so a directory's own modules still win).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _sub in ("workers", "service", "cli"):
    _path = str(_TESTS / _sub)
    if _path not in sys.path:
        sys.path.append(_path)
