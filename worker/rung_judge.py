"""Early stopping on the worker: which validations reach a rung, and their judgement.

The first validation at each rung of the run's `early_stop` rule is queued here. The reporter's
writing transaction judges the queued rungs against the sweep's stored curves (`judge_rung`,
shared/domain/runs.py); the engine's checkpoint call for that validation waits for the
judgement (up to RUNG_WAIT_SECONDS), so a pruned run stops at the next poll, a few steps after
its rung's checkpoint, and `prune_reason` says why. Past the wait, training goes on and the
judgement stops it at a later poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from shared.domain.runs import judge_rung
from shared.sweepfile.early_stop import EarlyStop

log = logging.getLogger(__name__)

RUNG_WAIT_SECONDS = 30.0

Rung = tuple[int, float]  # (rung, the run's value there)


class RungJudge:
    """The rungs one run has reached, judged in the reporter's transaction."""

    def __init__(self, run_id: int, sweep_id: int, rule: EarlyStop) -> None:
        self.run_id = run_id
        self.sweep_id = sweep_id
        self.rule = rule
        self.prune_reason: str | None = None
        self._lock = threading.Lock()
        self._due: list[Rung] = []
        self._seen: set[int] = set()
        self._judged = threading.Event()

    def note(self, points: Iterable[tuple[Any, Any, Any]], *, judge: bool) -> None:
        """Queue the first validation at each new rung; replayed ones were judged before."""
        with self._lock:
            for key, step, value in points:
                rung = self.rule.rung_of(int(step)) if key == self.rule.metric else None
                if rung is None or rung in self._seen:
                    continue
                self._seen.add(rung)
                if judge:
                    self._due.append((rung, float(value)))

    def expect_judgement(self) -> bool:
        """Before the checkpoint of a validation: True when a rung waits for its judgement."""
        with self._lock:
            due = bool(self._due)
        if due:
            self._judged.clear()
        return due

    def wait(self) -> None:
        self._judged.wait(RUNG_WAIT_SECONDS)

    def take_due(self) -> list[Rung]:
        with self._lock:
            due, self._due = self._due, []
        return due

    def put_back(self, due: list[Rung]) -> None:
        """Rungs whose transaction failed: judged again at the next write."""
        with self._lock:
            self._due[:0] = due

    def judge(self, session: Session, due: list[Rung]) -> str | None:
        """Why the run is pruned at the first of the `due` rungs that prunes it, else None."""
        if self.prune_reason is not None:
            return None
        for rung, value in due:
            reason = judge_rung(session, self.run_id, self.sweep_id, self.rule, rung, value)
            if reason is not None:
                return reason
        return None

    def settle(self, reason: str | None, due: list[Rung]) -> None:
        """After the commit: a prune takes effect only once its mark is stored."""
        if reason is not None:
            log.info("run %s: %s", self.run_id, reason)
            self.prune_reason = reason
        if due:
            self._judged.set()
