"""Webhooks: the deliverer that POSTs the outbox (``study_notifications``) when studies finish.

The store writes one outbox row in the transaction that finishes a study (completed, failed,
cancelled; ``service.store.notifications``), so no finish is lost and the dispatcher never
waits on HTTP. ``Notifier`` is a thread of the API process (``service.main`` starts it with
the app and stops it on shutdown); several API processes on one database share the outbox,
each row taken under a lease by one of them at a time. ``lcw-sweep worker`` processes do not
send: webhooks go out while an API process runs.

One call: ``POST <url>`` with the JSON body (the row's payload plus ``summary_url`` and
``page_url`` under ``LCW_PUBLIC_URL``) and the headers

* ``X-LCW-Delivery``: the row id, the same on every retry (delivery is at least once: a
  receiver deduplicates on it);
* ``X-LCW-Timestamp``: Unix seconds when this attempt was signed;
* ``X-LCW-Signature: sha256=<hex>`` when ``LCW_WEBHOOK_SECRET`` is set: the HMAC-SHA256 of
  ``b"<timestamp>." + body`` with the secret. The timestamp is signed with the body so that a
  captured call cannot be replayed later with a fresh timestamp; a receiver recomputes it over
  the raw body, compares in constant time and refuses old timestamps (``verify_signature``).

A 2xx answer delivers it. Anything else (another status, a refused connection, a timeout) is
retried after a backoff, 1 s doubling up to 5 min, until ``LCW_WEBHOOK_RETRY_S`` (1 hour) after
the finish (the last try at that deadline); then the row is ``gave_up`` with the last error.
Redirects are not followed. A row with no URL (the spec named none and ``LCW_WEBHOOK_URL`` is
unset) is ``skipped``. Calls go out one at a time: a receiver that hangs delays the others by
at most ``LCW_WEBHOOK_TIMEOUT_S`` per call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from lcw import __version__
from service.models import utcnow
from service.store.notifications import Notification

if TYPE_CHECKING:
    from service.config import Settings
    from service.store import Store

log = logging.getLogger("service.notify")

SIGNATURE_HEADER = "X-LCW-Signature"
TIMESTAMP_HEADER = "X-LCW-Timestamp"
DELIVERY_HEADER = "X-LCW-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-LCW-Signature`` value: ``sha256=`` and the hex HMAC of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver checks: `signature` is ``sign(secret, timestamp, body)`` over the raw
    body, and `timestamp` is within `tolerance_s` of `now` (default: the clock)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_s(attempt: int, *, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """The wait after failed attempt `attempt` (1-based): `base_s` doubling, at most `cap_s`."""
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 30)))


class Notifier:
    """Delivers due outbox rows from a thread (``start``/``stop``), or once (``run_once``)."""

    def __init__(
        self,
        store: Store,
        *,
        default_url: str | None = None,
        secret: str | None = None,
        retry_s: float = 3600.0,
        public_url: str = "http://127.0.0.1:8000",
        timeout_s: float = 5.0,
        poll_s: float = 1.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        batch: int = 10,
    ) -> None:
        self.store = store
        self.default_url = default_url
        self.secret = secret or None
        self.retry_s = retry_s
        self.public_url = public_url.rstrip("/")
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.batch = batch
        # Claimed rows wait this long before another deliverer may take them: the batch's
        # calls at their timeout, and a margin.
        self.lease_s = batch * timeout_s + 30.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            headers={"User-Agent": f"lcw-sweep/{__version__}"},
        )
        self._last_problem = ""

    @classmethod
    def from_settings(cls, store: Store, settings: Settings, **options: Any) -> Notifier:
        """A notifier configured by the ``LCW_WEBHOOK_*`` and ``LCW_PUBLIC_URL`` settings."""
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        return cls(
            store,
            default_url=settings.webhook_url,
            secret=secret,
            retry_s=settings.webhook_retry_s,
            public_url=settings.public_url,
            timeout_s=settings.webhook_timeout_s,
            **options,
        )

    def start(self) -> None:
        """Deliver in a daemon thread until ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lcw-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread (after the call in flight, if any) and close the HTTP client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0 if timeout_s is None else timeout_s)
            self._thread = None
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                self._last_problem = ""
            except Exception as exc:  # the database is away, the table not there yet: retry
                problem = f"{type(exc).__name__}: {exc}"
                if problem != self._last_problem:  # once per distinct problem, not each poll
                    log.warning("webhook deliveries paused: %s", problem)
                    self._last_problem = problem
                sent = 0
            if not sent:
                self._stop.wait(self.poll_s)

    def run_once(self) -> int:
        """Take the rows due now and try each once; returns how many were taken."""
        if not self.store.notifications_due():
            return 0
        claimed = self.store.claim_notifications(limit=self.batch, lease_s=self.lease_s)
        for n in claimed:
            if self._stop.is_set():
                break  # the rest are taken again when their lease ends
            self.deliver(n)
        return len(claimed)

    def body(self, n: Notification) -> bytes:
        """The JSON body of `n`: its payload and the URLs of its study under ``public_url``."""
        sid = n.study_id
        data = {
            **n.payload,
            "summary_url": f"{self.public_url}/api/studies/{sid}/summary",
            "page_url": f"{self.public_url}/studies/{sid}",
        }
        return json.dumps(data, separators=(",", ":")).encode()

    def headers(self, n: Notification, body: bytes, *, now: float | None = None) -> dict[str, str]:
        """The call's headers: JSON, the delivery id, the timestamp and, with a secret, the
        signature."""
        timestamp = str(int(time.time() if now is None else now))
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: str(n.id),
            TIMESTAMP_HEADER: timestamp,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        return headers

    def deliver(self, n: Notification) -> str:
        """POST claimed row `n` once and record the outcome; returns the row's new status
        (pending again when a retry is scheduled)."""
        url = n.url or self.default_url
        if url is None:
            self.store.notification_skipped(
                n.id, n.attempts, "no webhook URL: the spec names none and LCW_WEBHOOK_URL is unset"
            )
            return "skipped"
        body = self.body(n)
        try:
            response = self._client.post(url, content=body, headers=self.headers(n, body))
            if 200 <= response.status_code < 300:
                self.store.notification_delivered(n.id)
                return "delivered"
            error = f"HTTP {response.status_code}: {response.text[:200]}".rstrip(": ")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retry_at = self._retry_at(n, utcnow())
        self.store.notification_failed(n.id, n.attempts, error, retry_at=retry_at)
        if retry_at is None:
            log.warning(
                "webhook for study %s gave up after %d attempts: %s", n.study_id, n.attempts, error
            )
            return "gave_up"
        return "pending"

    def _retry_at(self, n: Notification, now: datetime) -> datetime | None:
        """When to try `n` again after its failed attempt: after the backoff, the last time at
        the deadline (``retry_s`` after the finish); None once the deadline has passed."""
        deadline = n.created_at + timedelta(seconds=self.retry_s)
        if now >= deadline:
            return None
        wait = backoff_s(n.attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
        return min(now + timedelta(seconds=wait), deadline)


__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Notifier",
    "backoff_s",
    "sign",
    "verify_signature",
]
