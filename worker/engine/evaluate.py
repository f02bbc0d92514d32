"""Validation: loss, argmax accuracy, embeddings, and SVC probes fitted in background threads.

`accuracy_svc` is the seed's in-sample score (SVC fitted and scored on the validation
embeddings); `accuracy_svc_heldout` fits on a fixed, un-augmented 10,000-image subset of the
training set and scores on the validation set. libsvm releases the GIL, so the fits overlap
training in a thread pool; results are collected by the loop at its logging points.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from shared.metric_keys import ACCURACY_SVC, ACCURACY_SVC_HELDOUT

from .datasets import tensors_of, to_device_compact
from .phases import Phases

EVAL_BATCH_SIZE = 1000  # validation/embedding batch, independent of the training batch size
HELDOUT_SIZE = 10_000
HELDOUT_SEED = 0  # the held-out probe's subset is the same for every run of every sweep

Batch = tuple[torch.Tensor, ...]


class EvalBatches:
    """Re-iterable, un-shuffled batches of a dataset on the device (no transforms)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        *,
        indices: torch.Tensor | None = None,
        freeze: bool = False,
        num_workers: int = 0,
        device_tensors: tuple[torch.Tensor, ...] | None = None,
    ) -> None:
        self.batch_size, self.device, self.freeze = batch_size, device, freeze
        tensors = device_tensors or tensors_of(dataset)
        self.tensors = None
        self.indices = indices.to(device) if indices is not None else None
        if tensors is not None:
            self.tensors = tuple(to_device_compact(t, device) for t in tensors)
            self.length = len(self.indices) if self.indices is not None else len(self.tensors[0])
        else:
            source = Subset(dataset, indices.tolist()) if indices is not None else dataset
            collate = getattr(dataset, "collate_fn", None)  # datasets.Collated
            self.loader = DataLoader(source, batch_size=batch_size, num_workers=num_workers,
                                     collate_fn=collate)  # fmt: skip
            self.length = len(source)
        self._frozen: list[Batch] | None = None

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Batch]:
        if self.tensors is not None:
            for start in range(0, self.length, self.batch_size):
                if self.indices is None:
                    yield tuple(t[start : start + self.batch_size] for t in self.tensors)
                else:
                    idx = self.indices[start : start + self.batch_size]
                    yield tuple(t[idx] for t in self.tensors)
            return
        if self._frozen is not None:
            yield from self._frozen
            return
        cache: list[Batch] = []
        for batch in self.loader:
            batch = tuple(to_device(b, self.device) for b in batch)
            if self.freeze:
                cache.append(batch)
            yield batch
        if self.freeze:
            self._frozen = cache


def to_device(value, device: torch.device):
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


def heldout_indices(n: int, size: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(HELDOUT_SEED)
    size = HELDOUT_SIZE if size is None else size
    return torch.randperm(n, generator=generator)[: min(size, n)].sort().values


def class_labels(target: torch.Tensor) -> torch.Tensor:
    """Class index per sample: argmax of a one-hot/logit target, else the target itself."""
    return target.argmax(dim=1) if target.dim() > 1 else target


class Embedder:
    """Calls the model and captures its embedding in the same pass where it can.

    The embedding is `model.encode(x)` if the model has it, else `model.encoder(x)`; when the
    encoder is a submodule called exactly once by forward, a hook captures its output.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.encode = getattr(model, "encode", None)
        encoder = getattr(model, "encoder", None)
        self.encoder = encoder if callable(encoder) else None
        self.available = callable(self.encode) or self.encoder is not None

    def __call__(
        self, x: torch.Tensor, want_embedding: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not (want_embedding and self.available):
            return self.model(x), None
        if callable(self.encode):
            return self.model(x), self.encode(x)
        captured: list[torch.Tensor] = []
        handle = None
        if isinstance(self.encoder, nn.Module):
            handle = self.encoder.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            output = self.model(x)
        finally:
            if handle is not None:
                handle.remove()
        if len(captured) == 1 and isinstance(captured[0], torch.Tensor):
            return output, captured[0]
        return output, self.encoder(x)


@dataclass
class ValidationResult:
    loss: float
    accuracy_argmax: float | None = None
    embeddings: np.ndarray | None = None
    labels: np.ndarray | None = None


@torch.no_grad()
def validation_pass(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: Callable,
    autocast: Callable[[], AbstractContextManager],
    *,
    representation: bool,
) -> ValidationResult:
    """Mean of per-batch losses over the whole set; with `representation`, argmax accuracy too."""
    was_training = model.training
    model.eval()
    embedder = Embedder(model)
    losses, correct, count = [], torch.zeros((), dtype=torch.long), 0
    embeddings, labels = [], []
    try:
        for batch in batches:
            x, target = batch[0], batch[1]
            with autocast():
                output, embedding = embedder(x, representation)
            losses.append(loss_fn(output.float(), target).float())
            if representation:
                label = class_labels(target)
                correct = correct.to(output.device) + (output.argmax(dim=1) == label).sum()
                count += len(x)
                labels.append(label.cpu())
                if embedding is not None:
                    embeddings.append(embedding.float().flatten(1).cpu())
    finally:
        model.train(was_training)
    result = ValidationResult(loss=float(torch.stack(losses).mean()))
    if representation and count:
        result.accuracy_argmax = float(correct) / count
        result.labels = torch.cat(labels).numpy()
        if embeddings:
            result.embeddings = torch.cat(embeddings).numpy()
    return result


@torch.no_grad()
def embed(
    model: nn.Module, batches: Iterable[Batch], autocast: Callable[[], AbstractContextManager]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(embeddings, class labels) of a dataset, or None when the model has no embedding."""
    embedder = Embedder(model)
    if not embedder.available:
        return None
    was_training = model.training
    model.eval()
    embeddings, labels = [], []
    try:
        for batch in batches:
            with autocast():
                _, embedding = embedder(batch[0], True)
            embeddings.append(embedding.float().flatten(1).cpu())
            labels.append(class_labels(batch[1]).cpu())
    finally:
        model.train(was_training)
    return torch.cat(embeddings).numpy(), torch.cat(labels).numpy()


# libsvm's kernel cache (MB, per binary sub-problem), above sklearn's 200 so a large probe's
# kernel columns stay cached. Speed only: the cache never changes the fitted model.
SVC_CACHE_MB = 500


def svc_score(
    fit_x: np.ndarray,
    fit_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    threads: int = 1,
) -> float:
    """The seed's probe: accuracy of `SVC()` fitted on (fit_x, fit_y), scored on the test set.

    Scoring (often longer than the fit) predicts in `threads` chunks at once: libsvm predicts
    each sample on its own and releases the GIL, so the predictions, and the score, are those of
    one `SVC().score` call, on more cores.
    """
    from sklearn.metrics import accuracy_score
    from sklearn.svm import SVC

    if len(np.unique(fit_y)) < 2:
        return float("nan")
    model = SVC(cache_size=SVC_CACHE_MB).fit(fit_x, fit_y)
    chunks = np.array_split(test_x, max(1, min(threads, len(test_x))))
    if len(chunks) == 1:
        predicted = model.predict(test_x)
    else:
        with ThreadPoolExecutor(len(chunks), thread_name_prefix="svc-predict") as pool:
            predicted = np.concatenate(list(pool.map(model.predict, chunks)))
    return float(accuracy_score(test_y, predicted))  # what SVC.score computes


@dataclass
class SvcJob:
    step: int
    futures: dict[str, Future] = field(default_factory=dict)


class SvcPool:
    """Background SVC fits; `ready()` hands back finished (key, step, value) without blocking."""

    def __init__(self, max_workers: int | None = None, *, phases: Phases | None = None) -> None:
        # Two at least, so a validation's two fits (in-sample, held-out) run side by side.
        workers = max_workers or max(2, min(8, (os.cpu_count() or 2) // 2))
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="svc")
        self.jobs: list[SvcJob] = []
        self.phases = phases or Phases()

    def _timed_score(self, phase: str, *args: np.ndarray) -> float:
        # At least two chunks: the last probe of a sweep can then use a core another run freed;
        # while every core is busy, the extra thread costs little (long CPU-bound chunks).
        with self.phases.timed(phase):
            return svc_score(*args, threads=max(2, torch.get_num_threads()))

    def submit(self, step: int, payload: dict[str, np.ndarray]) -> None:
        job = SvcJob(step)
        val_x, val_y = payload["val_x"], payload["val_y"]
        job.futures[ACCURACY_SVC] = self.executor.submit(
            self._timed_score, "svc_fit", val_x, val_y, val_x, val_y
        )
        if "heldout_x" in payload:
            job.futures[ACCURACY_SVC_HELDOUT] = self.executor.submit(
                self._timed_score, "svc_fit_heldout",
                payload["heldout_x"], payload["heldout_y"], val_x, val_y,
            )  # fmt: skip
        self.jobs.append(job)

    def ready(self, wait: bool = False) -> list[tuple[int, list[tuple[str, int, float]]]]:
        """Finished jobs as (step, points); with `wait`, blocks until every job is done."""
        done = []
        for job in list(self.jobs):
            if wait or all(f.done() for f in job.futures.values()):
                points = [(key, job.step, f.result()) for key, f in job.futures.items()]
                done.append((job.step, points))
                self.jobs.remove(job)
        return done

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
