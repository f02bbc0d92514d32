"""A finished run's trained model, as the engine left it in the artifact store (model.pt)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from sqlalchemy.orm import Session

from shared.artifacts import MODEL_FILE, open_folder, run_location
from shared.db.models import RunStatus
from shared.domain.errors import NotFound
from shared.domain.reads import get_run, source_of


@dataclass(frozen=True)
class ModelFile:
    run_id: int
    source_id: int  # the run that trained it (differs for a reused run)
    filename: str  # for the download
    stream: IO[bytes]


def open_model_file(session: Session, run_id: int, location: str) -> ModelFile:
    """The model file of a run that succeeded (or reused one that did); NotFound says why not."""
    run = get_run(session, run_id)
    status = RunStatus(run.status)
    if status not in (RunStatus.SUCCEEDED, RunStatus.REUSED):
        raise NotFound(
            f"run {run_id} has no trained model: it is {status.value}; "
            "a model is kept when a run succeeds"
        )
    source = source_of(run_id, status, run.reused_from_id)
    stream = open_folder(run_location(location, source)).stream(MODEL_FILE)
    if stream is None:
        trained = f"run {source}, which trained it," if source != run_id else "it"
        raise NotFound(
            f"run {run_id} succeeded but {trained} left no model file in the artifact store "
            "(runs trained before sweeps kept models have none; `sweeps submit --force` trains "
            "it again)"
        )
    return ModelFile(run_id, source, f"run-{run_id}.pt", stream)
