"""A failed trial's error as a user reads it: its type, its message and the fix to try.

The workers store an attempt's error as ``"Type: message"``, a blank line and the traceback
(``workers.runner``). ``describe`` splits that text and adds the fix for the errors whose cause
is known; the CLI (``submit --wait``, ``status``, ``results``) and the study page show it.

Errors no retry can fix (``PERMANENT``) fail a trial at its first attempt; a missing dataset
fails every pending trial of its study with the same message (``service.store.lifecycle``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lcw import catalog

SHIPPED = [name for name, info in catalog.DATASETS.items() if info.shipped]

# Error type -> the fix to try. Errors whose cause is in the study itself say so.
FIXES = {
    "DatasetNotFoundError": (
        "put the dataset's files in the workers' data directory (LCW_DATA_DIR: `lcw-sweep data "
        "fetch` on the nodes, or the volume they mount), then requeue the study's trials with "
        "`lcw-sweep retry ID`; or submit it on a dataset that ships with lcw-sweep "
        f"({', '.join(SHIPPED)})"
    ),
    "DatasetCorruptError": (
        "a dataset file is truncated or damaged: fetch it again on the nodes (`lcw-sweep data "
        "fetch`, which verifies every file) or repair the volume they mount, then requeue the "
        "study's trials with `lcw-sweep retry ID`"
    ),
    "ConfigError": "the trial's configuration is invalid: fix the spec and submit a new study",
}
GENERIC_FIX = (
    "read the traceback on the trial's page; once the cause is fixed, `lcw-sweep retry ID` "
    "runs the failed trials again"
)


@dataclass(frozen=True)
class Failure:
    type: str  # the exception's class name, "" when the text has none
    message: str
    fix: str

    def lines(self, study_id: int | None = None) -> list[str]:
        """The failure in two lines: what happened, and what to do (with the study's id)."""
        fix = self.fix if study_id is None else self.fix.replace(" ID`", f" {study_id}`")
        what = f"{self.type}: {self.message}" if self.type else self.message
        return [what, f"fix: {fix}"]


def describe(error: str | None) -> Failure:
    """The type, message and fix of a stored error text."""
    text = (error or "").strip()
    if not text:
        return Failure("", "no error text was recorded", GENERIC_FIX)
    head = text.split("\n\n", 1)[0].strip()
    kind, sep, message = head.partition(": ")
    if not sep or not kind.isidentifier():
        return Failure("", head, GENERIC_FIX)
    return Failure(kind, message.strip(), FIXES.get(kind, GENERIC_FIX))


__all__ = ["FIXES", "Failure", "describe"]
