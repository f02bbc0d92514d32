"""The Celery worker: an app factory tuned for long GPU jobs, and `run_worker` for the CLI.

Nothing connects at import. `create_celery()` builds a configured app; the module attribute
`app` is made on first access, so `celery -A worker.celery_app inspect ...` also works.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import platform
import sys
import time
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from shared.artifacts import check_location
from shared.plugins import plugin_modules
from shared.queue import RUNS_QUEUE, TRAIN_TASK
from shared.settings import Settings, get_settings
from worker import tasks
from worker.plugins import check_importable

log = logging.getLogger(__name__)

# Redis redelivers an unacknowledged message after this long. With late acks a message stays
# unacknowledged for the whole run, so this must exceed the longest run, or a second worker
# would receive it mid-run (the claim would refuse it, but that is noise, not a feature).
# Lost runs are found by the reconciler from the database, so a long timeout delays nothing.
VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600


def create_celery(settings: Settings | None = None, *, runs_per_gpu: int | None = None) -> Celery:
    """A worker app on the configured broker with the "runs.train" task registered."""
    settings = settings or get_settings()
    app = Celery("sweeps-worker", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # Acknowledge a message only after the run ends, so a worker that dies mid-run does
        # not take the message with it...
        task_acks_late=True,
        # ...and when the child process is killed (SIGKILL, out of memory) the message goes
        # back to the queue instead of being acked as failed.
        task_reject_on_worker_lost=True,
        # Reserve one message per free process: a run is hours long, and a prefetched
        # message would wait behind it while another worker sits idle.
        worker_prefetch_multiplier=1,
        # Runs trained at once by this worker (each in its own process): runs per GPU.
        worker_concurrency=runs_per_gpu or settings.runs_per_gpu,
        worker_pool="worker.pool:RunPool",  # prefork, a finished run replaced at once
        # A fresh child per run: user code (globals, monkey-patches, CUDA state, leaked
        # memory) cannot pollute the next run.
        worker_max_tasks_per_child=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        # The database is the source of truth for outcomes; no result backend to keep.
        task_ignore_result=True,
        task_default_queue=RUNS_QUEUE,
        # Keep reconnecting when Redis restarts, at start-up and while running.
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # A Redis restart must not kill hours of training: the lease in the database keeps a
        # run from training twice, so running tasks carry on while the broker reconnects.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # The worker's own logs go to stdout at the chosen level; user prints too.
        worker_redirect_stdouts_level="INFO",
    )
    app.task(name=TRAIN_TASK)(tasks.train)
    _connect_signals()
    return app


@lru_cache
def get_app() -> Celery:
    return create_celery()


def __getattr__(name: str) -> Any:
    # `celery -A worker.celery_app` looks up `app`; building it lazily keeps imports inert.
    if name == "app":
        return get_app()
    raise AttributeError(name)


@lru_cache
def _connect_signals() -> None:
    """Celery signals are global; connect our handlers once per process."""
    worker_process_init.connect(_on_child_start, weak=False)
    worker_ready.connect(_on_worker_ready, weak=False)
    worker_shutdown.connect(_on_worker_shutdown, weak=False)


def _on_child_start(**_: Any) -> None:
    """In each freshly forked pool child: drop any database engine inherited from the parent.

    A forked child sharing its parent's pooled sockets corrupts both; dispose(close=False)
    forgets them without closing the parent's, and the child builds its own on first use.
    """
    from shared.db import session as db_session

    if db_session.get_engine.cache_info().currsize:
        db_session.get_engine().dispose(close=False)
    db_session.get_engine.cache_clear()
    allow_child_processes()


def allow_child_processes() -> None:
    """Let a run's DataLoader start its worker processes (`num_workers`, FORMAT.md).

    The pool marks its children daemonic, and Python refuses a daemonic process children
    ("daemonic processes are not allowed to have children"). The rule guards against orphans
    left when a daemon is killed with its parent; a DataLoader's workers watch their parent and
    exit when it goes, and each pool child trains one run and exits (worker_max_tasks_per_child).
    """
    import multiprocessing

    # The flag lives in the process object's config; its setter refuses a started process.
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """In the parent process, once consuming: start the periodic reconciler thread."""
    from worker.reconciler import start_reconciler

    app = sender.app if sender is not None else get_app()
    start_reconciler(app, get_settings())


def _on_worker_shutdown(**_: Any) -> None:
    from worker.reconciler import stop_reconciler

    stop_reconciler()


def cores_per_run(runs: int) -> int:
    """This host's usable cores shared out between `runs` processes, at least one each."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // runs)


def share_cores(runs: int) -> None:
    """Cap the CPU threads of each run's process (inherited through the environment): each
    would otherwise start one OpenMP thread per core, and K runs x all cores threads thrash
    (BENCHMARKS.md, "CPU"). A thread count the user set stays."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(cores_per_run(runs)))


# What every run imports: loaded once in the worker's parent, so each forked run process starts
# with them in memory instead of importing them again (BENCHMARKS.md, "Small runs").
WARM_MODULES = ("torch", "torchvision", "sklearn.svm", "worker.engine")


class CudaBeforeFork(RuntimeError):
    """The worker's parent initialised CUDA: every forked run process would inherit a broken
    context."""


def warm_imports(modules: tuple[str, ...] = WARM_MODULES) -> float:
    """Import the engine and its libraries in this (parent) process; seconds taken.

    Only imports: no tensor work and no CUDA. A CUDA context or a running OpenMP pool does not
    survive fork, so the parent must never create one; this checks the first before forking.
    """
    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    import torch

    from worker.engine.provenance import code_version

    # Provenance asks git and uname in a subprocess each; answered once here, inherited by runs.
    code_version()
    platform.processor()

    if torch.cuda.is_initialized():
        raise CudaBeforeFork("CUDA was initialised in the worker's parent before forking runs")
    # Celery's pool runs gc.collect() before forking each run's process; over torch's and
    # sklearn's objects that took 0.2-0.6 s a run. Frozen, they are skipped by every later
    # collection (and their pages stay shared with the children: no refcount-free writes).
    gc.freeze()
    return time.perf_counter() - started


def report_unimportable(settings: Settings) -> None:
    """Name, once, each plugin or project module that cannot be imported here: the worker runs
    on, and only the runs that need one fail. A project root that is no folder stops it."""
    from shared.project import ProjectError
    from worker.project import check_at_start

    try:
        problems = check_importable(plugin_modules(settings.plugins))
        problems += check_at_start(settings.project_root)
    except ProjectError as exc:
        raise SystemExit(f"sweeps worker: {exc}") from None
    for problem in problems:
        print(f"sweeps worker: {problem}", file=sys.stderr, flush=True)


def run_worker(
    gpu: str | int | None = None, runs_per_gpu: int | None = None, loglevel: str = "info"
) -> None:
    """Run a worker in the foreground: `sweeps worker --gpu N --runs-per-gpu K`.

    `gpu` pins the worker to one device (CUDA_VISIBLE_DEVICES, inherited by every child, set
    before anything could initialise CUDA); K runs train at once on it, one process each.
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    settings = get_settings()
    report_unimportable(settings)
    concurrency = runs_per_gpu or settings.runs_per_gpu
    if concurrency < 1:
        raise ValueError(f"runs per GPU must be at least 1, not {concurrency}")
    # A wrong artifact location stops the worker now, not a run at its first checkpoint.
    check_location(settings.artifact_location)
    # The thread cap is read when torch loads, so it is set before the warm imports.
    share_cores(concurrency)
    seconds = warm_imports()
    # Celery sets up logging only inside worker_main, so this one line is printed.
    print(f"warm start: imported {', '.join(WARM_MODULES)} in {seconds:.1f} s; runs fork from "
          "here", file=sys.stderr, flush=True)  # fmt: skip
    app = create_celery(settings, runs_per_gpu=concurrency)
    node = f"gpu{gpu}" if gpu is not None else "worker"
    app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel.upper()}",
            f"--concurrency={concurrency}",
            f"--queues={RUNS_QUEUE}",
            # Unique per process, so several workers on one host do not clash.
            f"--hostname={node}-{os.getpid()}@%h",
            # Peers need not sync revoked ids or gossip: the database decides what runs.
            "--without-mingle",
            "--without-gossip",
        ]
    )
