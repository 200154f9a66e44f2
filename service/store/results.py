"""What runs send back, stored: epoch metrics (``write_metrics``) and finished trials
(``complete_trials``), both fenced by the lease owner. A dispatcher writes its queued rows in
one call (at least once a second while trials run) and its completions in one transaction
(``workers.writeback``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from service.models import EPOCH_METRICS, FINAL_METRICS, Trial, TrialMetric, utcnow
from service.store.base import _IN_BATCH, _chunks, _num, clean_json
from service.store.studies import Studies
from service.vocabulary import TRIAL_RESULT

COMPLETE_STATUSES = frozenset(TRIAL_RESULT)
_METRIC_BATCH = 500  # rows per executemany batch (SQLite allows 32,766 bound parameters)


@dataclass(frozen=True)
class Completion:
    """A finished run of a trial, for ``complete_trials``: its outcome, result and run info."""

    trial_id: int
    status: str  # completed | diverged | stopped_early
    result: dict[str, Any]
    run_info: dict[str, Any]


def _held_by(owner: str) -> tuple[Any, ...]:
    """Running under `owner`'s lease: what every worker's write is fenced by."""
    return (Trial.status == "running", Trial.lease_owner == owner)


_METRIC_COLUMNS = ("trial_id", "epoch", *EPOCH_METRICS, "diagnostics")
_METRIC_ARRAYS = {"trial_id": "integer[]", "epoch": "integer[]", "diagnostics": "text[]"}
_METRIC_VALUES = [c if c != "diagnostics" else "CAST(diagnostics AS json)" for c in _METRIC_COLUMNS]
_METRIC_PARAMS = [
    f"CAST(:{c} AS {_METRIC_ARRAYS.get(c, 'double precision[]')})" for c in _METRIC_COLUMNS
]
# PostgreSQL: every row of a write in one statement whose parameters are one array per column
# (a statement of constant text, parsed once; its arrays are bound in one go).
_POSTGRES_METRICS = text(
    f"INSERT INTO trial_metrics ({', '.join(_METRIC_COLUMNS)}, created_at) "
    f"SELECT {', '.join(_METRIC_VALUES)}, CAST(:created_at AS timestamptz) "
    f"FROM unnest({', '.join(_METRIC_PARAMS)}) AS u({', '.join(_METRIC_COLUMNS)}) "
    "ON CONFLICT (trial_id, epoch) DO NOTHING"
)


def _insert_metrics_postgres(s: Session, rows: list[dict[str, Any]], now: datetime) -> int:
    """Insert metric rows on PostgreSQL in one ``INSERT ... SELECT FROM unnest(...)``;
    returns how many were new (a (trial, epoch) already stored is skipped)."""
    params: dict[str, Any] = {c: [row[c] for row in rows] for c in _METRIC_COLUMNS}
    params["diagnostics"] = [None if d is None else json.dumps(d) for d in params["diagnostics"]]
    result = s.execute(
        _POSTGRES_METRICS.execution_options(preserve_rowcount=True),
        {**params, "created_at": now},
    )
    return max(cast(CursorResult[Any], result).rowcount, 0)


class Results(Studies):
    """Epoch metrics and completions of trials a worker holds (see the module docstring)."""

    def write_metrics(self, owner: str, rows: list[tuple[int, dict[str, Any]]]) -> int:
        """Insert epoch metrics ``(trial_id, metrics)`` for trials `owner` holds; returns rows
        written. A (trial, epoch) already stored is ignored (written once), and so are rows of
        trials the owner no longer holds. Keys: epoch, train_loss ... test_acc, seconds,
        samples_per_s, lr, diagnostics; and ``attempt_start`` True on the first epoch an
        attempt ran (0, or the one after the checkpoint it resumed from): the trial's stored
        rows from that epoch on are an earlier attempt's and are deleted first (rows of that
        trial before it in `rows` too), so an attempt replaces exactly the epochs it re-runs."""
        if not rows:
            return 0
        with self._write() as s:
            ids = sorted({tid for tid, _ in rows})
            # FOR SHARE: a concurrent release/reclaim waits, so no stale attempt's rows land.
            held: set[int] = set()
            for chunk in _chunks(ids, _IN_BATCH):
                held.update(
                    s.scalars(
                        select(Trial.id)
                        .where(Trial.id.in_(chunk), *_held_by(owner))
                        .with_for_update(read=True)
                    )
                )
            values: dict[tuple[int, int], dict[str, Any]] = {}
            restarts: dict[int, int] = {}  # trial id -> first epoch of its new attempt
            for tid, metrics in rows:
                epoch = metrics.get("epoch")
                if tid not in held or isinstance(epoch, bool) or not isinstance(epoch, int):
                    continue
                if metrics.get("attempt_start") is True:
                    restarts[tid] = epoch
                    for key in [k for k in values if k[0] == tid and k[1] >= epoch]:
                        del values[key]
                diag = metrics.get("diagnostics")
                values.setdefault(
                    (tid, epoch),
                    {
                        "trial_id": tid,
                        "epoch": epoch,
                        **{m: _num(metrics.get(m)) for m in EPOCH_METRICS},
                        "diagnostics": clean_json(diag) if diag is not None else None,
                    },
                )
            by_epoch: dict[int, list[int]] = defaultdict(list)  # one DELETE per first epoch
            for tid, epoch in restarts.items():
                by_epoch[epoch].append(tid)
            for epoch, tids in sorted(by_epoch.items()):
                for chunk in _chunks(sorted(tids), _IN_BATCH):
                    s.execute(
                        delete(TrialMetric)
                        .where(TrialMetric.trial_id.in_(chunk), TrialMetric.epoch >= epoch)
                        .execution_options(synchronize_session=False)
                    )
            if not values:
                return 0
            now = utcnow()
            if self.engine.dialect.name == "postgresql":
                return _insert_metrics_postgres(s, list(values.values()), now)
            # One short statement executed for many rows (the driver's executemany; its
            # rowcount sums the rows inserted): a multi-row VALUES list built per call is
            # compiled by SQLAlchemy and parsed by the driver again on every call.
            stmt = (
                self._insert(TrialMetric.__table__)
                .on_conflict_do_nothing(index_elements=["trial_id", "epoch"])
                .execution_options(preserve_rowcount=True)
            )
            written = 0
            for chunk in _chunks(list(values.values()), _METRIC_BATCH):
                result = s.execute(stmt, [{**row, "created_at": now} for row in chunk])
                written += max(cast(CursorResult[Any], result).rowcount, 0)
            return written

    def complete_trial(
        self,
        owner: str,
        trial_id: int,
        *,
        status: str,
        result: dict[str, Any],
        run_info: dict[str, Any],
    ) -> bool:
        """Finish a trial `owner` holds with `status` completed | diverged | stopped_early.

        `result` is stored whole (JSON) and its final train/val/test loss and accuracy are
        copied into columns for summaries. Returns False, changing nothing, when the owner no
        longer holds the trial.
        """
        done = self.complete_trials(owner, [Completion(trial_id, status, result, run_info)])
        return trial_id in done

    def complete_trials(self, owner: str, completions: Sequence[Completion]) -> set[int]:
        """``complete_trial`` for many trials in one transaction (one refresh of their studies
        and cells); returns the ids stored, those `owner` still held."""
        for c in completions:
            if c.status not in COMPLETE_STATUSES:
                raise ValueError(f"status: '{c.status}' is not one of {sorted(COMPLETE_STATUSES)}")
        if not completions:
            return set()
        now = utcnow()
        by_id = {c.trial_id: c for c in completions}
        table = cast(Table, Trial.__table__)
        with self._write() as s:
            # The trials `owner` still holds, locked; then one UPDATE executed for all of them.
            held: list[tuple[int, int, str]] = []
            for chunk in _chunks(sorted(by_id), _IN_BATCH):
                held += (
                    s.execute(
                        select(Trial.id, Trial.study_id, Trial.cell_key)
                        .where(Trial.id.in_(chunk), *_held_by(owner))
                        .with_for_update()
                    )
                    .tuples()
                    .all()
                )
            if held:
                values: dict[str, Any] = {
                    "status": bindparam("b_status"),
                    "result": bindparam("b_result"),
                    "run_info": bindparam("b_run_info"),
                    **{m: bindparam(f"b_{m}") for m in FINAL_METRICS},
                }
                stmt = (
                    update(table)
                    .where(table.c.id == bindparam("b_id"), *_held_by(owner))
                    .values(**values, finished_at=now, updated_at=now, lease_owner=None,
                            lease_expires_at=None)
                )  # fmt: skip
                rows = [
                    {
                        "b_id": tid,
                        "b_status": by_id[tid].status,
                        "b_result": clean_json(by_id[tid].result),
                        "b_run_info": clean_json(by_id[tid].run_info),
                        **{f"b_{m}": _num(by_id[tid].result.get(m)) for m in FINAL_METRICS},
                    }
                    for tid, _, _ in held
                ]
                s.execute(stmt, rows)
            self._refresh_studies(s, [(sid, key) for _, sid, key in held], now)
        return {tid for tid, _, _ in held}

    def _unlease(
        self, s: Session, where: tuple[Any, ...], now: datetime, **values: Any
    ) -> list[tuple[int, str]]:
        """Set `values` on the trials matching `where` and end their leases; returns the
        (study_id, cell_key) of each changed trial, for one ``_refresh_studies`` afterwards."""
        changed = (
            s.execute(
                update(Trial)
                .where(*where)
                .values(**values, lease_owner=None, lease_expires_at=None, updated_at=now)
                .returning(Trial.study_id, Trial.cell_key)
                .execution_options(synchronize_session=False)
            )
            .tuples()
            .all()
        )
        return [(sid, key) for sid, key in changed]
