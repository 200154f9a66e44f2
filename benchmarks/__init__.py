"""Benchmarks behind `make bench` (``python -m benchmarks.run``): modules with ``run() -> dict``."""
