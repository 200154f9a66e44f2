"""A study's life after submission, as a user meets it on a real server (`lcw-sweep serve` with
its dispatcher on a local Ray, a temporary SQLite database and an empty data directory):

- a study on `mnist` without its files fails at the first trial that needs them, without
  retries, and `submit --wait`, `status` and `results` say why and what to do (not "add seeds");
- once the files are there, `lcw-sweep retry` runs the failed trials again and they complete;
- `lcw-sweep extend` adds seeds to the finished study: exactly the new trials run, the stored
  ones keep their rows, an Idempotency-Key replays, and the summary's n goes 2 -> 4.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cli_helpers import lcw, serve, study_spec

from lcw.data import write_idx
from service.client import Client

pytestmark = pytest.mark.slow

# 2 methods x 3 seeds of a 2-layer, 16-unit MLP on 500 training images: seconds each.
NO_DATA = study_spec(
    "no-mnist", dataset="mnist", depths=[2], widths=[16], seeds=3, epochs=1,
    train_limit=500, diagnostics=False,
)  # fmt: skip
TINY = study_spec("extend-me", depths=[2], widths=[16], seeds=2, epochs=2, diagnostics=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("serve-life")
    data = tmp / "data"
    data.mkdir()
    with serve(tmp, LCW_DATA_DIR=str(data)) as (url, _started):
        yield url, data


def _spec_file(tmp: Path, spec: dict[str, Any]) -> str:
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _write_mnist(folder: Path) -> None:
    """A small MNIST in its real IDX format (random pixels: 5,600 train and 200 test images)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 5600), ("t10k", 200)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28),
                  dtype=np.uint8))  # fmt: skip
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n,
                  dtype=np.uint8))  # fmt: skip


def test_missing_dataset_fails_fast_says_why_then_retry_runs_it(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, data = server
    start = time.monotonic()
    proc = lcw("submit", _spec_file(tmp_path, NO_DATA), "--wait", "--poll", "0.3", "--url", url,
               timeout=150)  # fmt: skip
    waited = time.monotonic() - start
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    sid = int(out.splitlines()[0].split()[2])
    assert f"study {sid} failed" in out
    assert "6 of 6 trials failed (every trial)" in out
    assert "DatasetNotFoundError: dataset 'mnist': missing" in out
    assert "fix: put the dataset's files in the workers' data directory" in out
    assert f"lcw-sweep retry {sid}" in out
    assert "seeds" not in out  # no advice to add seeds: nothing finished
    with Client(url) as api:
        trials = list(api.iter_trials(sid))
        first = api.first_error(sid)
    # The trial is named by its id, the number its page and the API use.
    assert first is not None and f"The first error, trial {first.id} (" in out
    assert [t.status for t in trials] == ["failed"] * 6
    # No retries: no trial was claimed a second time (the dispatcher claims ahead, so a trial
    # that waited for an actor has attempt 1 too, and failed with the first one's message).
    assert max(t.attempt for t in trials) <= 1
    first_lines = {(t.error or "").splitlines()[0] for t in trials}
    assert len(first_lines) == 1 and first_lines.pop().startswith("DatasetNotFoundError: ")
    print(f"missing dataset: study failed {waited:.1f} s after submission")

    status = lcw("status", str(sid), "--url", url)
    assert status.returncode == 0 and "DatasetNotFoundError" in status.stdout, status.stdout
    results = lcw("results", str(sid), "--url", url)
    assert results.returncode == 1, results.stdout
    assert "DatasetNotFoundError" in results.stdout and "fix:" in results.stdout

    _write_mnist(data / "mnist")
    retry = lcw("retry", str(sid), "--url", url)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert f"study {sid}: requeued 6 failed or cancelled trials" in retry.stdout
    with Client(url) as api:
        done = api.wait(sid, poll_s=0.3, timeout_s=120)
        trials = list(api.iter_trials(sid))
    assert done.status == "completed", done
    assert [t.status for t in trials] == ["completed"] * 6
    assert all(t.attempt == 1 for t in trials)  # a fresh budget: the first attempt of it


def test_extend_runs_only_the_new_seeds(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    proc = lcw("submit", _spec_file(tmp_path, TINY), "--wait", "--poll", "0.3", "--url", url,
               timeout=150)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sid = int(proc.stdout.splitlines()[0].split()[2])
    with Client(url) as api:
        before = {t.id: t for t in api.iter_trials(sid)}
        assert {c.method: c.n for c in api.summary(sid).cells} == {"plain": 2, "lcw": 2}

    ext = lcw("extend", str(sid), "--seeds", "4", "--key", "four-seeds", "--url", url)
    assert ext.returncode == 0, ext.stdout + ext.stderr
    assert f"study {sid}: added 4 trials (8 in all)" in ext.stdout
    again = lcw("extend", str(sid), "--seeds", "4", "--key", "four-seeds", "--url", url)
    assert again.returncode == 0 and "added 4 trials (8 in all)" in again.stdout
    bad = lcw("extend", str(sid), "--seeds", "1", "--url", url)
    assert bad.returncode == 1 and "only adds seeds" in bad.stderr, bad.stderr

    with Client(url) as api:
        done = api.wait(sid, poll_s=0.3, timeout_s=120)
        after = {t.id: t for t in api.iter_trials(sid)}
        cells = {c.method: c.n for c in api.summary(sid).cells}
    assert done.status == "completed" and done.trial_count == 8
    assert {tid: after[tid] for tid in before} == before  # stored trials untouched
    new = [t for tid, t in after.items() if tid not in before]
    assert sorted((t.method, t.seed) for t in new) == [
        (m, s) for m in ("lcw", "plain") for s in (2, 3)
    ]
    assert all(t.status == "completed" and t.attempt == 1 for t in new)
    assert cells == {"plain": 4, "lcw": 4}
