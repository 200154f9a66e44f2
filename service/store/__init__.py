"""Every query the service and the workers run: studies, the trial queue, metrics, summaries.

``Store(engine)`` is the only code that reads or writes the tables. It is assembled from one
module per concept, each a layer of the class (``Store`` inherits them all):

========================  ==================================================================
``base.py``               sessions on the engine and the write engine; JSON/float helpers
``studies.py``            create (idempotent), read, list, cancel, delete; a study's status
                          derived from its trials; the cell versions (``study_cells``)
``trials.py``             pages of trials, one trial with its metrics, a cell's curves and
                          diagnostics, the streaming export
``queue.py``              the lease queue the workers code against (``ClaimedTrial``): claim,
                          renew, fail, release, expire
``results.py``            what runs send back: epoch metrics and completions (``Completion``),
                          a tick's in one statement or transaction each
``slots.py``              lr_search slots: assign a setting once, read it, the history
``lifecycle.py``          after submission: extend a study, retry or resume it, fail its
                          pending trials on an error no retry fixes
``summary_sql.py``        the summary's aggregate queries over the covering index
``summary_cache.py``      the incremental summary: per-study LRU, per-cell reuse, stored
                          cell results written by a background thread
``notifications.py``      the webhook outbox: a row per study finish, claimed and settled by
                          ``service.notify``
========================  ==================================================================

The contract
------------

*Transactions.* Each public method is one transaction (``service.db.session_scope``). Methods
that write begin with the write lock on SQLite (``BEGIN IMMEDIATE``, the writer engine) and on
PostgreSQL lock rows in one order (trials, then their study, then its cells in ``cell_key``
order), so concurrent claimers and completers never deadlock.

*Threads.* A ``Store`` is safe to share between threads and processes: it holds no session
between calls. Its only in-process state is the summary cache (guarded by a lock) and the
result writer's queue (its own thread); both are caches, never the source of a result. Several
processes (API servers, dispatchers) may run stores on one database at once.

*Who owns a running trial.* The lease owner given by ``claim_trials``, until the trial
finishes, its lease is released or it expires. Every write a worker makes (``write_metrics``,
``complete_trial``, ``fail_trial_attempt``, ``release_trials``, ``renew_leases``) is fenced by
the owner: from a worker that no longer holds the lease it changes nothing.

*The queue's states* (``claim_trials`` ... ``cancelled_or_gone``):

- pending -> running (``claim_trials``: a lease owned by one worker, ``attempt`` + 1)
- running -> completed | diverged | stopped_early (``complete_trial``)
- running -> pending while attempts remain, else failed (``fail_trial_attempt``,
  ``release_expired`` for leases nobody renewed); ``attempt <= max_retries`` means another try
  is allowed, so a trial runs at most ``max_retries + 1`` times
- running -> pending without using up the attempt (``release_trials``: a worker shutting down
  gives back what it holds)
- pending | running -> cancelled (``cancel_study``; a running worker learns it from
  ``renew_leases``, which stops returning the trial)
- failed | cancelled -> pending with a fresh attempt budget (``retry_study``); new pending
  trials (``extend_study``); pending -> failed at once (``fail_pending``, an error that every
  pending trial of the study would hit and no retry fixes)

*Derived state.* Every call that changes trials updates their study's status and moves the
versions of the cells it touched, in the same transaction; ``summary`` recomputes exactly the
cells whose version moved, and equals a full recomputation (tested on both databases). A
change that finishes a study (completed, failed, cancelled) also writes its webhook call to
the outbox (``study_notifications``) in that transaction.

*What it returns.* Records (``service.records``: ``StudyRecord``, ``TrialRecord``,
``TrialDetail``, ``Page``) and the summary's value types (``service.summary``), never an HTTP
response model; the API maps records to those (``service.api.public``).

*Values.* Non-finite floats (a diverged loss) are stored as NULL: JSON has no NaN, and the API
must be able to serve every row. Missing rows raise ``service.errors.NotFoundError``; a state
that forbids the call raises ``ConflictError``.
"""

from __future__ import annotations

from service.store.base import clean_json
from service.store.lifecycle import Lifecycle
from service.store.queue import ClaimedTrial, Queue
from service.store.results import Completion
from service.store.slots import SlotHistory, Slots
from service.store.summary_cache import SummaryCache
from service.store.summary_sql import OUTCOME_COLUMNS
from service.store.trials import TRIAL_SORT_KEYS, Trials


class Store(Queue, Slots, Lifecycle, Trials, SummaryCache):
    """All persistence for one database (``engine``); safe to share between threads."""


__all__ = [
    "OUTCOME_COLUMNS",
    "TRIAL_SORT_KEYS",
    "ClaimedTrial",
    "Completion",
    "SlotHistory",
    "Store",
    "clean_json",
]
