"""Trial reads: pages of a study's trials, one trial with its metrics, a cell's learning
curves and diagnostics, and the streaming export."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy import (
    and_,
    func,
    or_,
    select,
)

from service.errors import NotFoundError
from service.models import EPOCH_METRICS, FINAL_METRICS, Trial, TrialMetric
from service.records import EpochRecord, Page, TrialDetail, TrialRecord, field_names
from service.store.base import _is, _num
from service.store.studies import Studies
from service.vocabulary import TRIAL_RESULT

_EXPORT_BATCH = 500  # trials per export query
_T = TypeVar("_T", bound=TrialRecord)
# Columns a trial list can be ordered by (the web table's sortable columns).
TRIAL_SORT_KEYS = frozenset(
    {"index", "method", "depth", "width", "activation", "lr", "init_scale", "seed"}
    | {"status", "attempt"}
    | set(FINAL_METRICS)
)


class Trials(Studies):
    """Read-only views of trials (the API's and the web view's)."""

    def list_trials(
        self,
        study_id: int,
        *,
        limit: int = 100,
        offset: int = 0,
        method: str | None = None,
        depth: int | None = None,
        width: int | None = None,
        activation: str | None = None,
        status: str | None = None,
        order_by: str = "index",
        descending: bool = False,
    ) -> Page[TrialRecord]:
        """A page of a study's trials with optional filters, in expansion order by default.

        `order_by` is one of ``TRIAL_SORT_KEYS`` (the web table sorts by any column); missing
        values sort last either way, and ties keep expansion order.
        """
        if order_by not in TRIAL_SORT_KEYS:
            raise ValueError(f"order_by: {order_by!r} is not one of {sorted(TRIAL_SORT_KEYS)}")
        with self._read() as s:
            self._get_study(s, study_id)
            where = [Trial.study_id == study_id]
            for column, value in (
                (Trial.method, method),
                (Trial.depth, depth),
                (Trial.width, width),
                (Trial.activation, activation),
                (Trial.status, status),
            ):
                if value is not None:
                    where.append(column == value)
            count = s.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
            column = getattr(Trial, order_by)
            order = [Trial.index.desc() if descending else Trial.index]
            if order_by != "index":
                # NULLs last in both directions, on SQLite and PostgreSQL alike.
                order = [column.is_(None), column.desc() if descending else column, Trial.index]
            trials = s.scalars(
                select(Trial).where(*where).order_by(*order).limit(limit).offset(offset)
            )
            return Page([_trial_record(t) for t in trials], count)

    def get_trial(self, trial_id: int) -> TrialDetail:
        """One trial with its run info and every epoch's metrics; NotFoundError when missing."""
        with self._read() as s:
            trial = s.get(Trial, trial_id)
            if trial is None:
                raise NotFoundError(f"trial {trial_id} does not exist")
            metrics = s.scalars(
                select(TrialMetric)
                .where(TrialMetric.trial_id == trial_id)
                .order_by(TrialMetric.epoch)
            )
            return _trial_record(
                trial,
                TrialDetail,
                metrics=[
                    EpochRecord(
                        epoch=m.epoch,
                        diagnostics=m.diagnostics,
                        **{k: getattr(m, k) for k in EPOCH_METRICS},
                    )
                    for m in metrics
                ],
            )

    def _cell_where(
        self, study_id: int, depth: int | None, width: int | None, activation: str
    ) -> list[Any]:
        return [
            Trial.study_id == study_id,
            Trial.depth.is_(None) if depth is None else Trial.depth == depth,
            Trial.width.is_(None) if width is None else Trial.width == width,
            Trial.activation == activation,
            Trial.status.in_(sorted(TRIAL_RESULT)),
        ]

    def cell_curves(
        self, study_id: int, *, depth: int | None, width: int | None, activation: str
    ) -> list[dict[str, Any]]:
        """Learning curves of one cell (depth x width x activation, every method and setting):
        per (method, lr, init_scale, epoch) the mean over scored trials' seeds of train_loss,
        val_acc and test_acc, and n (trials with that epoch), ordered by method, lr, scale, epoch.

        One grouped query over the cell's trials (index on trial_metrics' (trial_id, epoch));
        NotFoundError for an unknown study.
        """
        with self._read() as s:
            self._get_study(s, study_id)
            rows = s.execute(
                select(
                    Trial.method,
                    Trial.lr,
                    Trial.init_scale,
                    TrialMetric.epoch,
                    func.count(TrialMetric.id),
                    func.avg(TrialMetric.train_loss),
                    func.avg(TrialMetric.val_acc),
                    func.avg(TrialMetric.test_acc),
                )
                .join(TrialMetric, TrialMetric.trial_id == Trial.id)
                .where(*self._cell_where(study_id, depth, width, activation))
                .group_by(Trial.method, Trial.lr, Trial.init_scale, TrialMetric.epoch)
                .order_by(Trial.method, Trial.lr, Trial.init_scale, TrialMetric.epoch)
            ).all()
        keys = ("method", "lr", "init_scale", "epoch", "n", "train_loss", "val_acc", "test_acc")
        return [
            {k: (_num(v) if k in keys[5:] else v) for k, v in zip(keys, row, strict=True)}
            for row in rows
        ]

    def cell_diagnostics(
        self,
        study_id: int,
        *,
        depth: int | None,
        width: int | None,
        activation: str,
        settings: dict[str, tuple[float, float | None]],
    ) -> list[dict[str, Any]]:
        """Per-layer diagnostics of one cell's scored trials of each method at its setting
        (`settings`: method -> (lr, init_scale), e.g. each method's best) at init (epoch 0) and
        at the trial's last epoch: rows {"method", "seed", "epoch", "last", "layers"} in one
        query.
        """
        if not settings:
            return []
        last = (
            select(func.max(TrialMetric.epoch))
            .where(TrialMetric.trial_id == Trial.id)
            .correlate(Trial)
            .scalar_subquery()
        )
        with self._read() as s:
            self._get_study(s, study_id)
            rows = s.execute(
                select(Trial.method, Trial.seed, TrialMetric.epoch, last, TrialMetric.diagnostics)
                .join(TrialMetric, TrialMetric.trial_id == Trial.id)
                .where(
                    *self._cell_where(study_id, depth, width, activation),
                    or_(
                        *(
                            and_(Trial.method == m, Trial.lr == lr, _is(Trial.init_scale, scale))
                            for m, (lr, scale) in settings.items()
                        )
                    ),
                    or_(TrialMetric.epoch == 0, TrialMetric.epoch == last),
                )
                .order_by(Trial.method, Trial.seed, TrialMetric.epoch)
            ).all()
        return [
            {
                "method": method,
                "seed": seed,
                "epoch": epoch,
                "last": epoch == last_epoch,
                "layers": diag["layers"],
            }
            for method, seed, epoch, last_epoch, diag in rows
            if isinstance(diag, dict) and diag.get("layers")
        ]

    EXPORT_TRIAL_COLUMNS = (
        "trial_id",  # the trial's one number, as on the pages, the CLI and the API
        "status",
        "cell_key",
        "slot",
        "attempt",
    )

    def export_columns(self) -> list[str]:
        """Column names of ``iter_export`` rows, in order (config fields flattened)."""
        from lcw.config import TrialConfig

        config = TrialConfig().to_dict()
        config_cols = []
        for key, value in config.items():
            if isinstance(value, dict):
                config_cols += [f"{key}.{sub}" for sub in value]
            else:
                config_cols.append(key)
        metric_cols = ["epoch", *[f"epoch_{m}" if m == "lr" else m for m in EPOCH_METRICS]]
        return [*self.EXPORT_TRIAL_COLUMNS, *config_cols, *metric_cols]

    def iter_export(self, study_id: int, *, diagnostics: bool = False) -> Iterator[dict[str, Any]]:
        """One row per trial and epoch (a trial without metrics: one row, epoch None).

        Reads 500 trials at a time (keyset on index) and their metrics as plain columns, so a
        study of 20,000 trials x 20 epochs streams in bounded memory.
        """
        metric_cols: list[Any] = [TrialMetric.trial_id, TrialMetric.epoch]
        metric_cols += [getattr(TrialMetric, m) for m in EPOCH_METRICS]
        if diagnostics:
            metric_cols.append(TrialMetric.diagnostics)
        with self._read() as s:
            last_index = -1
            while True:
                trials = s.execute(
                    select(
                        Trial.id,
                        Trial.index,
                        Trial.status,
                        Trial.cell_key,
                        Trial.slot,
                        Trial.attempt,
                        Trial.config,
                    )
                    .where(Trial.study_id == study_id, Trial.index > last_index)
                    .order_by(Trial.index)
                    .limit(_EXPORT_BATCH)
                ).all()
                if not trials:
                    return
                last_index = trials[-1].index
                by_trial: dict[int, list[Any]] = defaultdict(list)
                for metric in s.execute(
                    select(*metric_cols)
                    .where(TrialMetric.trial_id.in_([t.id for t in trials]))
                    .order_by(TrialMetric.trial_id, TrialMetric.epoch)
                ):
                    by_trial[metric.trial_id].append(metric)
                for t in trials:
                    base: dict[str, Any] = {
                        "trial_id": t.id,
                        "status": t.status,
                        "cell_key": t.cell_key,
                        "slot": t.slot,
                        "attempt": t.attempt,
                    }
                    for key, value in t.config.items():
                        if isinstance(value, dict):
                            base.update({f"{key}.{sub}": v for sub, v in value.items()})
                        else:
                            base[key] = value
                    for metric in by_trial.get(t.id) or [None]:
                        row = dict(base)
                        row["epoch"] = metric.epoch if metric is not None else None
                        for m in EPOCH_METRICS:
                            name = "epoch_lr" if m == "lr" else m
                            row[name] = getattr(metric, m) if metric is not None else None
                        if diagnostics:
                            row["diagnostics"] = metric.diagnostics if metric is not None else None
                        yield row


def _trial_record(t: Trial, record: type[_T] = TrialRecord, **extra: Any) -> _T:  # type: ignore[assignment]
    """`record` (TrialRecord or TrialDetail) of a trial row: its fields are the row's columns
    of the same names (``error`` is ``last_error``), and `extra` gives the others."""
    names = [n for n in field_names(record) if n not in extra and n != "error"]
    return record(**{name: getattr(t, name) for name in names}, error=t.last_error, **extra)
