"""The service never imports torch (it validates specs with lcw's torch-free modules)."""

from __future__ import annotations

import subprocess
import sys


def test_service_does_not_import_torch() -> None:
    code = (
        "import sys, service.main, service.store, service.stats, service.cli.server\n"
        "service.main.create_app\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
