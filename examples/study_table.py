"""Run an example study through the real service and render its result table into README.md.

    python -m examples.study_table run quick-demo     # serve, submit, wait, save (~4 min)
    python -m examples.study_table run activations    # the same (~30 min on 2 cores)
    python -m examples.study_table readme activations # re-render README's block from the file

``run`` starts ``lcw-sweep serve`` (API, local Ray and the dispatcher) on a free port with a
fresh SQLite database, submits ``examples/NAME.yaml``, waits for the study, and saves the
summary, the trial count, the wall time, the date and the machine to
``examples/results/NAME.json`` (``--url`` uses a running server instead). ``readme`` renders,
from that file alone, the README block ``study-NAME``: one row per activation x depth with the
strongest non-LCW method at its best setting (the best baseline), and each LCW method minus it,
with its paired 95% CI and adjusted p; a difference whose CI includes 0 is marked as not
significant. ``tests/deploy/test_readme_blocks.py`` checks that each README block is exactly
what its saved file renders.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.docs import ROOT, machine, write_block

if TYPE_CHECKING:
    from service.client import Client
    from service.schemas import StudyPublic

EXAMPLES = ROOT / "examples"
TARGETS = ("lcw", "bn_lcw")
STUDIES = ("quick-demo", "activations")  # the examples whose tables README.md shows


def results_file(name: str) -> Path:
    return EXAMPLES / "results" / f"{name}.json"


def block(name: str) -> str:
    return f"study-{name}"


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


@contextmanager
def serving(url: str | None) -> Iterator[Client]:
    """A client of the server at `url`, or of a fresh ``lcw-sweep serve`` (API, local Ray and
    the dispatcher, a new SQLite database) when `url` is None, stopped on exit."""
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
                yield client
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=120)


def wait(client: Client, study_id: int) -> StudyPublic:
    """Wait for a study to end, printing its progress every minute."""
    last = 0.0

    def progress(s: Any) -> None:
        nonlocal last
        if time.monotonic() - last > 60:
            last = time.monotonic()
            p = s.progress
            print(f"  study {s.id}: {p.total - p.pending - p.running}/{p.total} trials", flush=True)

    return client.wait(study_id, poll_s=5, on_progress=progress)


def saved_study(spec: str, done: StudyPublic, wall: float, summary: Any) -> dict[str, Any]:
    """What a results file keeps of one study: its outcome, wall time, date, machine, summary."""
    return {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "spec": spec,
        "status": done.status,
        "trials": done.trial_count,
        "progress": done.progress.model_dump(),
        "wall_s": round(wall, 1),
        "summary": summary.model_dump(mode="json"),
    }


def run(name: str, url: str | None) -> dict[str, Any]:
    """Submit examples/NAME.yaml, wait for it, and return what is saved."""
    with serving(url) as client:
        started = time.monotonic()
        study = client.submit(EXAMPLES / f"{name}.yaml")
        done = wait(client, study.id)
        wall = time.monotonic() - started
        return saved_study(f"{name}.yaml", done, wall, client.summary(study.id))


def fmt_p(p: float | None) -> str:
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
    return text + (f" ({c['method_diverged']} diverged)" if c.get("method_diverged") else "")


def _setting(cell: dict[str, Any]) -> str:
    if cell["best_lr"] is None:
        return "-"
    return f"lr {cell['best_lr']:g}, x{cell['best_init_scale']:g}"


def _acc(cell: dict[str, Any]) -> str:
    acc = "n/a" if cell["test_acc_mean"] is None else f"{cell['test_acc_mean']:.3f}"
    diverged = f" ({cell['diverged']})" if cell["diverged"] else ""
    return f"{cell['method']} {acc}{diverged}"


def render(saved: dict[str, Any]) -> str:
    """The README block from a saved results file."""
    summary = saved["summary"]
    cells = {(c["activation"], c["depth"], c["method"]): c for c in summary["cells"]}
    comps = {(c["activation"], c["depth"], c["method"], c["baseline"]): c
             for c in summary["comparisons"]}  # fmt: skip
    adj = summary["adjustment"]
    name = saved["spec"].removesuffix(".yaml")
    targets = [t for t in TARGETS if any(m == t for _, _, m in cells)]
    lines = [
        f"Measured {saved['date']} on {saved['machine']}: `examples/{saved['spec']}`, "
        f"{saved['trials']} trials ({saved['status']}), {saved['wall_s'] / 60:.1f} min wall time "
        f"(`python -m examples.study_table run {name}`; this table: `... readme {name}`).",
        "",
        f"Test accuracy at each method's best (lr, init scale), chosen on validation; "
        f"differences are paired over seeds with a 95% t interval; `*`: adjusted p < "
        f"{adj['alpha']} ({adj['note']}).",
        "",
        "| activation | depth | every method: test acc (diverged) | best baseline (acc, setting) | "
        + " | ".join(f"{t} (acc, setting) | {t} - best [95% CI] | p adj" for t in targets)
        + " |",
        "|---|---|---|---|" + "---|---|---|" * len(targets),
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
            " · ".join(
                _acc(c)
                for (a, d, _), c in sorted(cells.items(), key=lambda kv: kv[0][2])
                if (a, d) == (activation, depth)
            ),
            f"{best['method']} ({best['test_acc_mean']:.3f}, {_setting(best)})",
        ]
        for target in targets:
            cell = cells.get((activation, depth, target))
            comp = comps.get((activation, depth, target, best["method"]))
            acc = (
                f"{cell['test_acc_mean']:.3f} ({_setting(cell)})"
                if cell and cell["test_acc_mean"] is not None
                else "n/a"
            )
            row += [acc, _diff(comp), fmt_p(comp["p_adjusted"] if comp else None)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["run", "readme"])
    parser.add_argument("name", choices=STUDIES)
    parser.add_argument("--url", help="a running server (default: start one)")
    args = parser.parse_args()
    path = results_file(args.name)
    if args.what == "run":
        saved = run(args.name, args.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=1) + "\n")
    text = render(json.loads(path.read_text()))
    if not write_block(block(args.name), text):
        print(f"README.md has no {block(args.name)} markers; the table:")
    print(text)


if __name__ == "__main__":
    main()
