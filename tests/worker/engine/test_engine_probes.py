"""The SVC probes: faster scoring, the same estimator, data and scores as the seed's code."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from worker.engine.evaluate import SvcPool, svc_score
from worker.engine.phases import Phases


def _embeddings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping class clusters, so the probes score neither 0 nor 1 and ties can happen."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    centres = np.random.default_rng(99).normal(size=(10, 32))
    x = centres[labels] + rng.normal(scale=1.6, size=(n, 32))
    return x.astype(np.float32), labels


def _seed_code(fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray):
    """The probe as the code before issue 14 computed it (and as the seed does)."""
    return float(SVC().fit(fit_x, fit_y).score(test_x, test_y))


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_probe_scores_equal_the_seed_codes(threads: int) -> None:
    val_x, val_y = _embeddings(1_001, seed=1)  # odd sizes: uneven chunks
    held_x, held_y = _embeddings(1_500, seed=2)
    in_sample = svc_score(val_x, val_y, val_x, val_y, threads=threads)
    held_out = svc_score(held_x, held_y, val_x, val_y, threads=threads)
    assert in_sample == _seed_code(val_x, val_y, val_x, val_y)
    assert held_out == _seed_code(held_x, held_y, val_x, val_y)
    assert 0.3 < held_out < in_sample < 1.0  # a real score, not a degenerate one


def test_the_pool_reports_the_seed_codes_scores_and_times_each_fit() -> None:
    val_x, val_y = _embeddings(800, seed=3)
    held_x, held_y = _embeddings(900, seed=4)
    phases = Phases()
    pool = SvcPool(phases=phases)
    try:
        pool.submit(3_200, {"val_x": val_x, "val_y": val_y, "heldout_x": held_x,
                            "heldout_y": held_y})  # fmt: skip
        ((step, points),) = pool.ready(wait=True)
    finally:
        pool.shutdown()
    assert step == 3_200
    assert dict((key, value) for key, _, value in points) == {
        "accuracy_svc": _seed_code(val_x, val_y, val_x, val_y),
        "accuracy_svc_heldout": _seed_code(held_x, held_y, val_x, val_y),
    }
    timed = phases.as_dict()
    assert timed["svc_fit"] > 0 and timed["svc_fit_heldout"] > 0


def test_one_class_gives_nan_as_before() -> None:
    x = np.zeros((5, 3), dtype=np.float32)
    assert np.isnan(svc_score(x, np.ones(5), x, np.ones(5), threads=2))
