"""Figures in README.md are rendered from saved results, never typed: the shared helpers.

A rendered block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; the script
that owns it re-renders it from its saved results file (``benchmarks/results.json``,
``examples/results/*.json``), and ``tests/deploy/test_readme_blocks.py`` fails when a block
differs from what its file renders.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def machine() -> str:
    """This machine in words: core count, CPU model, OS (carried by every saved figure)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_block(name: str, text: str | None = None) -> str | None:
    """The content of README's block `name` (None when its markers are missing)."""
    text = README.read_text() if text is None else text
    start, end = markers(name)
    match = re.search(re.escape(start) + r"\n(.*?)\n?" + re.escape(end), text, flags=re.S)
    return None if match is None else match.group(1)


def write_block(name: str, content: str) -> bool:
    """Replace README's block `name` with `content`; False when its markers are missing."""
    text = README.read_text()
    start, end = markers(name)
    if start not in text or end not in text:
        return False
    block = f"{start}\n{content.rstrip()}\n{end}"
    pattern = re.escape(start) + ".*?" + re.escape(end)
    README.write_text(re.sub(pattern, lambda _: block, text, flags=re.S))
    return True
