"""Checkpoints: everything needed to continue a run exactly, written atomically (whole or
absent) to a local folder or an object store (shared/artifacts.py says how).

`latest.pt` holds model, optimizer, scheduler, loop counters and RNG states. A run that
finishes also writes `model.pt`: the trained weights and the run's resolved configuration,
plain tensors and values (loadable with `weights_only=True`), which `sweeps pull` hands back and
`worker.engine.load_model` rebuilds. Embeddings of a
validation whose SVC fits were still running are kept beside it (`svc-<step>.pt`) until their
results are reported, so a resumed run still reports them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.artifacts import MODEL_FILE, Folder, open_folder

LATEST = "latest.pt"
MODEL_FORMAT = "sweeps-model/1"


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


def as_folder(location: Folder | Path | str) -> Folder:
    """A checkpoint folder: local (a Path or path string) or in an object store (s3:// URL)."""
    if isinstance(location, Path | str):
        return open_folder(location)
    return location


def _save(folder: Folder, name: str, obj: Any) -> None:
    folder.write(name, lambda fh: torch.save(obj, fh))


def _load(folder: Folder, name: str) -> Any | None:
    fh = folder.read(name)
    if fh is None:
        return None
    with fh:
        # Our own file with numpy/python RNG states in it, so not weights_only.
        return torch.load(fh, map_location="cpu", weights_only=False)


def save_checkpoint(folder: Folder | Path | str, state: dict[str, Any]) -> None:
    _save(as_folder(folder), LATEST, state)


def load_checkpoint(folder: Folder | Path | str | None) -> dict[str, Any] | None:
    if folder is None:
        return None
    return _load(as_folder(folder), LATEST)  # type: ignore[no-any-return]


def save_model(folder: Folder | Path | str, model: torch.nn.Module, config: dict[str, Any]) -> None:
    """The trained model for users: weights on the CPU and the configuration that builds it."""
    weights = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    model_file = {"format": MODEL_FORMAT, "state_dict": weights, "config": config}
    _save(as_folder(folder), MODEL_FILE, model_file)


def save_pending_svc(folder: Folder | Path | str, step: int, payload: dict[str, Any]) -> None:
    _save(as_folder(folder), f"svc-{step}.pt", payload)


def drop_pending_svc(folder: Folder | Path | str, step: int) -> None:
    as_folder(folder).delete(f"svc-{step}.pt")


def load_pending_svc(
    folder: Folder | Path | str, up_to_step: int
) -> dict[int, dict[str, np.ndarray]]:
    """Pending SVC inputs up to the checkpoint; later ones (never checkpointed) are removed."""
    store = as_folder(folder)
    pending = {}
    for name in store.names():
        if not (name.startswith("svc-") and name.endswith(".pt")):
            continue
        step = int(name[len("svc-") : -len(".pt")])
        if step <= up_to_step:
            pending[step] = _load(store, name)
        else:
            store.delete(name)
    return dict(sorted(pending.items()))


def load_weights(model: torch.nn.Module, where: str, root: Path | None = None) -> None:
    """`load`: the model's weights from a checkpoint file, or a folder holding best.pt or
    snapshot.pt (nn-experiments' names); a relative path is taken from `root`."""
    path = Path(where)
    if not path.is_absolute() and root is not None:
        path = root / path
    if path.is_dir():
        path = next((path / n for n in ("best.pt", "snapshot.pt") if (path / n).is_file()), path)
    if not path.is_file():
        raise FileNotFoundError(f"'load': no checkpoint file at {path}")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # nn-experiments' checkpoint layout
    model.load_state_dict(data)
