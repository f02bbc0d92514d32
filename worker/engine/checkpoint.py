"""Checkpoints: everything needed to continue a run exactly, written atomically.

`latest.pt` holds model, optimizer, scheduler, loop counters and RNG states. Embeddings of a
validation whose SVC fits were still running are kept beside it (`svc-<step>.pt`) until their
results are reported, so a resumed run still reports them.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest.pt"


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["random"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds every CUDA device too
    np.random.seed(seed % 2**32)
    random.seed(seed)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    atomic_save(state, folder / LATEST)


def load_checkpoint(folder: Path | None) -> dict[str, Any] | None:
    if folder is None or not (folder / LATEST).is_file():
        return None
    # Our own file with numpy/python RNG states in it, so not weights_only.
    return torch.load(folder / LATEST, map_location="cpu", weights_only=False)


def save_pending_svc(folder: Path, step: int, payload: dict[str, np.ndarray]) -> None:
    atomic_save(payload, folder / f"svc-{step}.pt")


def drop_pending_svc(folder: Path, step: int) -> None:
    (folder / f"svc-{step}.pt").unlink(missing_ok=True)


def load_pending_svc(folder: Path, up_to_step: int) -> dict[int, dict[str, np.ndarray]]:
    """Pending SVC inputs up to the checkpoint; later ones (never checkpointed) are removed."""
    pending = {}
    for path in sorted(folder.glob("svc-*.pt")):
        step = int(path.stem.split("-", 1)[1])
        if step <= up_to_step:
            pending[step] = torch.load(path, map_location="cpu", weights_only=False)
        else:
            path.unlink(missing_ok=True)
    return pending
