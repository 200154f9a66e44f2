"""The summary's queries: per (cell, setting) aggregates from the covering index, the trials at
each cell's best setting, and the stored cell results (``service.stats`` does the statistics)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy import (
    Float,
    String,
    and_,
    case,
    column,
    func,
    select,
    tuple_,
    values,
)
from sqlalchemy.orm import Session

from service import stats
from service.models import (
    StudyCell,
    Trial,
)
from service.store.base import _IN_BATCH, StoreBase, _chunks
from service.vocabulary import TRIAL_SCORED, TRIAL_STOPPED, TRIAL_UNFINISHED

# A trial row as the summary reads it: the fields of stats.TrialOutcome, in order.
OUTCOME_COLUMNS = (
    Trial.method,
    Trial.depth,
    Trial.width,
    Trial.activation,
    Trial.lr,
    Trial.seed,
    Trial.status,
    Trial.val_acc,
    Trial.test_acc,
    Trial.init_scale,
)


class _GroupSums:
    """The GROUP BY rows (one per status) of one (cell, lr, init_scale), added up into a
    ``stats.LrGroup`` (statuses classified as ``stats.group_outcomes`` does)."""

    __slots__ = ("cell", "counts", "tests", "vals")

    def __init__(self, cell: tuple[str, int | None, int | None, str]) -> None:
        self.cell = cell
        self.counts = dict.fromkeys(
            ("scored", "tested", "diverged", "stopped", "failed", "open"), 0
        )
        self.vals: list[float] = []
        self.tests: list[float] = []

    def add(self, status: str, n: int, nv: int, sv: Any, nt: int, st: Any) -> None:
        c = self.counts
        if status in TRIAL_SCORED:
            c["scored"] += nv
            c["tested"] += nt
            self.vals.append(sv or 0.0)
            self.tests.append(st or 0.0)
            if status == "diverged":
                c["diverged"] += n
        elif status == TRIAL_STOPPED:
            c["stopped"] += n
        elif status == "failed":
            c["failed"] += n
        elif status in TRIAL_UNFINISHED:
            c["open"] += n

    def group(self, lr: float | None, scale: float | None) -> stats.LrGroup:
        c = self.counts
        return stats.LrGroup(
            *self.cell,
            lr,
            scale,
            c["scored"],
            math.fsum(self.vals),
            c["tested"],
            math.fsum(self.tests),
            c["diverged"],
            c["stopped"],
            c["failed"],
            c["open"],
        )


class SummarySql(StoreBase):
    """What a summary reads from the database, cell by cell."""

    @staticmethod
    def _stored_results(
        s: Session, study_id: int, cell_keys: list[str], cells: int
    ) -> dict[str, stats.CellResult]:
        """The stored results of the cells `cell_keys` that are still current (computed at the
        cell's present version, in a format this code reads); `cells`: the study's count."""
        query = select(StudyCell.cell_key, StudyCell.result).where(
            StudyCell.study_id == study_id, StudyCell.result_version == StudyCell.version
        )
        if len(cell_keys) == cells:
            rows: list[Any] = list(s.connection().execute(query))
        else:
            rows = []
            for chunk in _chunks(cell_keys, _IN_BATCH):
                rows += s.connection().execute(query.where(StudyCell.cell_key.in_(chunk)))
        out = {}
        for cell_key, data in rows:
            result = stats.cell_result_from_json(data)
            if result is not None:
                out[cell_key] = result
        return out

    def _cell_results(
        self, s: Session, study_id: int, cell_keys: list[str] | None
    ) -> dict[str, stats.CellResult]:
        """``stats.cell_result`` of the study's cells `cell_keys` (None: every cell)."""
        groups = self._lr_groups(s, study_id, cell_keys)
        trials: dict[stats.CellKey, list[stats.TrialOutcome]] = defaultdict(list)
        for t in self._trials_at(s, study_id, groups):
            trials[stats.cell_of(t)].append(t)
        out = {}
        for cell_key, cell_groups in groups.items():
            key = cell_groups[0].cell
            out[cell_key] = stats.cell_result(key, cell_groups, trials[key])
        return out

    def _lr_groups(
        self, s: Session, study_id: int, cell_keys: list[str] | None = None
    ) -> dict[str, list[stats.LrGroup]]:
        """``stats.group_outcomes`` of the study's trials (of the cells `cell_keys`; None: all),
        by cell_key, from a GROUP BY over the covering index ``ix_trials_study_summary``
        (~2,000 rows for 20,000 trials, no visit to the wide trial rows); statuses are grouped
        in SQL and added up here. Run on the session's connection (Core rows: the ORM's result
        layer cost ~3 ms more for these rows, SQLite and PostgreSQL)."""
        keys = (
            Trial.cell_key,
            Trial.lr,
            Trial.init_scale,
            Trial.method,
            Trial.depth,
            Trial.width,
            Trial.activation,
        )
        test_if_val = case((Trial.val_acc.is_not(None), Trial.test_acc))
        query = (
            select(
                *keys,
                Trial.status,
                func.count(),
                func.count(Trial.val_acc),
                func.sum(Trial.val_acc),
                func.count(test_if_val),
                func.sum(test_if_val),
            )
            .where(Trial.study_id == study_id)
            .group_by(*keys, Trial.status)
        )
        if cell_keys is None:
            rows: list[Any] = list(s.connection().execute(query))
        else:
            rows = []
            for chunk in _chunks(cell_keys, _IN_BATCH):
                rows += s.connection().execute(query.where(Trial.cell_key.in_(chunk)))
        # (cell_key, lr, init_scale) -> _GroupSums (the partial sums per scored status are added
        # with fsum: the same total in any row order).
        acc: dict[tuple[str, float | None, float | None], _GroupSums] = {}
        for cell_key, lr, scale, method, depth, width, activation, status, *counts in rows:
            e = acc.get((cell_key, lr, scale))
            if e is None:
                e = acc[cell_key, lr, scale] = _GroupSums((method, depth, width, activation))
            e.add(status, *counts)
        out: dict[str, list[stats.LrGroup]] = defaultdict(list)
        for (cell_key, lr, scale), e in acc.items():
            out[cell_key].append(e.group(lr, scale))
        return out

    def _trials_at(
        self, s: Session, study_id: int, groups: dict[str, list[stats.LrGroup]]
    ) -> list[stats.TrialOutcome]:
        """The trials of each cell at its best setting, in expansion order (stats picks the
        scored ones); index lookups on ``ix_trials_study_summary`` by (cell_key, lr), the init
        scale filtered here (rows at the best lr with another scale are few)."""
        best = stats.best_settings(g for cell in groups.values() for g in cell)
        wanted = {
            cell_key: setting
            for cell_key, cell in groups.items()
            if (setting := best[cell[0].cell]) is not None
        }
        at = sorted({(cell_key, setting[0]) for cell_key, setting in wanted.items()})
        rows: list[Any] = []
        query = select(Trial.index, Trial.cell_key, *OUTCOME_COLUMNS).where(
            Trial.study_id == study_id
        )
        postgres = self.engine.dialect.name == "postgresql"
        for chunk in _chunks(at, _IN_BATCH // 2):  # SQLite: bound parameters per statement
            if postgres:
                # A row-value IN (compiled once, a bitmap of index lookups): ~5 ms less there
                # than the VALUES join, which SQLite runs faster.
                chunk_query = query.where(tuple_(Trial.cell_key, Trial.lr).in_(list(chunk)))
            else:
                pairs = values(column("cell_key", String), column("lr", Float), name="best")
                best_at = pairs.data(list(chunk)).cte("best")
                chunk_query = query.join(
                    best_at, and_(Trial.cell_key == best_at.c.cell_key, Trial.lr == best_at.c.lr)
                )
            rows += s.connection().execute(chunk_query).all()
        # Sorted here: an ORDER BY makes SQLite walk the (study_id, index) index instead.
        rows.sort(key=lambda row: row[0])
        return [
            stats.TrialOutcome(*row[2:])
            for row in rows
            if (row[6], row[-1]) == wanted[row[1]]  # (lr, init_scale) is the best setting
        ]
