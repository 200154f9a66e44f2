"""The datasets as the API process sees them: shipped, or files under its LCW_DATA_DIR (present,
missing or corrupt by the structural check, ``lcw.dataset_files`` level ``cheap``: no checksums
at request time). The workers may see other files: the dispatcher checks a study's dataset on
a worker node before its trials run (``workers.dataset_check``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


class DatasetFilePublic(BaseModel):
    path: str  # under the dataset's folder
    state: Literal["ok", "missing", "corrupt"]
    size: int | None  # bytes on disk; None: missing
    detail: str  # what is wrong ("" when ok)


class DatasetPublic(BaseModel):
    name: str
    description: str
    shipped: bool  # inside an installed package: no files needed
    folder: str | None  # where its files are looked for (None: shipped)
    state: Literal["shipped", "present", "missing", "corrupt"]
    size: int  # bytes of its files here
    files: list[DatasetFilePublic]
    fix: str | None  # what to run when it is missing or corrupt


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


@router.get("", response_model=DatasetsPublic)
def list_datasets() -> DatasetsPublic:
    """Every dataset, and whether its files are present where this API process looks."""
    from lcw import catalog
    from lcw.dataset_files import statuses

    data = [
        DatasetPublic(
            name=s.name,
            description=catalog.DATASETS[s.name].description,
            shipped=s.shipped,
            folder=s.folder,
            state=s.state,
            size=s.size,
            files=[
                DatasetFilePublic(path=f.path, state=f.state, size=f.size, detail=f.detail)
                for f in s.files
            ],
            fix=f"lcw-sweep data fetch {s.name}" if s.state in ("missing", "corrupt") else None,
        )
        for s in statuses(level="cheap")
    ]
    return DatasetsPublic(data=data, count=len(data))
