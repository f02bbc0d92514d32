"""The training and evaluation engine: pure torch + sklearn, no database, no Celery.

Contract (used by worker/tasks.py; keep it stable):

    from worker.engine import train_run, RunCancelled

    summary = train_run(
        run_config,             # RunConfig.from_config(one run's resolved configuration):
                                # typed settings (shared/sweepfile/run_config.py) + its code keys
        report=report,          # callable(event: str, **payload) -- see below
        checkpoint_dir=path,    # Path, s3:// URL or None; resume from its latest.pt if there
        device=None,            # "cuda"/"cpu"/None (None: cuda when available, else cpu)
        should_stop=None,       # callable() -> bool, polled every few steps; True -> RunCancelled
        data_dir=None,          # Path with Fashion-MNIST/MNIST IDX .gz files, or None
    )

Events passed to `report` (all keyword payloads, JSON-serialisable values):
    report("provenance", info={...})       resolved config, seed, device name, torch/CUDA
                                           versions, host, python, engine version
    report("metrics", points=[(key, step, value), ...])
                                           step = training inputs seen; keys: train_loss,
                                           learnrate, validation_loss, accuracy_argmax,
                                           accuracy_svc, accuracy_svc_heldout, model_params,
                                           train_seconds, throughput
    report("progress", inputs=int, total=int | None, epoch=int)
    report("checkpoint", inputs=int)         after a checkpoint is durably written
    report("phases", phases={name: seconds})  once, as train_run ends (also on failure or
                                           cancel): where the time went (engine/phases.py)
    report("replay", points=[...])           on resume: every point reported up to the
                                           checkpoint, again (the attempt that wrote it may
                                           have died before they were stored); store them
                                           like "metrics" (storing a point twice is harmless)

`train_run` returns a summary dict of the final values (same keys as the metrics, plus
`inputs`); it raises RunCancelled when should_stop() says so, and lets every other
exception from the user's code propagate (the caller records it).
"""

from __future__ import annotations

from .augment import TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample
from .datasets import ClassLogitsDataset, fmnist_dataset, mnist_dataset
from .export import load_model, read_model_file
from .inspect import inspect_config, inspect_sweep
from .models import EncoderConv2d
from .trainer import RepresentationClassTrainer, RunCancelled, Trainer, train_run

__all__ = [
    "ClassLogitsDataset",
    "EncoderConv2d",
    "RepresentationClassTrainer",
    "RunCancelled",
    "Trainer",
    "TrivialAugmentWideOnDevice",
    "TrivialAugmentWidePerSample",
    "fmnist_dataset",
    "inspect_config",
    "inspect_sweep",
    "load_model",
    "mnist_dataset",
    "read_model_file",
    "train_run",
]
