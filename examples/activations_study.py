"""Run examples/activations.yaml through the real service and render its table into README.md.

    python -m examples.activations_study run      # serve, submit, wait, save (~30 min, 2 cores)
    python -m examples.activations_study readme   # re-render README's block from the saved file

``run`` starts ``lcw-sweep serve`` (API, local Ray and the dispatcher) on a free port with a
fresh SQLite database, submits the spec, waits for the study, and saves the spec, the summary,
the trial count, the wall time, the date and the machine to ``examples/results/activations.json``
(``--url`` uses a running server instead). ``readme`` renders, from that file alone, one row per
activation x depth: the strongest non-LCW method at its best setting (the best baseline), and
lcw and bn_lcw minus it, each with its paired 95% CI and Holm-adjusted p; a difference whose CI
includes 0 is marked as not significant. ``tests/deploy/test_readme_blocks.py`` checks that the
README block is exactly what the saved file renders.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.docs import ROOT, machine, write_block

SPEC = ROOT / "examples" / "activations.yaml"
RESULTS = ROOT / "examples" / "results" / "activations.json"
BLOCK = "activations-study"
TARGETS = ("lcw", "bn_lcw")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LCW_DATA_HOME": str(home)}
    env.pop("LCW_DATABASE_URL", None)
    exe = Path(sys.executable).with_name("lcw-sweep")
    return subprocess.Popen(
        [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(home / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def run(url: str | None) -> dict[str, Any]:
    """Submit the spec, wait for it, and return what is saved."""
    from service.client import Client

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if url is None:
            port = _free_port()
            server = _serve(Path(tmp), port)
            url = f"http://127.0.0.1:{port}"
        try:
            with Client(url) as client:
                for _ in range(120):
                    try:
                        client.health()
                        break
                    except Exception:
                        time.sleep(1)
                started = time.monotonic()
                study = client.submit(SPEC)
                last = 0.0

                def progress(s: Any) -> None:
                    nonlocal last
                    if time.monotonic() - last > 60:
                        last = time.monotonic()
                        p = s.progress
                        print(f"  {p.total - p.pending - p.running}/{p.total} trials", flush=True)

                done = client.wait(study.id, poll_s=5, on_progress=progress)
                wall = time.monotonic() - started
                summary = client.summary(study.id)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=120)
    return {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "spec": SPEC.name,
        "status": done.status,
        "trials": done.trial_count,
        "progress": done.progress.model_dump(),
        "wall_s": round(wall, 1),
        "summary": summary.model_dump(mode="json"),
    }


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _diff(c: dict[str, Any] | None) -> str:
    if c is None or c["mean_diff"] is None:
        return "n/a"
    text = f"{c['mean_diff']:+.3f}"
    if c["ci95"] is not None:
        text += f" [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"
    if c["significant"]:
        text += " *"
    elif c["ci95"] is not None and c["ci95"][0] <= 0 <= c["ci95"][1]:
        text += " (n.s., CI includes 0)"
    extra = [f"{c[k]} diverged" for k in ("method_diverged",) if c.get(k)]
    return text + (f" ({', '.join(extra)})" if extra else "")


def _setting(cell: dict[str, Any]) -> str:
    if cell["best_lr"] is None:
        return "-"
    return f"lr {cell['best_lr']:g}, x{cell['best_init_scale']:g}"


def render(saved: dict[str, Any]) -> str:
    """The README block from a saved results file."""
    summary = saved["summary"]
    cells = {(c["activation"], c["depth"], c["method"]): c for c in summary["cells"]}
    comps = {(c["activation"], c["depth"], c["method"], c["baseline"]): c
             for c in summary["comparisons"]}  # fmt: skip
    adj = summary["adjustment"]
    hours = saved["wall_s"] / 3600
    lines = [
        f"Measured {saved['date']} on {saved['machine']}: `{saved['spec']}`, "
        f"{saved['trials']} trials ({saved['status']}), {hours:.1f} h wall time "
        "(`python -m examples.activations_study run`; this table: `... readme`).",
        "",
        f"Test accuracy at each method's best (lr, init scale), chosen on validation; "
        f"differences are paired over seeds with a 95% t interval; `*`: adjusted p < "
        f"{adj['alpha']} ({adj['note']}).",
        "",
        "| activation | depth | best baseline (acc, setting) | lcw (acc) | lcw - best "
        "| p adj | bn_lcw (acc) | bn_lcw - best | p adj |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(a, d) for a, d, _ in cells}, key=lambda k: (k[0], k[1] or 0))
    for activation, depth in keys:
        baselines = [
            c
            for (a, d, m), c in cells.items()
            if (a, d) == (activation, depth) and m not in TARGETS and c["test_acc_mean"] is not None
        ]
        if not baselines:
            continue
        best = max(baselines, key=lambda c: c["test_acc_mean"])
        row = [
            activation,
            str(depth),
            f"{best['method']} ({best['test_acc_mean']:.3f}, {_setting(best)})",
        ]
        for target in TARGETS:
            cell = cells.get((activation, depth, target))
            comp = comps.get((activation, depth, target, best["method"]))
            acc = (
                f"{cell['test_acc_mean']:.3f} ({_setting(cell)})"
                if cell and cell["test_acc_mean"] is not None
                else "n/a"
            )
            row += [acc, _diff(comp), _fmt_p(comp["p_adjusted"] if comp else None)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["run", "readme"])
    parser.add_argument("--url", help="a running server (default: start one)")
    args = parser.parse_args()
    if args.what == "run":
        saved = run(args.url)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    saved = json.loads(RESULTS.read_text())
    text = render(saved)
    if not write_block(BLOCK, text):
        print(f"README.md has no {BLOCK} markers; the table:")
    print(text)


if __name__ == "__main__":
    main()
