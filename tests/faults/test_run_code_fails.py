"""Fault 6: a run's own code fails mid-run, by raising or by running out of memory.

Three runs of one sweep: seed 1 trains normally, seed 2's model raises, seed 3's model
allocates until MemoryError (its process is limited to 256 MB more address space than it
already uses, RLIMIT_AS, so the machine is never at risk). The failing runs are `failed` with
the error and traceback stored and shown by GET /runs/{id}; the other run finishes.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import assert_sweep_complete, run_ids_of, submit, sweep_yaml
from tests.support.stack import wait_for_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# After 60 forward passes: past the first validation (40 steps, then 8 validation batches).
FAILING_MODEL = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 60 and ${seed} == 2:
            raise ValueError("boom: seed 2 fails on purpose")
        if self.calls == 60 and ${seed} == 3:
            exhaust_memory()
        return self.linear(x)

Net()
"""

EXHAUST_MEMORY = """\
  exhaust_memory: |
    import resource

    def exhaust_memory():
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 2**20, hard))
        hog = []
        try:
            while True:
                hog.append(bytearray(16 * 2**20))
        finally:
            hog.clear()
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    exhaust_memory
"""


def test_failing_run_code_fails_only_that_run(stack: Stack) -> None:
    stack.api()
    stack.worker(runs_per_gpu=3)
    yaml_text = sweep_yaml(
        seeds=(1, 2, 3), model=FAILING_MODEL, extra_globals=EXHAUST_MEMORY, sleep=0.01
    )
    with stack.client() as client:
        ok, raises, exhausts = run_ids_of(submit(client, yaml_text))
        final = wait_for_runs(
            stack.db_url, [ok, raises, exhausts], {"succeeded", "failed"}, timeout=150,
            diagnostics=stack.logs,
        )  # fmt: skip
        assert final == {ok: "succeeded", raises: "failed", exhausts: "failed"}
        assert_sweep_complete(stack.db_url, [ok])

        shown = client.get(f"/runs/{raises}").json()
        assert shown["status"] == "failed"
        assert shown["error"] == "ValueError: boom: seed 2 fails on purpose"
        assert "Traceback (most recent call last)" in shown["traceback"]
        assert 'File "<model>"' in shown["traceback"]
        assert "in forward" in shown["traceback"]

        shown = client.get(f"/runs/{exhausts}").json()
        assert shown["status"] == "failed"
        assert shown["error"].startswith("MemoryError")
        assert (
            "hog.append(bytearray" in shown["traceback"] or "exhaust_memory" in shown["traceback"]
        )
        # The failed runs stopped mid-way, after their first validation.
        for run_id in (raises, exhausts):
            curve = client.get(f"/runs/{run_id}/metrics", params={"keys": "validation_loss"})
            assert [s for s, _ in curve.json()["series"]["validation_loss"]] == [640]
