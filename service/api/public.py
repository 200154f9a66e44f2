"""The API's side of the store's records: each record mapped to its response model.

The store returns ``service.records`` (plain dataclasses); the routes and the pages that embed
API JSON map them here, so a response model can change (a field renamed, hidden or added)
without touching the store, and the store's records never reach the wire unmapped.
"""

from __future__ import annotations

from service.records import Page, StudyRecord, TrialDetail, TrialRecord
from service.schemas import StudiesPublic, StudyPublic, TrialDetailPublic, TrialsPublic


def study_public(study: StudyRecord) -> StudyPublic:
    return StudyPublic.model_validate(study, from_attributes=True)


def studies_public(page: Page[StudyRecord]) -> StudiesPublic:
    return StudiesPublic(data=[study_public(s) for s in page.data], count=page.count)


def trials_public(page: Page[TrialRecord]) -> TrialsPublic:
    return TrialsPublic.model_validate(page, from_attributes=True)


def trial_public(trial: TrialDetail) -> TrialDetailPublic:
    return TrialDetailPublic.model_validate(trial, from_attributes=True)
