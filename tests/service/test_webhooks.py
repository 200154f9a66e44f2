"""Webhooks of finished studies against a real HTTP server on 127.0.0.1, on SQLite and
PostgreSQL: the outbox row written with the finish, delivery with a valid signature, retries
with a backoff, giving up after the deadline, the server default URL, and bad URLs refused.

The deliverer runs synchronously here (``Notifier.run_once``) except in the API test, which
checks the app's own background thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from svc_helpers import SMALL, make_study, result

from service.config import Settings
from service.models import utcnow
from service.notify import Notifier, backoff_s, sign, verify_signature
from service.spec import plan_study
from service.store import Store
from service.store.notifications import Notification

OWNER = "test-worker"
SECRET = "hook-secret"


class Receiver:
    """An HTTP server in a thread: records every POST; answers `fail_first` of them with
    `fail_status`, then 204."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 500) -> None:
        self.calls: list[tuple[float, dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls.append((time.monotonic(), dict(self.headers.items()), body))
                failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(fail_status if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def build(**options: Any) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield build
    for r in made:
        r.close()


def _run_all(store: Store) -> None:
    """Claim and complete every pending trial."""
    while claimed := store.claim_trials(OWNER, limit=50, lease_seconds=60):
        for c in claimed:
            store.complete_trial(
                OWNER, c.id, status="completed", result=result(0.9, 0.9), run_info={}
            )


def _notifier(store: Store, **options: Any) -> Notifier:
    options = {"backoff_base_s": 0.05, "timeout_s": 2.0, **options}
    return Notifier(store, **options)


def _settle(notifier: Notifier, store: Store, study_id: int, limit_s: float = 5.0) -> Notification:
    """Run the deliverer until the study's notification is no longer pending."""
    deadline = time.monotonic() + limit_s
    while True:
        notifier.run_once()
        (row,) = store.list_notifications(study_id)
        if row.status != "pending" or time.monotonic() > deadline:
            return row
        time.sleep(0.01)


def test_completed_study_is_posted_signed(store: Store, receivers: Callable[..., Receiver]) -> None:
    hook = receivers()
    sid = make_study(store, notify={"webhook": hook.url})
    claimed = store.claim_trials(OWNER, limit=50, lease_seconds=60)
    for c in claimed[:-1]:
        store.complete_trial(OWNER, c.id, status="completed", result=result(0.9, 0.9), run_info={})
    assert store.list_notifications(sid) == []  # not finished yet
    store.complete_trial(OWNER, claimed[-1].id, status="diverged", result={}, run_info={})
    (row,) = store.list_notifications(sid)  # written with the last trial's completion
    assert (row.status, row.url, row.attempts) == ("pending", hook.url, 0)

    notifier = _notifier(store, secret=SECRET, public_url="https://lcw.example.org/")
    try:
        assert notifier.run_once() == 1
        assert notifier.run_once() == 0  # nothing left
    finally:
        notifier.stop()
    (_, headers, body), *more = hook.calls
    assert more == []
    data = json.loads(body)
    assert data == {
        "event": "study.finished",
        "study_id": sid,
        "name": "small",
        "owner": None,
        "status": "completed",
        "progress": {"total": 4, "pending": 0, "running": 0, "completed": 3, "diverged": 1,
                     "stopped_early": 0, "failed": 0, "cancelled": 0},
        "finished_at": store.get_study(sid).finished_at.isoformat(),  # type: ignore[union-attr]
        "summary_url": f"https://lcw.example.org/api/studies/{sid}/summary",
        "page_url": f"https://lcw.example.org/studies/{sid}",
    }  # fmt: skip
    assert headers["Content-Type"] == "application/json"
    assert headers["X-LCW-Delivery"] == str(row.id)
    timestamp = headers["X-LCW-Timestamp"]
    assert headers["X-LCW-Signature"] == sign(SECRET, timestamp, body)
    assert verify_signature(SECRET, body, timestamp, headers["X-LCW-Signature"])
    assert not verify_signature("other", body, timestamp, headers["X-LCW-Signature"])
    assert not verify_signature(SECRET, body + b" ", timestamp, headers["X-LCW-Signature"])
    (row,) = store.list_notifications(sid)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None


def test_unsigned_without_a_secret(store: Store, receivers: Callable[..., Receiver]) -> None:
    hook = receivers()
    sid = make_study(store, notify={"webhook": hook.url})
    store.cancel_study(sid)
    notifier = _notifier(store)
    try:
        assert _settle(notifier, store, sid).status == "delivered"
    finally:
        notifier.stop()
    headers = hook.calls[0][1]
    assert "X-LCW-Signature" not in headers and "X-LCW-Timestamp" in headers


def test_failing_receiver_is_retried_with_backoff(
    store: Store, receivers: Callable[..., Receiver]
) -> None:
    hook = receivers(fail_first=2, fail_status=503)
    sid = make_study(store, notify={"webhook": hook.url})
    _run_all(store)
    notifier = _notifier(store, backoff_base_s=0.2, retry_s=30)
    try:
        assert notifier.run_once() == 1
        (row,) = store.list_notifications(sid)
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 503")
        assert notifier.run_once() == 0  # not due during the backoff
        row = _settle(notifier, store, sid)
    finally:
        notifier.stop()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    times = [t for t, _, _ in hook.calls]
    assert len(times) == 3
    # Waits of 0.2 s, then 0.4 s (the backoff doubles).
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4
    assert len({headers["X-LCW-Delivery"] for _, headers, _ in hook.calls}) == 1
    assert len({body for _, _, body in hook.calls}) == 1  # the same body every time


def test_receiver_that_always_fails_gives_up_after_the_deadline(
    store: Store, receivers: Callable[..., Receiver]
) -> None:
    hook = receivers(fail_first=1000)
    sid = make_study(store, notify={"webhook": hook.url})
    _run_all(store)
    notifier = _notifier(store, retry_s=0.5)
    try:
        row = _settle(notifier, store, sid)
    finally:
        notifier.stop()
    assert row.status == "gave_up" and row.last_error == "HTTP 500"
    # Tries after 0.05, 0.1, 0.2 s and a last one at the deadline (fewer on a loaded machine),
    # and gave up only once the deadline had passed.
    assert row.attempts == len(hook.calls) >= 2
    assert utcnow() >= row.created_at + timedelta(seconds=0.5)
    assert row.delivered_at is None


def test_unreachable_receiver_gives_up_with_the_connection_error(store: Store) -> None:
    closed = Receiver()
    closed.close()  # nothing listens on its port any more
    sid = make_study(store, notify={"webhook": closed.url})
    store.cancel_study(sid)
    notifier = _notifier(store, retry_s=0.2)
    try:
        row = _settle(notifier, store, sid)
    finally:
        notifier.stop()
    assert row.status == "gave_up" and (row.last_error or "").startswith("ConnectError")


def test_cancel_and_fail_are_notified(store: Store) -> None:
    parsed, trials = plan_study(SMALL, max_trials=100)
    cancelled = store.create_study(parsed, trials, owner="alice")[0].id
    store.claim_trials(OWNER, limit=1, lease_seconds=60)
    store.cancel_study(cancelled)
    failed = make_study(store, max_retries=0)
    while claimed := store.claim_trials(OWNER, limit=50, lease_seconds=60):
        for c in claimed:
            if c.study_id == failed:
                store.fail_trial_attempt(OWNER, c.id, error="boom")
    rows = {n.study_id: n for n in store.list_notifications()}
    assert rows[cancelled].payload["status"] == "cancelled"
    assert rows[cancelled].payload["owner"] == "alice"
    assert rows[cancelled].payload["progress"]["cancelled"] == 4
    assert rows[failed].payload["status"] == "failed"
    assert rows[failed].payload["progress"]["failed"] == 4
    # A cancelled study resumed and finished again is told again; nothing while it runs.
    store.retry_study(cancelled)
    assert len(store.list_notifications(cancelled)) == 1
    _run_all(store)
    first, second = store.list_notifications(cancelled)
    assert (first.payload["status"], second.payload["status"]) == ("cancelled", "completed")


def test_server_default_url_or_skipped(store: Store, receivers: Callable[..., Receiver]) -> None:
    hook = receivers()
    own = receivers()
    plain = make_study(store)
    store.cancel_study(plain)
    (row,) = store.list_notifications(plain)
    assert row.url is None  # the deliverer decides: LCW_WEBHOOK_URL or nobody
    nobody = _notifier(store)
    try:
        assert _settle(nobody, store, plain).status == "skipped"
    finally:
        nobody.stop()

    defaulted = make_study(store)
    explicit = make_study(store, notify={"webhook": own.url})
    store.cancel_study(defaulted)
    store.cancel_study(explicit)
    server = _notifier(store, default_url=hook.url)
    try:
        assert _settle(server, store, defaulted).status == "delivered"
        assert _settle(server, store, explicit).status == "delivered"
    finally:
        server.stop()
    assert [json.loads(b)["study_id"] for _, _, b in hook.calls] == [defaulted]
    assert [json.loads(b)["study_id"] for _, _, b in own.calls] == [explicit]
    assert store.list_notifications(plain)[0].status == "skipped"  # not sent later either


def test_two_deliverers_never_take_one_row(store: Store) -> None:
    for _ in range(6):
        store.cancel_study(make_study(store))
    taken: list[list[int]] = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        barrier.wait()
        taken.append([n.id for n in store.claim_notifications(limit=4, lease_s=60)])

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in taken for i in batch]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    assert store.claim_notifications(limit=10, lease_s=60) == []  # all leased


def test_a_stale_attempt_cannot_reschedule_a_newer_claim(store: Store) -> None:
    store.cancel_study(make_study(store))
    (first,) = store.claim_notifications(limit=1, lease_s=0)  # the lease ends at once
    (second,) = store.claim_notifications(limit=1, lease_s=60)
    assert (first.attempts, second.attempts) == (1, 2)
    assert not store.notification_failed(first.id, first.attempts, "late", retry_at=None)
    assert store.notification_delivered(first.id)  # a success counts, whoever sent it
    assert not store.notification_failed(second.id, second.attempts, "x", retry_at=None)
    assert store.list_notifications()[0].status == "delivered"


def test_backoff_and_signature_helpers() -> None:
    assert [backoff_s(a) for a in (1, 2, 3, 9, 10, 100)] == [1, 2, 4, 256, 300, 300]
    body = b'{"a":1}'
    signature = sign("k", "1000", body)
    assert verify_signature("k", body, "1000", signature, now=1100)
    assert not verify_signature("k", body, "1000", signature, now=2000)  # too old
    assert not verify_signature("k", body, "1001", signature, now=1100)  # timestamp is signed
    assert not verify_signature("k", body, "soon", signature, now=1100)


def test_the_api_process_delivers_in_the_background(
    make_client: Callable[..., TestClient], receivers: Callable[..., Receiver]
) -> None:
    hook = receivers()
    client = make_client(
        webhook_url=hook.url, webhook_secret=SECRET, public_url="http://testserver"
    )
    r = client.post("/api/studies", json=SMALL)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    _run_all(client.app.state.store)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20  # the thread polls every second
    while not hook.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    (_, headers, body), *_ = hook.calls
    assert verify_signature(SECRET, body, headers["X-LCW-Timestamp"], headers["X-LCW-Signature"])
    data = json.loads(body)
    assert (data["study_id"], data["status"]) == (sid, "completed")
    summary = client.get(data["summary_url"].removeprefix("http://testserver"))
    assert summary.status_code == 200 and summary.json()["study_id"] == sid


def test_webhook_url_setting_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCW_WEBHOOK_URL", "ftp://x")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "LCW_WEBHOOK_URL: 'ftp://x' is not an http(s) URL" in str(info.value)
    monkeypatch.setenv("LCW_WEBHOOK_URL", "")
    assert Settings().webhook_url is None
    monkeypatch.setenv("LCW_PUBLIC_URL", "lcw.example.org")
    with pytest.raises(ValidationError, match="LCW_PUBLIC_URL"):
        Settings()
    monkeypatch.setenv("LCW_PUBLIC_URL", "https://lcw.example.org/")
    assert Settings().public_url == "https://lcw.example.org"


def test_spec_notify_webhook_must_be_http(client: TestClient) -> None:
    r = client.post("/api/studies", json={**SMALL, "notify": {"webhook": "ftp://x"}})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"][-2:] == ["notify", "webhook"] and "http(s)" in error["msg"]
