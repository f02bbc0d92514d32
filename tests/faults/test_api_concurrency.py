"""Many clients at once: the API answers every request, it never stalls on its connection pool.

Found by bench/load.py: FastAPI runs sync dependencies and routes on a pool of 40 threads,
and a request keeps its database connection from the token check to its end, across several
thread hops. With fewer connections than threads, threads waiting for a connection held
requests waiting for a thread: with 50 clients the API stalled for the pool's 30 s timeout
and then answered 500.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.conftest import TOKEN, Stack
from tests.faults.helpers import run_ids_of, submit, sweep_yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
CLIENTS = 100


async def _burst(base: str, paths: list[str]) -> list[tuple[int, float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=90) as c:

        async def one(path: str) -> tuple[int, float]:
            began = time.perf_counter()
            response = await c.get(path)
            return response.status_code, time.perf_counter() - began

        return await asyncio.gather(*(one(p) for p in paths))


def test_a_hundred_concurrent_requests_all_answered_without_stalling(stack: Stack) -> None:
    api = stack.api()
    with stack.client() as client:
        created = submit(client, sweep_yaml(seeds=range(1, 21)))
    run_ids = run_ids_of(created)
    paths = [
        f"/runs/{run_ids[i % len(run_ids)]}" if i % 2 else f"/sweeps/{created['id']}/table"
        for i in range(CLIENTS)
    ]
    for _ in range(3):
        results = asyncio.run(_burst(api.url or "", paths))
        statuses = sorted({status for status, _ in results})
        slowest = max(seconds for _, seconds in results)
        assert statuses == [200], api.log_tail()
        # Far below the connection pool's 30 s timeout that a stall ends in.
        assert slowest < 20, f"slowest request took {slowest:.1f}s"
