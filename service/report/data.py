"""What a study's report shows, gathered once from the store: the study and its spec, the
summary the API serves (``Store.summary``: cells, comparisons, the adjustment), each cell's
learning curves and layer diagnostics at every method's best setting (``service.web.views``,
the same data the study page draws), the versions of the software that wrote the report and
what the trials' ``run_info`` recorded about where they ran.

No statistics of its own: every number in the report's tables is the summary's.
"""

from __future__ import annotations

import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

from lcw import __version__
from service.models import utcnow
from service.records import StudyRecord
from service.store import Store
from service.summary import Summary
from service.vocabulary import TRIAL_RESULT, TRIAL_STATUSES
from service.web.views import Cell, cell_data, cells_of

# Trials whose run_info is read for the hardware table: enough to see every node of a cluster
# run, bounded so that a 20,000-trial study's report reads a few hundred rows, not all.
RUN_INFO_LIMIT = 200

_HARDWARE_KEYS = ("device", "device_name", "torch_threads", "hostname", "platform")
_VERSION_KEYS = ("lcw_sweep", "torch", "python", "numpy", "ray", "optuna")


@dataclass(frozen=True)
class RunInfoCount:
    """One distinct combination of recorded values and how many trials ran with it."""

    values: dict[str, Any]
    trials: int


@dataclass(frozen=True)
class RunInfo:
    """What the finished trials' run_info recorded: distinct hardware and software versions."""

    hardware: list[RunInfoCount]
    versions: list[RunInfoCount]
    read: int  # trials whose run_info was read
    finished: int  # trials that ran to a result (completed, diverged, stopped early)


@dataclass(frozen=True)
class ReportData:
    """Everything a report renders (HTML and Markdown render the same data)."""

    study: StudyRecord
    summary: Summary
    cells: list[dict[str, Any]]  # ``views.cell_data`` per cell, in the summary's order
    generator: dict[str, str]  # versions of what wrote the report
    run_info: RunInfo
    generated_at: datetime = field(default_factory=utcnow)

    @property
    def diagnostics_on(self) -> bool:
        """Whether the spec asked for per-layer diagnostics (the spec's default is on)."""
        return bool(self.study.spec.get("diagnostics", True))


def generator_versions() -> dict[str, str]:
    """Versions of the process that writes the report (torch by its metadata: never imported
    here)."""
    out = {"lcw-sweep": __version__, "python": platform.python_version()}
    for dist in ("torch", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["platform"] = platform.platform()
    return out


def read_run_info(store: Store, study_id: int, *, limit: int = RUN_INFO_LIMIT) -> RunInfo:
    """Distinct hardware and versions in the run_info of the study's finished trials (the first
    `limit` of each finished status, in expansion order), each with its trial count."""
    hardware: Counter[tuple[tuple[str, Any], ...]] = Counter()
    versions: Counter[tuple[tuple[str, Any], ...]] = Counter()
    read = finished = 0
    for status in (s for s in TRIAL_STATUSES if s in TRIAL_RESULT):
        remaining = limit - read
        page = store.list_trials(study_id, limit=max(1, remaining), status=status)
        finished += page.count
        for trial in page.data[: max(0, remaining)]:
            info = store.get_trial(trial.id).run_info or {}
            read += 1
            hardware[tuple((k, _plain(info.get(k))) for k in _HARDWARE_KEYS)] += 1
            recorded = info.get("versions") or {}
            versions[tuple((k, _plain(recorded.get(k))) for k in _VERSION_KEYS)] += 1
    return RunInfo(
        hardware=[RunInfoCount(dict(k), n) for k, n in hardware.most_common()],
        versions=[RunInfoCount(dict(k), n) for k, n in versions.most_common()],
        read=read,
        finished=finished,
    )


def _plain(value: Any) -> Any:
    """A run_info value fit for a table cell and a hash key (nested values as text)."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def gather(store: Store, study_id: int) -> ReportData:
    """The report's data for `study_id` (NotFoundError when there is no such study)."""
    study = store.get_study(study_id)
    summary = store.summary(study_id)
    cells: list[Cell] = cells_of(summary)
    return ReportData(
        study=study,
        summary=summary,
        cells=[cell_data(store, study_id, summary, cell) for cell in cells],
        generator=generator_versions(),
        run_info=read_run_info(store, study_id),
    )


__all__ = [
    "RUN_INFO_LIMIT",
    "ReportData",
    "RunInfo",
    "RunInfoCount",
    "gather",
    "generator_versions",
    "read_run_info",
]
