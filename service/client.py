"""A small Python client for the lcw-sweep REST API (httpx), used by the CLI and by notebooks.

Every call returns the API's own pydantic models (``service.schemas``: ``StudyPublic``,
``SummaryPublic``...), and every failure is one :class:`ClientError` whose ``str()`` is a single
line fit for a terminal (``422 methods[2]: 'foo' is not one of 'plain', ...``)::

    from service.client import Client

    with Client("http://127.0.0.1:8000", token="...") as api:
        study = api.submit("examples/quick-demo.yaml")
        api.wait(study.id)
        frame = api.results(study.id, as_dataframe=True)  # one row per cell (pandas)
        pairs = api.results(study.id, per="comparison")  # p, p_adjusted, star...

It imports neither torch nor the database layer: only httpx, pyyaml and the response schemas.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

from service import vocabulary
from service.client_errors import (
    APIError,
    ClientError,
    ServerUnreachableError,
    StudyTimeoutError,
    api_error,
    describe_detail,
    reason_of,
)
from service.documents import DocumentError, read_spec_file
from service.schemas import (
    HealthPublic,
    StudiesPublic,
    StudyExtended,
    StudyPublic,
    StudyRetried,
    SummaryPublic,
    TrialDetailPublic,
    TrialPublic,
    TrialsPublic,
)
from service.summary import CellSummary, Comparison, cell_rows, comparison_rows, star
from service.vocabulary import STUDY_STATUSES, TRIAL_STATUSES

DEFAULT_URL = "http://127.0.0.1:8000"
STUDY_FINISHED = tuple(s for s in STUDY_STATUSES if s in vocabulary.STUDY_FINISHED)
# Trial states in the order a study moves through them (Progress's fields, less `total`).
TRIAL_STATES = TRIAL_STATUSES

Per = Literal["cell", "comparison", "trial", "epoch"]
ExportFormat = Literal["csv", "json"]
ReportFormat = Literal["zip", "html"]
# Seconds a report may take to build (its figures are drawn on the server).
REPORT_TIMEOUT_S = 300.0
# Left out of result rows: the config (its fields are columns already) and the trial's index
# in the study's expansion; the trial id is the one trial number (pages, API, CLI, exports).
TRIAL_ROW_EXCLUDE = frozenset({"config", "index"})
# Seconds one poll of `wait` may take: a server that stops answering is noticed this soon.
POLL_TIMEOUT_S = 5.0


def normalize_url(url: str) -> str:
    """The server's base URL: without a scheme, http:// ("127.0.0.1:8000" means
    "http://127.0.0.1:8000"); only http and https are allowed."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https") or not url.split("://", 1)[1]:
        raise ClientError(
            f"--url {url!r}: give the server as http(s)://HOST:PORT (e.g. {DEFAULT_URL})"
        )
    return url


def _spec_body(spec: dict[str, Any] | str | Path) -> tuple[bytes, str]:
    """A spec as (body, content type): dicts go as JSON, files by their suffix (decoded here
    first, so that a syntax error names the file, line and column), text as YAML."""
    if isinstance(spec, dict):
        return json.dumps(spec).encode(), "application/json"
    if isinstance(spec, Path) or ("\n" not in spec and Path(spec).is_file()):
        try:
            text, _data, media_type = read_spec_file(Path(spec))
        except DocumentError as exc:
            raise ClientError(str(exc)) from None
        return text.encode(), media_type
    return spec.encode(), "application/yaml"


def _dataframe(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ModuleNotFoundError as exc:
        raise ClientError(
            "as_dataframe=True needs pandas, which lcw-sweep installs only with its "
            "'dataframe' extra: pip install 'lcw-sweep[dataframe]' (or leave as_dataframe "
            "out: results() then returns a list of dicts)"
        ) from exc
    return pd.DataFrame.from_records(rows)


class Client:
    """The lcw-sweep REST API at `url`; `token` is sent as a bearer token (writes need it
    when the server sets LCW_API_TOKENS). Use as a context manager or call ``close()``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = normalize_url(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._has_token = bool(token)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(self.url, "timed out") from exc
        except httpx.TransportError as exc:  # refused, unknown host, dropped connection
            raise ServerUnreachableError(self.url, reason_of(exc)) from exc
        if response.is_error:
            raise api_error(response, has_token=self._has_token)
        return response

    # -- studies ---------------------------------------------------------------------------

    def health(self) -> HealthPublic:
        """GET /healthz."""
        return HealthPublic.model_validate(self._request("GET", "/healthz").json())

    def submit(
        self,
        spec: dict[str, Any] | str | Path,
        *,
        idempotency_key: str | None = None,
        retries: int = 2,
    ) -> StudyPublic:
        """Submit a spec: a dict (sent as JSON), a path to a YAML/JSON file, or YAML text.

        The request carries an Idempotency-Key (a fresh one unless given), so the retries on a
        dropped connection never create the study twice.
        """
        body, content_type = _spec_body(spec)
        headers = {
            "Content-Type": content_type,
            "Idempotency-Key": idempotency_key or f"lcw-client-{uuid.uuid4()}",
        }
        for attempt in range(retries + 1):
            try:
                response = self._request("POST", "/api/studies", content=body, headers=headers)
                return StudyPublic.model_validate(response.json())
            except ServerUnreachableError:
                if attempt == retries:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def study(self, study_id: int, *, timeout: float | None = None) -> StudyPublic:
        """GET /api/studies/{id}: status, spec and progress counts (`timeout`: seconds for this
        call, default the client's)."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        response = self._request("GET", f"/api/studies/{study_id}", **extra)
        return StudyPublic.model_validate(response.json())

    def studies(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        owner: str | None = None,
    ) -> StudiesPublic:
        """GET /api/studies, newest first (optionally of one status, of one owner)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if owner:
            params["owner"] = owner
        return StudiesPublic.model_validate(
            self._request("GET", "/api/studies", params=params).json()
        )

    def trials(
        self, study_id: int, *, limit: int = 100, offset: int = 0, **filters: Any
    ) -> TrialsPublic:
        """GET /api/studies/{id}/trials (filters: method, depth, width, activation, status)."""
        params = {"limit": limit, "offset": offset}
        params.update({k: v for k, v in filters.items() if v is not None})
        return TrialsPublic.model_validate(
            self._request("GET", f"/api/studies/{study_id}/trials", params=params).json()
        )

    def iter_trials(self, study_id: int, *, page: int = 1000) -> Iterator[TrialPublic]:
        """Every trial of a study in expansion order, fetched page by page."""
        offset = 0
        while True:
            batch = self.trials(study_id, limit=page, offset=offset)
            yield from batch.data
            offset += len(batch.data)
            if not batch.data or offset >= batch.count:
                return

    def trial(self, trial_id: int) -> TrialDetailPublic:
        """GET /api/trials/{id}: one trial with its per-epoch metrics."""
        return TrialDetailPublic.model_validate(
            self._request("GET", f"/api/trials/{trial_id}").json()
        )

    def summary(self, study_id: int) -> SummaryPublic:
        """GET /api/studies/{id}/summary: best LR per cell, CIs, paired comparisons."""
        return SummaryPublic.model_validate(
            self._request("GET", f"/api/studies/{study_id}/summary").json()
        )

    def cancel(self, study_id: int) -> StudyPublic:
        """POST /api/studies/{id}/cancel."""
        return StudyPublic.model_validate(
            self._request("POST", f"/api/studies/{study_id}/cancel").json()
        )

    def extend(
        self, study_id: int, *, idempotency_key: str | None = None, **changes: Any
    ) -> StudyExtended:
        """POST /api/studies/{id}/extend: add to a study's axes (``seeds`` is the new total;
        ``learning_rates``, ``methods``, ... list values to add; ``lr_search={"trials_per_cell":
        N}``). Only the new trials run; ``added_trials`` says how many there are.

        Example: ``client.extend(3, seeds=6, learning_rates=[0.3])``"""
        headers = {"Idempotency-Key": idempotency_key or f"lcw-client-{uuid.uuid4()}"}
        response = self._request(
            "POST", f"/api/studies/{study_id}/extend", json=changes, headers=headers
        )
        return StudyExtended.model_validate(response.json())

    def retry(self, study_id: int) -> StudyRetried:
        """POST /api/studies/{id}/retry: requeue failed and cancelled trials (a cancelled
        study resumes) with a fresh attempt budget."""
        return StudyRetried.model_validate(
            self._request("POST", f"/api/studies/{study_id}/retry").json()
        )

    def first_error(self, study_id: int) -> TrialPublic | None:
        """The study's first failed trial (its ``error`` says why), None when none failed."""
        failed = self.trials(study_id, limit=1, status="failed").data
        return failed[0] if failed else None

    def delete(self, study_id: int) -> None:
        """DELETE /api/studies/{id} (finished or cancelled studies only)."""
        self._request("DELETE", f"/api/studies/{study_id}")

    def export(self, study_id: int, *, format: ExportFormat = "csv") -> str:
        """GET /api/studies/{id}/export: one row per trial and epoch, as CSV or JSON text."""
        return self._request(
            "GET", f"/api/studies/{study_id}/export", params={"format": format}
        ).text

    def results(self, study_id: int, *, per: Per = "cell", as_dataframe: bool = False) -> Any:
        """A study's results as rows (list of dicts), or a pandas DataFrame.

        per="cell": one row per method x depth x width x activation at its best setting (the
        summary's cells); "comparison": one row per paired comparison (raw, adjusted and
        signed-rank p, the star by the adjusted p); "trial": one row per trial with its final
        metrics; "epoch": one row per trial and epoch (the export, with the trial's config
        columns). Trials are numbered by their id (``id`` / ``trial_id``) only.
        """
        rows: list[dict[str, Any]]
        if per == "cell":
            rows = cell_rows(self.summary(study_id))
        elif per == "comparison":
            rows = comparison_rows(self.summary(study_id))
        elif per == "trial":
            rows = [
                t.model_dump(mode="json", exclude=set(TRIAL_ROW_EXCLUDE))
                for t in self.iter_trials(study_id)
            ]
        elif per == "epoch":
            rows = [
                {k: v for k, v in row.items() if k not in TRIAL_ROW_EXCLUDE}
                for row in json.loads(self.export(study_id, format="json"))
            ]
        else:
            raise ValueError(f"per must be 'cell', 'comparison', 'trial' or 'epoch', got {per!r}")
        return _dataframe(rows) if as_dataframe else rows

    def wait(
        self,
        study_id: int,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_progress: Callable[[StudyPublic], None] | None = None,
        on_outage: Callable[[ServerUnreachableError | None], None] | None = None,
        outage_s: float = 60.0,
    ) -> StudyPublic:
        """Poll a study until it is completed, failed or cancelled; returns it.

        `on_progress` sees every poll. A server that stops answering (each poll gives up after
        POLL_TIMEOUT_S) is waited out for `outage_s`; `on_outage` hears when it stops answering
        (the error) and when it answers again (None). `timeout_s` bounds the whole wait
        (StudyTimeoutError). Either error names the study and the command that follows it on.
        """
        start = time.monotonic()
        down_since: float | None = None
        follow = f"lcw-sweep status {study_id} --wait"
        while True:
            try:
                study = self.study(study_id, timeout=POLL_TIMEOUT_S)
            except ServerUnreachableError as exc:
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    if on_outage is not None:
                        on_outage(exc)
                if now - down_since > outage_s:
                    raise ServerUnreachableError(
                        self.url,
                        f"{exc.reason} for {now - down_since:.0f} s; study {study_id} is stored "
                        f"on the server: follow it again with `{follow}`",
                    ) from exc
            else:
                if down_since is not None:
                    down_since = None
                    if on_outage is not None:
                        on_outage(None)
                if on_progress is not None:
                    on_progress(study)
                if study.status in STUDY_FINISHED:
                    return study
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise StudyTimeoutError(
                    f"study {study_id} did not finish within {timeout_s:g} s "
                    f"(it keeps running: {follow})"
                )
            time.sleep(poll_s)

    def report(self, study_id: int, *, format: ReportFormat = "zip") -> bytes:
        """GET /api/studies/{id}/report: the offline report as a zip of report.html, report.md
        and figures/*.png, or (format="html") the single self-contained HTML file."""
        return self._request(
            "GET",
            f"/api/studies/{study_id}/report",
            params={"format": format},
            timeout=REPORT_TIMEOUT_S,
        ).content


def load_spec_file(path: Path) -> dict[str, Any]:
    """Read a YAML/JSON spec file into a dict (no validation: the server does that)."""
    try:
        _text, data, _media_type = read_spec_file(path)
    except DocumentError as exc:
        raise ClientError(str(exc)) from None
    if not isinstance(data, dict):
        raise ClientError(f"{path}: a spec must be a mapping, got {type(data).__name__}")
    return data


__all__ = [
    "DEFAULT_URL",
    "STUDY_FINISHED",
    "TRIAL_STATES",
    "APIError",
    "CellSummary",
    "Client",
    "ClientError",
    "Comparison",
    "ServerUnreachableError",
    "StudyTimeoutError",
    "cell_rows",
    "comparison_rows",
    "describe_detail",
    "load_spec_file",
    "normalize_url",
    "star",
]
