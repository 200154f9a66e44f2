"""The incremental summary: each study's last summary kept per cell, recomputed only where a
cell's version moved, and computed cell results stored by a background writer."""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    bindparam,
    exists,
    select,
    update,
)

from service import stats
from service.models import (
    Study,
    StudyCell,
)
from service.store.base import log
from service.store.studies import Studies
from service.store.summary_sql import SummarySql
from service.summary import Adjustment, CellSummary, Comparison, Summary


@dataclass(frozen=True)
class _CellPart:
    """One cell's part of a cached summary, computed when the cell's version was `version`."""

    version: int
    result: stats.CellResult
    model: CellSummary


@dataclass
class _SummaryEntry:
    """A study's cached summary: the cell versions it reflects, each cell's part, and the
    comparisons (each with the two parts it was computed from)."""

    status: str
    versions: dict[str, int]
    cells: dict[str, _CellPart]
    comparisons: dict[tuple[str, str], tuple[_CellPart, _CellPart, dict[str, Any]]]
    summary: Summary
    json: bytes | None = None


class _ResultWriter:
    """Stores computed cell results (``study_cells.result``) from a background thread, so a
    summary request never waits for a write. The stored results are a cache: a write that fails
    (the database busy or gone) is dropped, and the cell is computed again when next needed."""

    LINGER_S = 0.2
    IDLE_EXIT_S = 30.0  # the thread ends after this long with nothing to write

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.Queue[tuple[int, datetime, list[dict[str, Any]]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # settle(): write now, do not linger

    def put(self, study_id: int, created_at: datetime, rows: list[dict[str, Any]]) -> None:
        """Store `rows` ({"key", "v", "result"}: the result computed at cell version v) of the
        study `study_id` created at `created_at`."""
        with self._lock:
            self._queue.put((study_id, created_at, rows))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="lcw-cell-results", daemon=True
                )
                self._thread.start()

    def settle(self) -> None:
        """Wait until everything put so far is written (or dropped)."""
        self._hurry.set()
        self._queue.join()

    def _run(self) -> None:
        # Guarded by the version: a result is never stored for a version that has moved on.
        # And by the study's creation time: a study id can be taken again by another study
        # (SQLite reuses the largest rowid after the newest study is deleted; a truncated or
        # restored PostgreSQL restarts its sequence) whose cells start at the same versions, and
        # a write still queued for the first must not land in the second (a foreign cell).
        statement = (
            update(StudyCell)
            .where(
                StudyCell.study_id == bindparam("sid"),
                StudyCell.cell_key == bindparam("key"),
                StudyCell.version == bindparam("v"),
                exists().where(
                    Study.id == bindparam("sid"), Study.created_at == bindparam("created")
                ),
            )
            .values(result=bindparam("result"), result_version=bindparam("v"))
        )
        while True:
            try:
                batch = [self._queue.get(timeout=self.IDLE_EXIT_S)]
            except queue.Empty:
                with self._lock:  # put() enqueues under this lock: nothing is left behind
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            # After the request that computed them has answered (this thread would otherwise
            # compete with its serialization for the GIL); what came meanwhile goes along.
            self._hurry.wait(self.LINGER_S)
            self._hurry.clear()
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            params = [
                {"sid": study_id, "created": created, **row}
                for study_id, created, rows in batch
                for row in rows
            ]
            try:
                with self._engine.begin() as conn:
                    conn.execute(statement, params)
            except Exception as exc:  # a cache write: the next summary computes the cells
                log.debug("storing %d cell results: %s", len(params), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()


class SummaryCache(SummarySql, Studies):
    """``summary`` on top of the summary SQL, with an LRU of studies and the result writer."""

    SUMMARY_CACHE_SIZE = 64  # studies whose summary is kept, per process

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # study_id -> its last summary, per cell (see ``summary``).
        self._summaries: OrderedDict[int, _SummaryEntry] = OrderedDict()
        self._summaries_lock = threading.Lock()
        self._results = _ResultWriter(self._writer)

    def summary(self, study_id: int) -> Summary:
        """The study's comparison (service.stats) from the trials' final-metric columns.

        Incremental: the last summary of each study is kept per cell, with the cell versions
        (``study_cells``) it was computed at. A request reads the study row and its cell
        versions, recomputes only the cells whose version moved (their GROUP BY and their
        trials at the best LR) and the comparisons that involve them, and reuses the rest;
        nothing changed costs those two reads. Everything a summary shows is a function of the
        cell's own trials, so this equals a full recomputation (tested).

        Each computed cell result is also stored with its version (``study_cells.result``, by
        a background thread): a process that starts, or has dropped the study from its cache,
        reads the current ones instead of computing every cell again.
        """
        return self._summary_entry(study_id).summary

    def summary_json(self, study_id: int) -> bytes:
        """``summary`` serialized, kept with the cached summary until a cell changes."""
        entry = self._summary_entry(study_id)
        if entry.json is None:
            entry.json = entry.summary.model_dump_json().encode()
        return entry.json

    def forget_summaries(self, *, stored: bool = True) -> None:
        """Drop every cached summary (after changes made to the tables outside this store):
        this process's and, unless `stored` is False (as a restart does), the stored ones."""
        self._results.settle()  # no write still queued puts one back afterwards
        with self._summaries_lock:
            self._summaries.clear()
        if stored:
            with self._write() as s:
                s.execute(update(StudyCell).values(result=None, result_version=None))

    def settle_summaries(self) -> None:
        """Wait until the cell results computed so far are stored (see ``summary``)."""
        self._results.settle()

    def _summary_entry(self, study_id: int) -> _SummaryEntry:
        with self._read() as s:
            if self.engine.dialect.name == "postgresql":
                # The versions and the cells' rows below: one snapshot.
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            study = self._get_study(s, study_id)
            versions: dict[str, int] = dict(
                s.execute(
                    select(StudyCell.cell_key, StudyCell.version).where(
                        StudyCell.study_id == study_id
                    )
                )
                .tuples()
                .all()
            )
            with self._summaries_lock:
                prev = self._summaries.get(study_id)
                if prev is not None:
                    self._summaries.move_to_end(study_id)
            if prev is not None and prev.versions == versions and prev.status == study.status:
                return prev
            old = prev.cells if prev is not None else {}
            stale = [k for k, v in versions.items() if k not in old or old[k].version != v]
            stored = self._stored_results(s, study_id, stale, len(versions)) if stale else {}
            missing = [k for k in stale if k not in stored]
            fresh = (
                self._cell_results(s, study_id, None if len(missing) == len(versions) else missing)
                if missing or not versions
                else {}
            )
        cells = {k: old[k] for k in versions if k not in fresh and k not in stored and k in old}
        for k, result in (stored | fresh).items():
            part = CellSummary.model_validate(result.summary)
            cells[k] = _CellPart(versions.get(k, -1), result, part)  # -1: recomputed next time
        computed = [
            {"key": k, "v": versions[k], "result": stats.cell_result_to_json(r)}
            for k, r in fresh.items()
            if k in versions
        ]
        if computed:
            self._results.put(study_id, study.created_at, computed)
        adjustment = (study.spec or {}).get("adjustment", "holm")
        entry = self._assemble(study_id, study.status, versions, cells, prev, adjustment)
        with self._summaries_lock:
            self._summaries[study_id] = entry
            self._summaries.move_to_end(study_id)
            while len(self._summaries) > self.SUMMARY_CACHE_SIZE:
                self._summaries.popitem(last=False)
        return entry

    @staticmethod
    def _assemble(
        study_id: int,
        status: str,
        versions: dict[str, int],
        cells: dict[str, _CellPart],
        prev: _SummaryEntry | None,
        adjustment: str,
    ) -> _SummaryEntry:
        """The summary from each cell's part; a raw comparison is reused while both its parts
        are the ones it was computed from, and the study's family is adjusted anew
        (``stats.assemble`` is the same without the reuse)."""
        by_key = {part.result.key: (cell_key, part) for cell_key, part in cells.items()}
        old = prev.comparisons if prev is not None else {}
        comparisons: dict[tuple[str, str], tuple[_CellPart, _CellPart, dict[str, Any]]] = {}
        for a, b in stats.comparison_pairs(by_key):
            (ka, pa), (kb, pb) = by_key[a], by_key[b]
            hit = old.get((ka, kb))
            if hit is not None and hit[0] is pa and hit[1] is pb:
                comparisons[ka, kb] = hit
            else:
                comparisons[ka, kb] = (pa, pb, stats.comparison(pa.result, pb.result))
        final, block = stats.adjusted((c[2] for c in comparisons.values()), adjustment)
        summary = Summary.model_construct(
            study_id=study_id,
            status=status,
            cells=[by_key[key][1].model for key in stats.cell_order(by_key)],
            comparisons=[Comparison.model_validate(c) for c in final],
            adjustment=Adjustment.model_validate(block),
        )
        return _SummaryEntry(status, versions, cells, comparisons, summary)
