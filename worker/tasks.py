"""The Celery task "runs.train": claim the run, train it through the engine, record the outcome.

`train` is a plain function (the Celery app registers it by name), so tests call it directly.
The engine is imported inside the task, so calling it needs no torch at import time; under
`run_worker` the parent has imported it already (`warm_imports`), and the import is free.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from shared.artifacts import run_location
from shared.db import pruning
from shared.db.models import RunStatus
from shared.db.session import session_scope
from shared.domain.runs import claim_run
from shared.settings import Settings, get_settings
from shared.sweepfile.early_stop import EarlyStop
from shared.sweepfile.run_config import RunConfig
from worker.reporter import Reporter, is_transient
from worker.rung_judge import RungJudge

log = logging.getLogger(__name__)

TrainFn = Callable[..., dict[str, Any]]

CLAIM_PATIENCE_SECONDS = 60.0


def run_dir(run_id: int, settings: Settings | None = None) -> Path | str:
    """Checkpoints of one run (a Path, or an s3:// URL); a re-claimed run resumes from here."""
    location = (settings or get_settings()).artifact_location
    return run_location(location, run_id)


def lease_owner() -> str:
    """Names one attempt: host, process and a random part (pids are reused across hosts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def train(run_id: int, *, train_fn: TrainFn | None = None) -> str:
    """Claim, train and record one run; returns the outcome ("skipped" for a duplicate)."""
    started = time.perf_counter()
    settings = get_settings()
    owner = lease_owner()
    config = _claim(run_id, owner, settings)
    claimed = time.perf_counter()
    if config is None:
        log.info("run %s: not claimable (duplicate delivery, cancelled or finished)", run_id)
        return "skipped"
    # A project (SWEEPS_PROJECT_ROOT) may name its own schedulers; the worker resolves them.
    run_config = _typed(config, own_schedulers=settings.project_root is not None)
    rule = run_config.settings.early_stop if isinstance(run_config, RunConfig) else None
    reporter = Reporter(
        run_id, owner,
        lease_seconds=settings.lease_seconds,
        flush_seconds=settings.metrics_flush_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        judge=_rung_judge(run_id, rule),
    )  # fmt: skip
    reporter.phases["claim"] = round(claimed - started, 3)
    with reporter:
        status, details = _train(run_id, run_config, reporter, settings, train_fn)
    # Everything up to the final write (which cannot time itself), from the task's start.
    reporter.phases["total"] = round(time.perf_counter() - started, 3)
    if reporter.storage_error is not None:
        reporter.discard_pending()
        status, details = (
            RunStatus.FAILED,
            {"error": f"cannot store results: {reporter.storage_error}"},
        )
    recorded = reporter.finish(status, **details)
    outcome = status.value if recorded else "lost"
    log.info("run %s: %s", run_id, outcome)
    return outcome


def _claim(run_id: int, owner: str, settings: Settings) -> dict[str, Any] | None:
    """The run's config if we claimed it; retried through a database blip, since a task that
    fails here leaves the run to the reconciler's grace period."""
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(CLAIM_PATIENCE_SECONDS),
        reraise=True,
    ):
        with attempt, session_scope() as session:
            run = claim_run(
                session, run_id, owner, settings.lease_seconds,
                host=socket.gethostname(), max_attempts=settings.max_attempts,
            )  # fmt: skip
            return dict(run.config) if run is not None else None
    raise AssertionError("unreachable: Retrying either returns or raises")


def _typed(config: dict[str, Any], *, own_schedulers: bool) -> RunConfig | Exception:
    """The run's typed configuration, or the error that fails the run (a stored configuration
    the format's rules refuse, e.g. one written by hand)."""
    try:
        return RunConfig.from_config(config, own_schedulers=own_schedulers)
    except Exception as exc:  # noqa: BLE001 - recorded as the run's failure by _train
        return exc


def _rung_judge(run_id: int, rule: EarlyStop | None) -> RungJudge | None:
    """The judge of the run's early-stop rule; none for a run retried after being pruned,
    which the user asked to train to its full budget."""
    if rule is None:
        return None
    with session_scope() as session:
        state = pruning.prune_state(session, run_id)
    return None if state.was_pruned else RungJudge(run_id, state.sweep_id, rule)


def _train(
    run_id: int,
    run_config: RunConfig | Exception,
    reporter: Reporter,
    settings: Settings,
    train_fn: TrainFn | None,
) -> tuple[RunStatus, dict[str, Any]]:
    imports_started = time.perf_counter()
    from worker import plugins, project
    from worker.engine import RunCancelled
    from worker.engine.project_trainer import engine_for

    # ~0 in a warm child (the worker's parent imported the engine before forking it).
    reporter.phases["imports"] = round(time.perf_counter() - imports_started, 3)
    try:
        if isinstance(run_config, Exception):
            raise run_config
        plugins.load(settings.plugins)  # checked at the worker's start; here for its names
        project.load(settings.project_root)  # the same for the user's project
        # The trainer is found (or refused) here, before anything is built.
        run_fn, run_arg = (train_fn, run_config) if train_fn else engine_for(run_config)
        summary = run_fn(
            run_arg,
            report=reporter,
            checkpoint_dir=run_dir(run_id, settings),
            device=None,
            should_stop=reporter.should_stop,
            data_dir=settings.data_dir,
        )
    except RunCancelled:
        if reporter.prune_reason is not None:
            return RunStatus.PRUNED, {"error": reporter.prune_reason}
        return RunStatus.CANCELLED, {}
    except Exception as exc:  # the user's code failed: record it, the worker carries on
        return RunStatus.FAILED, {
            "error": f"{type(exc).__name__}: {exc}"[:10_000],
            "traceback": traceback.format_exc(),
        }
    return RunStatus.SUCCEEDED, {"summary": summary}
