"""The webhook outbox (``study_notifications``): what the store writes when a study finishes,
and the calls ``service.notify``'s deliverer makes to take, and settle, what is due.

*Written with the finish.* ``_notify_finished`` runs in the transaction that moves a study to
completed, failed or cancelled (``Studies._refresh_studies``, ``cancel_study``), so the row
exists exactly when the finish committed: a dispatcher that finishes a study's last trial
writes one more row and never waits for an HTTP call. Every finish writes one, with the
study's own ``notify.webhook`` or no URL (the deliverer then uses ``LCW_WEBHOOK_URL``, or
marks it ``skipped`` when that is unset too): the store needs no webhook setting, and the one
process that sends decides where. A study that runs again (extended, retried) and finishes
again is told again.

*Taken under a lease.* ``claim_notifications`` takes due rows and moves their
``next_attempt_at`` a lease ahead in one write transaction (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``, so concurrent deliverers take different rows; SQLite: the write lock), so two API
processes never send one row at once; a deliverer that dies mid-send leaves its rows to be
taken again when the lease ends. Delivery is therefore at least once.

*Settled by attempt.* A failure is recorded only by the attempt that still owns the row
(``attempts`` unchanged since its claim); a success is recorded whoever sent it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.models import Study, StudyNotification, Trial, utcnow
from service.records import Progress
from service.store.base import StoreBase

NOTIFICATION_STATUSES = ("pending", "delivered", "gave_up", "skipped")


@dataclass(frozen=True, slots=True)
class Notification:
    """One outbox row (``StudyNotification``)."""

    id: int
    study_id: int
    url: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _record(row: StudyNotification) -> Notification:
    return Notification(
        id=row.id,
        study_id=row.study_id,
        url=row.url,
        payload=dict(row.payload),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def _webhook(spec: Any) -> str | None:
    notify = spec.get("notify") if isinstance(spec, dict) else None
    url = notify.get("webhook") if isinstance(notify, dict) else None
    return url if isinstance(url, str) and url else None


class Notifications(StoreBase):
    """The outbox rows: written with a study's finish, claimed and settled by the deliverer."""

    def _notify_finished(self, s: Session, study: Study, now: datetime) -> None:
        """Queue the webhook call for `study`, which finished at `now` (its status is final),
        in the caller's transaction. The payload holds everything but the URLs, which the
        deliverer adds from its ``LCW_PUBLIC_URL``."""
        progress = Progress()
        for status, n in s.execute(
            select(Trial.status, func.count())
            .where(Trial.study_id == study.id)
            .group_by(Trial.status)
        ):
            progress.count(status, n)
        payload = {
            "event": "study.finished",
            "study_id": study.id,
            "name": study.name,
            "owner": study.owner,
            "status": study.status,
            "progress": asdict(progress),
            "finished_at": now.isoformat(),
        }
        s.add(
            StudyNotification(
                study_id=study.id,
                url=_webhook(study.spec),
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )

    def notifications_due(self) -> bool:
        """Whether a pending row is due now (a read, no lock: the deliverer's idle poll)."""
        with self._read() as s:
            due = s.scalar(
                select(StudyNotification.id)
                .where(
                    StudyNotification.status == "pending",
                    StudyNotification.next_attempt_at <= utcnow(),
                )
                .limit(1)
            )
            return due is not None

    def claim_notifications(self, *, limit: int, lease_s: float) -> list[Notification]:
        """Take up to `limit` due rows, oldest first: each one's ``attempts`` + 1 and its
        ``next_attempt_at`` `lease_s` ahead (no other deliverer takes it until then)."""
        now = utcnow()
        with self._write() as s:
            rows = list(
                s.scalars(
                    select(StudyNotification)
                    .where(
                        StudyNotification.status == "pending",
                        StudyNotification.next_attempt_at <= now,
                    )
                    .order_by(StudyNotification.next_attempt_at, StudyNotification.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + timedelta(seconds=lease_s)
            s.flush()
            return [_record(row) for row in rows]

    def _settle(self, nid: int, attempt: int | None, **values: Any) -> bool:
        where = [StudyNotification.id == nid, StudyNotification.status == "pending"]
        if attempt is not None:
            where.append(StudyNotification.attempts == attempt)
        with self._write() as s:
            done = s.execute(
                update(StudyNotification)
                .where(*where)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(done, "rowcount", 0))

    def notification_delivered(self, nid: int) -> bool:
        """Mark the row delivered (whichever attempt delivered it); False when it was not
        pending any more."""
        return self._settle(nid, None, status="delivered", delivered_at=utcnow(), last_error=None)

    def notification_failed(
        self, nid: int, attempt: int, error: str, *, retry_at: datetime | None
    ) -> bool:
        """Record attempt `attempt`'s `error`: due again at `retry_at`, or ``gave_up`` when
        None. False (nothing changed) when a later claim owns the row or it is settled."""
        if retry_at is None:
            return self._settle(nid, attempt, status="gave_up", last_error=error[:2000])
        return self._settle(nid, attempt, next_attempt_at=retry_at, last_error=error[:2000])

    def notification_skipped(self, nid: int, attempt: int, reason: str) -> bool:
        """Settle a row nobody is to be told about (no URL configured): ``skipped``."""
        return self._settle(nid, attempt, status="skipped", last_error=reason[:2000])

    def list_notifications(self, study_id: int | None = None) -> list[Notification]:
        """The outbox rows, oldest first (of one study when `study_id` is given)."""
        with self._read() as s:
            query = select(StudyNotification).order_by(StudyNotification.id)
            if study_id is not None:
                query = query.where(StudyNotification.study_id == study_id)
            return [_record(row) for row in s.scalars(query)]


__all__ = ["NOTIFICATION_STATUSES", "Notification", "Notifications"]
