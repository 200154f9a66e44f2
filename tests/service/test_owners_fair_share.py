"""Owners (named API tokens), priorities and the fair share of claims, on SQLite and PostgreSQL.

The worker here is the test: it speaks the store's queue (claim, complete) with a fixed number
of slots, as a dispatcher with that many actors does.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from svc_helpers import SMALL, make_study, result

from service.config import Settings
from service.store import Store
from service.store.fair_share import Candidate, allocate

AUTH = {"api_tokens": "alice:tok-a,bob:tok-b,plain-token"}


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the rule -----------------------------------------------------------------------------------


def test_allocate_takes_the_highest_priority_then_shares_owners_then_studies() -> None:
    big = Candidate(1, "alice", 0, pending=5000, running=0)
    small = Candidate(2, "alice", 0, pending=20, running=0)
    bob = Candidate(3, "bob", 0, pending=100, running=0)
    urgent = Candidate(4, "carol", 5, pending=2, running=0)
    # The urgent study's 2 trials first; then alice and bob alternate, alice's slots
    # alternating between her two studies.
    assert allocate([big, small, bob, urgent], 8) == [4, 4, 1, 3, 2, 3, 1, 3]
    # Load counts running trials: bob already runs 3, so alice gets slots until she runs as
    # many (a tie goes to the owner of the older study), then they alternate.
    busy_bob = Candidate(3, "bob", 0, pending=100, running=3)
    assert allocate([big, small, busy_bob], 6) == [1, 2, 1, 2, 3, 1]
    # A study never gets more slots than it has pending trials.
    assert allocate([Candidate(7, None, 0, pending=1, running=0)], 5) == [7]
    assert allocate([], 5) == []


# -- owners -------------------------------------------------------------------------------------


def test_a_named_token_owns_what_it_submits(make_client: Any) -> None:
    client = make_client(**AUTH)
    a = client.post("/api/studies", json=SMALL, headers=_as("tok-a"))
    b = client.post("/api/studies", json={**SMALL, "priority": 3}, headers=_as("tok-b"))
    anon = client.post("/api/studies", json=SMALL, headers=_as("plain-token"))
    assert [r.status_code for r in (a, b, anon)] == [201, 201, 201]
    assert (a.json()["owner"], a.json()["priority"]) == ("alice", 0)
    assert (b.json()["owner"], b.json()["priority"]) == ("bob", 3)
    assert anon.json()["owner"] is None  # a plain token keeps working, without a name
    mine = client.get("/api/studies", params={"owner": "alice"}).json()
    assert mine["count"] == 1 and mine["data"][0]["id"] == a.json()["id"]
    assert client.get(f"/api/studies/{b.json()['id']}").json()["owner"] == "bob"
    assert client.post("/api/studies", json=SMALL, headers=_as("nope")).status_code == 401


def test_without_auth_studies_have_no_owner(client: Any) -> None:
    r = client.post("/api/studies", json=SMALL)
    assert r.status_code == 201 and r.json()["owner"] is None


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("alice:", "has no token after the ':'"),
        (":secret", "owner name before ':'"),
        ("al ice:secret", "owner name before ':'"),
    ],
)
def test_a_malformed_token_entry_is_a_settings_error(entry: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(api_tokens=f"good,{entry}")  # type: ignore[arg-type]
    text = str(info.value)
    assert "LCW_API_TOKENS entry 2" in text and words in text
    assert "secret" not in text and "good" not in text  # no token is ever shown


@pytest.mark.parametrize("priority", [1.5, "1", True, -1001, 1001])
def test_a_bad_priority_is_a_422_naming_it(client: Any, priority: Any) -> None:
    r = client.post("/api/studies", json={**SMALL, "priority": priority})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "priority"]


# -- the queue ----------------------------------------------------------------------------------


def _work(store: Store, slots: int) -> list[int]:
    """Run the queue with `slots` concurrent trials until it is empty; the study id of every
    trial in the order they finished."""
    finished: list[int] = []
    while claimed := store.claim_trials("w", limit=slots, lease_seconds=60):
        for c in claimed:
            store.complete_trial("w", c.id, status="completed", result=result(0.9, 0.9),
                                 run_info={})  # fmt: skip
            finished.append(c.study_id)
    return finished


def test_a_small_study_after_a_large_one_finishes_first(store: Store) -> None:
    big = make_study(store, methods=["plain", "bn", "lcw", "bn_lcw"], seeds=25)  # 100 trials
    small = make_study(store, name="small", seeds=3)  # 6 trials, submitted after
    order = _work(store, slots=2)
    assert len(order) == 106
    small_done = max(i for i, sid in enumerate(order) if sid == small)
    assert small_done < 12  # within its first 6 rounds of 2 slots, not after 100 trials
    assert order[-1] == big
    assert store.get_study(small).status == store.get_study(big).status == "completed"


def test_higher_priority_runs_first_and_owners_share_within_it(store: Store) -> None:
    low = make_study(store, seeds=5)  # 10 trials, priority 0, first in line
    high = make_study(store, name="high", seeds=2, priority=10)
    order = _work(store, slots=3)
    assert order[:4] == [high] * 4 and set(order[4:]) == {low}


def test_owners_share_the_slots_whatever_their_study_counts(store: Store) -> None:
    from service.spec import plan_study

    def submit(owner: str, **changes: Any) -> int:
        spec, trials = plan_study({**SMALL, **changes}, max_trials=5000)
        return int(store.create_study(spec, trials, owner=owner)[0].id)

    alice = [submit("alice", seeds=10, name=f"a{i}") for i in range(3)]  # 3 studies, 60 trials
    bob = submit("bob", seeds=10, name="b")  # 1 study, 20 trials
    claimed = store.claim_trials("w", limit=8, lease_seconds=60)
    owners = ["bob" if c.study_id == bob else "alice" for c in claimed]
    assert owners.count("alice") == owners.count("bob") == 4
    assert {c.study_id for c in claimed if c.study_id != bob} == set(alice)
