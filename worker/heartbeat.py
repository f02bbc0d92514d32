"""A run's heartbeat: its lease, renewed while it trains, and what the renewal learns.

`should_stop` (for the engine) turns true when someone asked the run to stop, or when the lease
was lost (the reconciler gave the run to another worker after this one missed its renewals).
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from shared.domain.runs import Lease, renew_lease


class Heartbeat:
    def __init__(self, run_id: int, owner: str, *, lease_seconds: float, every_seconds: float):
        self.run_id = run_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.every_seconds = every_seconds
        self.cancel_requested = False
        self.lease_lost = False
        self._last = time.monotonic()

    @property
    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    @property
    def should_stop(self) -> bool:
        return self.cancel_requested or self.lease_lost

    def renew(self, session: Session) -> Lease:
        """Extend the lease if the run is still ours (in the caller's transaction)."""
        return renew_lease(session, self.run_id, self.owner, self.lease_seconds)

    def note(self, lease: Lease) -> None:
        """After the commit: what the renewal learned."""
        self._last = time.monotonic()
        self.cancel_requested = lease.cancel_requested
        if not lease.owned:
            self.lease_lost = True
