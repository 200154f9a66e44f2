"""Which pending trials a claim takes: priorities first, then a fair share of the workers.

A study's ``priority`` (spec field, default 0) orders the queue: a claim takes trials of the
highest priority that has pending trials, and only moves down when that level has none left.
Within one priority the workers are shared max-min fairly, first across owners (the API token's
name, ``studies.owner``; every study without one shares the owner None), then across each
owner's studies: every slot of a claim goes to the owner with the fewest trials running or
already given in this claim, and within that owner to the study with the fewest, ties to the
older owner and study. So a 20-trial study submitted after a 5,000-trial one gets half the
workers at once instead of waiting for the big one, and a lab member with one study gets as
many workers as one with ten. Within a study, trials go in expansion (``index``) order, so
its packs still form (they are made of one study's trials).

``allocate`` is the pure rule; ``pick_trials`` reads the counts (one grouped query over the
claim index), applies it and locks the chosen trials (PostgreSQL: FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import Study, Trial


@dataclass(frozen=True)
class Candidate:
    """A study with pending trials, as a claim sees it."""

    study_id: int
    owner: str | None
    priority: int
    pending: int
    running: int


def allocate(candidates: list[Candidate], limit: int) -> list[int]:
    """The study of each of up to `limit` claim slots, in the order they were given."""
    given: dict[int, int] = defaultdict(int)
    order: list[int] = []
    levels = sorted({c.priority for c in candidates}, reverse=True)
    for level in levels:
        studies = [c for c in candidates if c.priority == level]
        owners: dict[str | None, list[Candidate]] = defaultdict(list)
        for c in sorted(studies, key=lambda c: c.study_id):
            owners[c.owner].append(c)
        # Load of each owner and study: trials running plus slots given in this claim.
        load = {o: sum(c.running for c in cs) for o, cs in owners.items()}
        first = {o: cs[0].study_id for o, cs in owners.items()}
        while len(order) < limit:
            open_owners = [o for o, cs in owners.items()
                           if any(given[c.study_id] < c.pending for c in cs)]  # fmt: skip
            if not open_owners:
                break
            owner = min(open_owners, key=lambda o: (load[o], first[o]))
            study = min(
                (c for c in owners[owner] if given[c.study_id] < c.pending),
                key=lambda c: (c.running + given[c.study_id], c.study_id),
            )
            given[study.study_id] += 1
            load[owner] += 1
            order.append(study.study_id)
        if len(order) >= limit:
            break
    return order


def candidates(s: Session) -> list[Candidate]:
    """Every study that is not cancelled and has pending trials, with its counts."""
    counts = s.execute(
        select(Trial.study_id, Trial.status, func.count())
        .where(Trial.status.in_(("pending", "running")))
        .group_by(Trial.study_id, Trial.status)
    ).all()
    pending: dict[int, int] = defaultdict(int)
    running: dict[int, int] = defaultdict(int)
    for sid, status, n in counts:
        (pending if status == "pending" else running)[sid] += n
    if not pending:
        return []
    rows = s.execute(
        select(Study.id, Study.owner, Study.priority).where(
            Study.id.in_(list(pending)), Study.status != "cancelled"
        )
    ).all()
    return [
        Candidate(sid, owner, priority or 0, pending[sid], running[sid])
        for sid, owner, priority in rows
    ]


def pick_trials(s: Session, limit: int) -> list[int]:
    """The ids of up to `limit` pending trials for one claim, locked, in claim order."""
    order = allocate(candidates(s), limit)
    wanted: dict[int, int] = defaultdict(int)
    for sid in order:
        wanted[sid] += 1
    picked: dict[int, list[int]] = {}
    for sid, n in sorted(wanted.items()):
        picked[sid] = list(
            s.scalars(
                select(Trial.id)
                .where(Trial.study_id == sid, Trial.status == "pending")
                .order_by(Trial.index)
                .limit(n)
                .with_for_update(skip_locked=True)
            )
        )
    out: list[int] = []
    for sid in order:  # interleaved as the slots were given
        if picked[sid]:
            out.append(picked[sid].pop(0))
    return out


__all__ = ["Candidate", "allocate", "candidates", "pick_trials"]
