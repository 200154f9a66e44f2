"""Shared helpers for the benchmarks: interleaved timing and medians of ratios."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager


def time_per_call(fn: Callable[[], object], *, calls: int, warmup: int = 3) -> float:
    """Seconds per call of `fn` (after `warmup` untimed calls)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def interleaved_ratios(
    candidates: Mapping[str, Callable[[], object]],
    *,
    baseline: str,
    calls: int,
    repeats: int = 5,
    warmup: int = 3,
) -> dict[str, dict[str, float]]:
    """Time every candidate side by side; the median ratio to `baseline` over `repeats` rounds.

    Within a round the candidates run call by call in turn (A B C A B C ...), each call timed on
    its own, and a candidate's round time is the median of its calls: bursts from other
    processes on a shared machine hit every candidate alike and drop out of the medians.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    rounds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        per_call: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(calls):
            for name, fn in candidates.items():
                t0 = time.perf_counter()
                fn()
                per_call[name].append(time.perf_counter() - t0)
        for name, times in per_call.items():
            rounds[name].append(statistics.median(times))
    base = rounds[baseline]
    out: dict[str, dict[str, float]] = {}
    for name, times in rounds.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        out[name] = {
            "seconds": statistics.median(times),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return out


POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on the local server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"lcw_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
