"""Routes of one trial: its config, status, run info and per-epoch metrics."""

from __future__ import annotations

from fastapi import APIRouter, Path

from service.api.deps import StoreDep
from service.api.public import trial_public
from service.schemas import ErrorPublic, TrialDetailPublic

router = APIRouter(prefix="/api/trials", tags=["trials"])


@router.get(
    "/{trial_id}", response_model=TrialDetailPublic, responses={404: {"model": ErrorPublic}}
)
def read_trial(store: StoreDep, trial_id: int = Path(ge=1, le=2**62)) -> TrialDetailPublic:
    """Get one trial with its metrics, one entry per epoch."""
    return trial_public(store.get_trial(trial_id))
