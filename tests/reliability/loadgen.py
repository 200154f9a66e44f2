"""Load generator: concurrent submitters and pollers against a running `lcw-sweep serve`.

Run as its own process (``python loadgen.py URL --out FILE``) so that the client's CPU and event
loop are not the server's. Bounded in count and time: ``--submitters`` tasks each submit a tiny
study, pause ``--think`` seconds and go again; ``--pollers`` tasks each read one of the API's
views (a study, the list, a study's trials, its summary, /healthz) every ``--interval`` seconds,
as a dashboard or ``lcw-sweep submit --wait`` does; both for ``--seconds``. Every request's
latency and status is recorded; a transport error or a non-2xx answer is an error. The result
(p50/p90/p99/max per kind, counts, errors with samples) is written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

TINY: dict[str, Any] = {
    "name": "load",
    "dataset": "digits",
    "methods": ["plain"],
    "depths": [2],
    "learning_rates": [0.1],
    "epochs": 1,
    "diagnostics": False,
}


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"submit": [], "poll": []}
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []

    def record(self, kind: str, seconds: float, status: int | None, what: str) -> None:
        self.latencies[kind].append(seconds)
        if status is None or not 200 <= status < 300:
            key = f"{kind} {status}"
            self.errors[key] += 1
            if len(self.samples) < 20:
                self.samples.append(f"{key}: {what}"[:300])


async def _request(
    client: httpx.AsyncClient, rec: Recorder, kind: str, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        rec.record(kind, time.perf_counter() - started, None, f"{path}: {exc!r}")
        return None
    rec.record(kind, time.perf_counter() - started, response.status_code, response.text[:200])
    return response


async def submitter(
    client: httpx.AsyncClient, rec: Recorder, deadline: float, think: float, ids: list[int]
) -> None:
    while time.monotonic() < deadline:
        key = uuid.uuid4().hex
        r = await _request(
            client,
            rec,
            "submit",
            "POST",
            "/api/studies",
            json={**TINY, "name": f"load-{key[:8]}"},
            headers={"Idempotency-Key": key},
        )
        if r is not None and r.status_code == 201:
            ids.append(r.json()["id"])
        await asyncio.sleep(think)


async def poller(
    client: httpx.AsyncClient, rec: Recorder, deadline: float, interval: float, ids: list[int]
) -> None:
    await asyncio.sleep(random.random() * interval)  # spread the pollers over the interval
    while time.monotonic() < deadline:
        sid = random.choice(ids)
        path = random.choice(
            [
                f"/api/studies/{sid}",
                f"/api/studies/{sid}",
                "/api/studies?limit=20",
                f"/api/studies/{sid}/trials?limit=50",
                f"/api/studies/{sid}/summary",
                "/healthz",
            ]
        )
        await _request(client, rec, "poll", "GET", path)
        await asyncio.sleep(interval)


def _quantiles(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "count": len(ordered),
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rec = Recorder()
    limits = httpx.Limits(max_connections=args.submitters + args.pollers + 8)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx.AsyncClient(
        base_url=args.url, timeout=args.timeout, limits=limits, headers=headers
    ) as client:
        ids: list[int] = []
        for _ in range(10):  # studies for the pollers to look at (not timed)
            r = await client.post("/api/studies", json=TINY)
            r.raise_for_status()
            ids.append(r.json()["id"])
        started = time.monotonic()
        deadline = started + args.seconds
        await asyncio.gather(
            *[submitter(client, rec, deadline, args.think, ids) for _ in range(args.submitters)],
            *[poller(client, rec, deadline, args.interval, ids) for _ in range(args.pollers)],
        )
        wall = time.monotonic() - started
    total = sum(len(v) for v in rec.latencies.values())
    return {
        "url": args.url,
        "submitters": args.submitters,
        "pollers": args.pollers,
        "seconds": round(wall, 1),
        "requests": total,
        "requests_per_s": round(total / wall, 1),
        "errors": sum(rec.errors.values()),
        "errors_by_kind": dict(rec.errors),
        "error_samples": rec.samples,
        "submit": _quantiles(rec.latencies["submit"]),
        "poll": _quantiles(rec.latencies["poll"]),
        "all": _quantiles(rec.latencies["submit"] + rec.latencies["poll"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--submitters", type=int, default=50)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=0.2, help="submitter pause, s")
    parser.add_argument("--interval", type=float, default=1.0, help="poller period, s")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, s")
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
